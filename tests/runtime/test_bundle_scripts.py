"""The runtime files run as a bundle's scripts: copied flat into a folder, started with ``python -I`` (the
folder not on sys.path) by a Python that has numpy and onnxruntime only, and writing no byte-code."""
from __future__ import annotations

import io
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
    # the engine it measured, from the manifest: `compress report RUN --device-profile` names it by these
    assert (result["target"], result["precision"]) == ("onnxruntime", "fp32")
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


# ---------------------------------------------------------------- hostile input: one line, exit 2
def _one_error_line(done: subprocess.CompletedProcess, needle: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert needle in lines[0], lines[0]


def _npz_bomb(path: Path, mib: int = 300) -> Path:
    """An .npz whose one float32 array inflates to ``mib`` MiB from well under 1 MiB on disk."""
    import zipfile

    count = (mib << 20) // 4
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for _ in range(mib):
                member.write(bytes(1 << 20))
    return path


def _write_inputs(folder: Path, kind: str) -> list[str]:
    x = np.ones((2, 4), np.float32)
    if kind == "truncated":
        np.savez(folder / "in.npz", x=x)
        data = (folder / "in.npz").read_bytes()
        (folder / "in.npz").write_bytes(data[: len(data) // 2])
    elif kind == "not a zip":
        (folder / "in.npz").write_bytes(b"\x93NUMPY garbage")
    elif kind == "dtype":
        np.savez(folder / "in.npz", x=x.astype(np.float64))
    elif kind == "shape":
        np.savez(folder / "in.npz", x=np.ones((2, 5), np.float32))
    elif kind == "rank":
        np.savez(folder / "in.npz", x=np.ones((8,), np.float32))
    elif kind == "missing":
        np.savez(folder / "in.npz", y=x)
    elif kind == "objects":
        np.savez(folder / "in.npz", x=np.array([{"a": 1}], dtype=object))
    elif kind == "bomb":
        _npz_bomb(folder / "in.npz")
    return ["--input", "in.npz", "--output", "out.npz"]


@pytest.mark.parametrize("kind, needle", [
    ("truncated", "not a readable .npz"),
    ("not a zip", "not a readable .npz"),
    ("dtype", "input 'x' is float64, the model takes float32"),
    ("shape", "has shape [2, 5], the model takes Nx4"),
    ("rank", "has shape [8]"),
    ("missing", "unknown input(s) y"),
    ("objects", "not a readable .npz of arrays"),
    ("bomb", "decompression bomb"),
])
def test_run_py_refuses_bad_inputs_in_one_line(engine_bundle, runtime_only_python, kind, needle):
    args = _write_inputs(engine_bundle, kind)
    done = _run(runtime_only_python, engine_bundle, "run.py", *args)
    _one_error_line(done, needle)
    assert not (engine_bundle / "out.npz").exists()
    assert not [p for p in engine_bundle.iterdir() if p.name.endswith(".tmp")]
    _no_bytecode(engine_bundle)


@pytest.mark.parametrize("args, needle", [
    (["--profile", "--batch", "0"], "--batch: 0 is not between 1"),
    (["--profile", "--batch", "-3"], "--batch"),
    (["--profile", "--batch", "many"], "not a whole number"),
    (["--profile", "--batch", "100000000"], "--batch"),
    (["--profile", "--threads", "-1"], "--threads: -1 is not between 1"),
    (["--profile", "--threads", "0"], "--threads"),
    (["--profile", "--threads", "100000"], "--threads"),
    (["--profile", "--seconds", "inf"], "--seconds"),
    (["--profile", "--seconds", "nan"], "--seconds"),
    (["--profile", "--seconds", "-1"], "--seconds"),
    (["--profile", "--iterations", "0"], "--iterations"),
    (["--profile", "--iterations", "1e12"], "--iterations"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_run_py_refuses_nonsense_numbers_in_one_line(engine_bundle, runtime_only_python, args, needle):
    _one_error_line(_run(runtime_only_python, engine_bundle, "run.py", *args), needle)


def test_run_py_profile_batch_too_large_for_memory_is_one_line(engine_bundle, runtime_only_python):
    manifest = json.loads((engine_bundle / "manifest.json").read_text())
    manifest["inputs"][0]["shape"] = ["N", 4096, 4096]
    (engine_bundle / "manifest.json").write_text(json.dumps(manifest))
    _one_error_line(_run(runtime_only_python, engine_bundle, "run.py", "--profile", "--batch", "512"),
                    "GiB of inputs")


def test_run_py_writes_exactly_the_output_named(engine_bundle, runtime_only_python):
    np.savez(engine_bundle / "in.npz", x=np.ones((3, 4), np.float32))
    done = _run(runtime_only_python, engine_bundle, "run.py", "--input", "in.npz", "--output", "result")
    assert done.returncode == 0, done.stderr
    with np.load(engine_bundle / "result") as out:  # no ".npz" appended behind the user's back
        np.testing.assert_allclose(out["y"], np.full((3, 4), 3.0, np.float32))
    assert not [p for p in engine_bundle.iterdir() if p.name.endswith(".tmp")]
    done = _run(runtime_only_python, engine_bundle, "run.py", "--input", "in.npz", "--output", "no/such/dir/out.npz")
    _one_error_line(done, "cannot write no/such/dir/out.npz")


def test_crafted_bytecode_beside_the_scripts_is_never_imported(engine_bundle, runtime_only_python, tmp_path):
    """An unchecked-hash ``__pycache__/backends.*.pyc`` (used by Python's normal import whatever the source says)
    that would create a marker: the bundle's scripts compile their siblings from source instead."""
    import py_compile
    import sys

    marker = tmp_path / "marker"
    future = "from __future__ import annotations\n"
    source = (engine_bundle / "backends.py").read_text()
    evil = tmp_path / "evil.py"
    evil.write_text(source.replace(future, f"{future}open({str(marker)!r}, 'w').write('ran')\n"))
    pyc = engine_bundle / "__pycache__" / f"backends.{sys.implementation.cache_tag}.pyc"
    pyc.parent.mkdir()
    py_compile.compile(str(evil), cfile=str(pyc), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    importing = "import sys; sys.path.insert(0, '.'); import backends"
    control = subprocess.run([str(runtime_only_python), "-I", "-c", importing], cwd=engine_bundle,
                             capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert control.returncode == 0 and marker.exists(), control.stderr  # the crafted byte-code does work
    marker.unlink()
    for args in (["--selftest", "--json"], ["--profile", "--seconds", "0.05", "--iterations", "2"]):
        done = _run(runtime_only_python, engine_bundle, "run.py", *args)
        assert done.returncode == 0, done.stderr
        assert not marker.exists(), f"run.py {' '.join(args)} imported the crafted byte-code"
    assert sorted(p.name for p in pyc.parent.iterdir()) == [pyc.name]  # and wrote none of its own


def test_every_script_sets_up_its_folder_the_same_way():
    """run.py, jetson.py, tracker.py and detect.py share one header: package, no byte-code read or written."""
    from compressor.runtime import SCRIPTS, source

    headers = set()
    for name in SCRIPTS:
        text = source(name).read_text()
        start = text.index("if not __package__:")
        headers.add(text[start:text.index("\nfrom .", start)])
    assert len(headers) == 1
    assert "sys.dont_write_bytecode = True" in headers.pop()


# ---------------------------------------------------------------- jetson.py on a device without trtexec on PATH
def _jetson_folder(tmp_path: Path) -> Path:
    folder = _copy_runtime(tmp_path / "jetson", "jetson")
    (folder / "manifest.json").write_text(json.dumps({"precision": "fp16", "jetson": {
        "build_command": ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine"], "engine": "model.engine"}}))
    return folder


def test_jetson_build_without_trtexec_is_one_line(tmp_path, runtime_only_python):
    from compressor.runtime.jetson import TRTEXEC_FALLBACKS

    if any(Path(p).exists() for p in TRTEXEC_FALLBACKS):
        pytest.skip("this machine has TensorRT's trtexec")
    folder = _jetson_folder(tmp_path)
    _one_error_line(_run(runtime_only_python, folder, "jetson.py", "build"), "trtexec is not on PATH nor in "
                    "/usr/src/tensorrt/bin")
    _one_error_line(_run(runtime_only_python, folder, "jetson.py", "profile", "inf"), "profile seconds")
    _no_bytecode(folder)


def test_trtexec_is_found_on_path_then_where_jetpack_puts_it(tmp_path):
    from compressor.runtime.jetson import find_trtexec, trtexec_command

    bin_dir, jetpack = tmp_path / "bin", tmp_path / "usr-src-tensorrt-bin"
    for folder in (bin_dir, jetpack):
        folder.mkdir()
        (folder / "trtexec").write_text("#!/bin/sh\nexit 0\n")
        (folder / "trtexec").chmod(0o755)
    assert find_trtexec(path=str(bin_dir), fallbacks=(str(jetpack / "trtexec"),)) == str(bin_dir / "trtexec")
    assert find_trtexec(path=str(tmp_path / "empty"), fallbacks=(str(jetpack / "trtexec"),)) == str(jetpack / "trtexec")
    (jetpack / "trtexec").chmod(0o644)  # not executable: not taken
    with pytest.raises(FileNotFoundError, match="trtexec is not on PATH"):
        find_trtexec(path=str(tmp_path / "empty"), fallbacks=(str(jetpack / "trtexec"),))
    with pytest.raises(ValueError, match="not a trtexec command"):
        trtexec_command(["sh", "-c", "rm -rf /"])
