"""A user's own project goes through the CLI, even when its modules are named like ours.

The throwaway project below has its own ``models/`` package, ``calibration.py`` and ``targets.py`` (names
that ML projects use, and that this toolchain used to install as top-level packages). Its model is exported,
built for ONNX Runtime (FP32) and OpenVINO (INT8, calibrated by the project's own ``calibration.py``), and
compared with PyTorch, through the installed ``compress`` command run from outside the project.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODELS_INIT = '''
"""The user's own models package (not ours)."""
from torch import nn

from models.blocks import ConvBlock


class MiniMobileNet(nn.Module):
    def __init__(self, width: int = 8, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(ConvBlock(3, width, 2), ConvBlock(width, 2 * width, 2))
        self.head = nn.Linear(2 * width, classes)

    def forward(self, image):
        return self.head(self.features(image).mean(dim=(2, 3)))
'''

MODELS_BLOCKS = '''
from torch import nn


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, groups=1), nn.BatchNorm2d(cout), nn.ReLU())
'''

ENTRY = '''
import torch

import calibration
import targets
from models import MiniMobileNet


def build(width: int = 8):
    torch.manual_seed(0)
    model = MiniMobileNet(width=int(width), classes=targets.CLASSES).eval()
    model.input_specs = ["image:Nx3x32x32:float32:0..1"]
    model.output_names = ["logits"]
    return model
'''

CALIBRATION = '''
"""The user's calibration data: a module named like ours, on purpose."""
import numpy as np


def feeds():
    rng = np.random.default_rng(3)
    return [{"image": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(16)]
'''

TARGETS = "CLASSES = 5\n"


def _compress() -> list[str]:
    script = Path(sys.executable).with_name("compress")
    return [str(script)] if script.exists() else [sys.executable, "-m", "compressor.cli"]


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*_compress(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"compress {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text(textwrap.dedent(MODELS_INIT))
    (root / "models" / "blocks.py").write_text(textwrap.dedent(MODELS_BLOCKS))
    (root / "entry.py").write_text(textwrap.dedent(ENTRY))
    (root / "calibration.py").write_text(textwrap.dedent(CALIBRATION))
    (root / "targets.py").write_text(TARGETS)
    return root


@pytest.mark.slow
def test_user_project_exports_builds_and_compares(project):
    work = project.parent
    exported = json.loads(_run(work, "export", "proj/entry.py:build", "--out", "out", "--json").stdout)
    onnx_path = Path(exported["path"])
    assert onnx_path.is_file() and onnx_path.parent == work / "out"
    assert [o["name"] for o in exported["outputs"]] == ["logits"] and exported["outputs"][0]["shape"] == ["N", 5]

    _run(work, "build", onnx_path, "--target", "onnxruntime", "--out", "out", "--name", "user_ort")
    _run(work, "build", onnx_path, "--target", "openvino", "--precision", "int8", "--out", "out",
         "--name", "user_ov_int8", "--calibration", "proj/calibration.py:feeds", "--calibration-samples", "8")

    compared = json.loads(_run(work, "compare", "proj/entry.py:build", "out/user_ort.onnx", "--json").stdout)
    assert compared["passed"] and compared["max_abs"] < 1e-4
    int8 = subprocess.run([*_compress(), "compare", "proj/entry.py:build", "out/user_ov_int8.xml", "--json",
                           "--atol", "0.5", "--rtol", "0.5"], cwd=work, capture_output=True, text=True, timeout=600)
    report = json.loads(int8.stdout)
    assert report["feeds"] > 0 and report["max_abs"] > 0  # really quantized, and really run
    sidecar = json.loads((work / "out" / "user_ov_int8.xml.artifact.json").read_text())
    assert sidecar["precision"] == "int8"


def test_user_file_with_a_broken_import_is_one_line(project):
    (project / "entry.py").write_text("import no_such_package_here\n\ndef build():\n    pass\n")
    result = subprocess.run([*_compress(), "export", "proj/entry.py:build", "--out", "out"], cwd=project.parent,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no_such_package_here" in result.stderr
