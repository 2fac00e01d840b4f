"""``compress build`` into a shared folder: builds are staged and published with their sidecar last under a lock
on the folder, so two builds of one name never mix, and an interrupted INT8 build leaves no engine, no sidecar and
no temporary folder (in the output folder or the system's temporary directory)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from compressor.core.files import folder_lock
from tests.support import assert_no_partial_files, assert_untouched_outside, tree_state

ROOT = Path(__file__).resolve().parents[2]

LOOP = """import sys
from compressor.cli import main
precision, onnx_path, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for _ in range(count):
    code = main(["build", onnx_path, "--target", "onnxruntime", "--precision", precision, "--out", out,
                 "--name", "m"])
    if code:
        sys.exit(code)
"""

# Holds an INT8 build while ONNX Runtime's calibrator reads its first sample (the real reader, paused), so the
# test can interrupt it mid-build: its quantizer's temporary folders exist and the engine is not complete yet.
PAUSED_INT8 = """import os, sys, time
import compressor.calibration.ort_reader as module
real = module.ort_reader

def paused(feeds):
    reader = real(feeds)
    get_next = reader.get_next

    def next_feed():
        os.write(1, b"calibrating\\n")  # the quantizer redirects sys.stdout
        time.sleep(120)
        return get_next()

    reader.get_next = next_feed
    return reader

module.ort_reader = paused
from compressor.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    """The child's environment: its own system temporary directory and calibration cache, to check afterwards."""
    (tmp_path / "systemp").mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp_path / "systemp"), "EDGE_COMPRESS_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(ROOT)}


def _left_in_system_temp(tmp_path: Path) -> list[Path]:
    """What the child left in its system temporary directory, besides ``.ses`` (a session-id file a runtime
    library writes there when it is imported, in every process)."""
    return [p for p in (tmp_path / "systemp").iterdir() if p.name != ".ses"]


def _weights_precision(path: Path) -> str:
    model = onnx.load(str(path))
    types = {init.data_type for init in model.graph.initializer}
    return "fp16" if onnx.TensorProto.FLOAT16 in types else "fp32"


def _consistent(out: Path) -> None:
    sidecar = json.loads((out / "m.onnx.artifact.json").read_text())
    assert sidecar["files"] == ["m.onnx"]
    assert sidecar["precision"] == _weights_precision(out / "m.onnx")


def test_two_builds_of_one_name_at_once_never_mix(exported, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    onnx_path = exported["tiny_convnet"].path
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    runs = [subprocess.Popen([sys.executable, str(script), precision, str(onnx_path), str(out), "6"],
                             env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for precision in ("fp32", "fp16")]
    seen = set()
    while any(run.poll() is None for run in runs):
        try:  # a reader during the builds: a sidecar, when there is one, describes the files beside it
            seen.add(json.loads((out / "m.onnx.artifact.json").read_text())["precision"])
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    for run in runs:
        assert run.returncode == 0, run.communicate()
    _consistent(out)
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx", "m.onnx.artifact.json"]
    assert _left_in_system_temp(tmp_path) == []


def test_a_build_publishes_only_when_it_holds_the_folder(exported, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    with folder_lock(out):
        run = subprocess.Popen([sys.executable, str(script), "fp16", str(exported["tiny_convnet"].path), str(out),
                                "1"], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        staged = []
        while not staged and time.monotonic() < deadline and run.poll() is None:
            staged = list(out.glob(".m.build-*.tmp/m.onnx.artifact.json"))
            time.sleep(0.05)
        assert staged, run.communicate()  # built completely in its staging folder ...
        time.sleep(0.5)
        assert run.poll() is None and not (out / "m.onnx").exists()  # ... and waiting for the folder
    assert run.wait(timeout=120) == 0, run.communicate()
    _consistent(out)
    assert_no_partial_files(out)
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx", "m.onnx.artifact.json"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_int8_build_leaves_nothing(exported, tmp_path, signum, cli):
    onnx_path = exported["tiny_convnet"].path
    out = tmp_path / "out"
    assert cli("build", onnx_path, "--target", "onnxruntime", "--out", out, "--name", "m").code == 0  # an older build
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(calibration / f"{i}.npy", rng.random((1, 3, 32, 32), dtype=np.float32))
    script = tmp_path / "paused.py"
    script.write_text(PAUSED_INT8)
    before = tree_state(tmp_path)
    run = subprocess.Popen([sys.executable, str(script), "build", str(onnx_path), "--target", "onnxruntime",
                            "--precision", "int8", "--calibration", str(calibration), "--out", str(out),
                            "--name", "m"], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert run.stdout.readline().strip() == "calibrating", run.communicate()
        staging = list(out.glob(".m.build-*.tmp"))
        assert staging and list((staging[0] / ".scratch").iterdir())  # the quantizer's folders live in staging
        run.send_signal(signum)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted"], err
    assert_untouched_outside(tmp_path, before, tmp_path / "systemp")
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx", "m.onnx.artifact.json"]  # the older build, whole
    assert json.loads((out / "m.onnx.artifact.json").read_text())["precision"] == "fp32"
    assert _left_in_system_temp(tmp_path) == []
