"""The runtime files run as a bundle's scripts: copied flat into a folder, started with ``python -I`` (the
folder not on sys.path) by a Python that has numpy and onnxruntime only, and writing no byte-code."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compressor.core.tensor_spec import TensorSpec
from compressor.runtime import BUNDLE_FILES, files_for

SCRIPTS = {"engine": "run.py", "jetson": "jetson.py", "tracker": "tracker.py", "can-detector": "detect.py"}


def _tiny_model(path: Path) -> None:
    """y = 2 x + 1 over x: N x 4 float32."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["doubled"]), helper.make_node("Add", ["doubled", "one"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
         helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _copy_runtime(folder: Path, *kinds: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        for name, source in files_for(kind).items():
            shutil.copyfile(source, folder / name)
    return folder


@pytest.fixture
def engine_bundle(tmp_path) -> Path:
    """A bundle folder by hand: the engine files, a tiny ONNX model, its manifest and golden data."""
    folder = _copy_runtime(tmp_path / "bundle", "engine")
    (folder / "model").mkdir()
    _tiny_model(folder / "model" / "tiny.onnx")
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.savez(folder / "golden.npz", **{"input.x": x, "output.y": 2 * x + 1})
    manifest = {"target": "onnxruntime", "precision": "fp32", "model": {"path": "model/tiny.onnx", "options": {}},
                "inputs": [TensorSpec("x", ("N", 4), "float32", -1.0, 1.0).to_dict()],
                "selftest_tolerance": {"atol": 1e-6, "rtol": 1e-6, "stat": "elementwise"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _run(python: Path, folder: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-I", script, *args], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin"})


def _no_bytecode(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.suffix == ".pyc" or p.name == "__pycache__"]


def test_engine_scripts_run_isolated_with_numpy_and_onnxruntime_only(engine_bundle, runtime_only_python):
    python, folder = runtime_only_python, engine_bundle
    done = _run(python, folder, "run.py", "--help")
    assert done.returncode == 0 and "--selftest" in done.stdout, done.stderr
    done = _run(python, folder, "run.py", "--selftest", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["selftest"] is True
    done = _run(python, folder, "run.py", "--profile", "--json", "--seconds", "0.1", "--iterations", "5",
                "--batch", "3")
    result = json.loads(done.stdout)
    assert result["protocol"]["batch"] == 3 and result["protocol"]["runtime"] == "onnxruntime"
    x = np.ones((5, 4), np.float32)
    np.savez(folder / "in.npz", x=x)
    done = _run(python, folder, "run.py", "--input", "in.npz", "--output", "out.npz")
    assert done.returncode == 0, done.stderr
    with np.load(folder / "out.npz") as out:
        np.testing.assert_allclose(out["y"], 2 * x + 1)
    _no_bytecode(folder)


def test_bad_input_is_one_error_line_and_exit_2(engine_bundle, runtime_only_python):
    (engine_bundle / "manifest.json").unlink()
    done = _run(runtime_only_python, engine_bundle, "run.py", "--selftest")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    _no_bytecode(engine_bundle)


@pytest.mark.parametrize("kind", sorted(set(BUNDLE_FILES) - {"engine"}))
def test_every_kind_starts_from_its_own_files(kind, tmp_path, runtime_only_python):
    kinds = (kind,) if kind == "jetson" else ("engine", kind)
    folder = _copy_runtime(tmp_path / kind, *kinds)
    done = _run(runtime_only_python, folder, SCRIPTS[kind], *(() if kind == "jetson" else ("--help",)))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == (2 if kind == "jetson" else 0)
    assert done.stdout.strip()
    _no_bytecode(folder)


def test_inside_the_toolchain_siblings_come_from_the_package():
    from compressor.runtime import detect, jetson, run, tracker

    assert run.open_backend.__module__ == tracker.open_backend.__module__ == "compressor.runtime.backends"
    assert detect.StreamDetector.__module__ == "compressor.runtime.can_stream"
    assert jetson.latency_stats.__module__ == "compressor.runtime.measurement"
