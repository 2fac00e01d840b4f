"""Shared fixtures: each built-in model kind exported once per session; an in-process CLI runner."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support import MODEL_KINDS, CliResult


@pytest.fixture
def cli(capsys):
    """Run ``compress ARGS...`` in-process; returns exit code, stdout and stderr."""
    from compressor.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # commands that exit non-zero on purpose (compare failing)
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``{model_name: Artifact}`` of the ONNX export of each built-in model kind."""
    from compressor.models.spec import load_model_spec, resolve_input_specs
    from compressor.targets.onnx import ExportOptions, export_onnx

    folder = tmp_path_factory.mktemp("exported")
    artifacts = {}
    for name in MODEL_KINDS:
        loaded = load_model_spec(name)
        artifacts[name] = export_onnx(loaded.model, resolve_input_specs(loaded, []), loaded.output_names,
                                      folder / f"{name}.onnx", ExportOptions(source=name))
    return artifacts



@pytest.fixture(scope="session")
def runtime_only_python(tmp_path_factory) -> Path:
    """A Python that can import numpy and onnxruntime, and neither torch nor edge-compress: a device."""
    root = tmp_path_factory.mktemp("device-env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")], check=True)
    python = root / "env" / "bin" / "python"
    only = root / "only"
    only.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for package in ("numpy", "numpy.libs", "onnxruntime"):
        if (site / package).exists():
            (only / package).symlink_to(site / package)
    env_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    Path(env_site, "only.pth").write_text(str(only) + "\n")
    for module in ("numpy", "onnxruntime"):
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, cwd=root).returncode == 0
    for module in ("torch", "compressor"):  # probed outside the repository, which would be on sys.path
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, cwd=root).returncode != 0
    return python
