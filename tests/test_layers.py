"""The floors are enforced: import-linter's contracts (setup.cfg) hold, and they catch a wrong import."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='setup.cfg', no_cache=True, no_logo=True))")


def _lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)})


def _copy_package(dest: Path) -> Path:
    """The package as installed (symlinked floors followed) plus setup.cfg, in ``dest``."""
    shutil.copytree(ROOT / "compressor", dest / "compressor", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", dest / "setup.cfg")
    return dest


def test_import_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_contracts_catch_a_floor_importing_upwards(tmp_path):
    tree = _copy_package(tmp_path)
    errors = tree / "compressor" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom compressor.targets import table  # noqa: E402\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "compressor.core is not allowed to import compressor.targets" in result.stdout


def test_contracts_catch_the_runtime_importing_torch(tmp_path):
    tree = _copy_package(tmp_path)
    run = tree / "compressor" / "runtime" / "__init__.py"
    run.write_text(run.read_text() + "\nimport torch  # noqa: E402\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "compressor.runtime is not allowed to import torch" in result.stdout


def test_nothing_of_ours_installs_under_a_bare_name(tmp_path):
    probe = ("import importlib.util, sys; "
             "print([n for n in ('models', 'targets', 'calibration') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
