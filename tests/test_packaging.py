"""A regular (non-editable) install carries every floor under the one import root, and nothing else."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_everything_under_compressor(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            str(ROOT), "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("edge_compress-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"compressor"}
    for floor in ("core", "runtime", "models", "calibration", "targets", "distill", "cli"):
        assert f"compressor/{floor}/__init__.py" in names, floor
    assert "compressor/distill/recipes/sr-dsclora.yaml" in names
    sources = {p.relative_to(ROOT / "targets").as_posix() for p in (ROOT / "targets").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert {f"compressor/targets/{s}" for s in sources} <= set(names)
