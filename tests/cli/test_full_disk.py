"""Commands whose output folder sits on a really full file system, and a real Ctrl-C: one line, nothing left behind.

The full disk is a 64 KiB tmpfs filled to the brim, mounted in a private mount namespace (``unshare -rm``), so
nothing on the machine is touched; where user namespaces are not allowed these tests skip.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_hostile_cli import _write_tiny_onnx
from tests.support import (
    CliResult,
    assert_one_line_error,
    assert_untouched_outside,
    tree_state,
)

FULL_DISK_SCRIPT = r"""
mount -t tmpfs -o size=64k tmpfs "$1" || exit 99
head -c 65536 /dev/zero > "$1/fill" 2>/dev/null
mnt="$1"; listing="$2"; shift 2
"$@"; code=$?
find "$mnt" -mindepth 1 ! -name fill \( -type f -o -name "*.tmp*" \) > "$listing"
exit $code
"""


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="needs 'unshare -rm' and tmpfs mounts")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """An ONNX Runtime artifact of a tiny helper-made ONNX (its folder holds nothing else)."""
    from compressor.cli import main

    root = tmp_path_factory.mktemp("full-disk-kit")
    _write_tiny_onnx(root / "tiny.onnx")
    assert main(["build", str(root / "tiny.onnx"), "--target", "onnxruntime", "--out", str(root / "art")]) == 0
    return root / "art" / "tiny_fp32.onnx"


def _on_full_disk(tmp_path: Path, args: list[str]) -> tuple[CliResult, list[str]]:
    """Run ``compress ARGS`` ({full} is the full mount); return its result and the files (and temporary folders)
    it left on the mount."""
    mount, listing = tmp_path / "full", tmp_path / "left.txt"
    mount.mkdir()
    command = [sys.executable, "-m", "compressor.cli", *[a.format(full=mount) for a in args]]
    done = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK_SCRIPT, "sh", str(mount), str(listing), *command],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    return CliResult(done.returncode, done.stdout, done.stderr), listing.read_text().split()


FULL_DISK_CASES = [
    pytest.param(["profile", "{art}", "--duration", "0", "--iterations", "3", "--warmup", "0", "--save",
                  "{full}/profile.json"], id="profile-save"),
    pytest.param(["build", "{onnx}", "--target", "onnxruntime", "--out", "{full}/engines"], id="build-onnxruntime"),
    pytest.param(["build", "{onnx}", "--target", "openvino", "--out", "{full}/engines"], id="build-openvino"),
    pytest.param(["bundle", "{art}", "--duration", "0", "--out", "{full}/dist"], id="bundle"),
    pytest.param(["export", "tiny_convnet", "--out", "{full}/onnx"], id="export"),
]


@needs_namespaces
@pytest.mark.parametrize("args", FULL_DISK_CASES)
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, artifact, args):
    inputs = artifact.parent.parent
    before = tree_state(inputs)
    result, left = _on_full_disk(tmp_path, [a.format(art=artifact, onnx=inputs / "tiny.onnx", full="{full}")
                                            for a in args])
    assert_one_line_error(result)
    line = result.err.strip().lower()
    assert "no space left on device" in line and ".tmp" not in line, line
    assert not left, left  # no file and no temporary folder is left in the output folder
    assert_untouched_outside(inputs, before)


def test_ctrl_c_while_profiling_is_one_line_exit_130(artifact):
    child = subprocess.Popen([sys.executable, "-m", "compressor.cli", "profile", str(artifact), "--duration", "60",
                              "--warmup", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)  # imports, loading and into the timed loop
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, (child.returncode, err)
    assert err.strip() == "interrupted" and out == ""
