"""compressor.core.files: modes that honour the umask, write failures named by their destination (a full disk
included), staging folders, publishing many entries as one, and SIGTERM handled like Ctrl-C."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

from compressor.core.files import (
    OutputWriteError,
    atomic_dir,
    atomic_path,
    folder_lock,
    publish_entries,
    staging_dir,
    temp_files_in,
    write_json,
)
from compressor.core.interrupts import interrupts_deferred, terminate_as_interrupt
from tests.support import assert_no_partial_files, assert_untouched_outside, tree_state


@pytest.fixture
def umask():
    """Set a umask for the test and restore the previous one."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_files_and_folders_get_the_modes_open_and_mkdir_give(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain"
    plain.write_text("x")
    (tmp_path / "plain_dir").mkdir()
    with atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("{}")
    write_json(tmp_path / "b.json", {"k": 1})
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "inner.txt").write_text("y")
        write_json(tmp / "manifest.json", {})
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "b.json") == _mode(plain) == 0o666 & ~mask
    assert _mode(tmp_path / "folder") == _mode(tmp_path / "plain_dir") == 0o777 & ~mask
    assert _mode(tmp_path / "folder" / "manifest.json") == 0o666 & ~mask
    with staging_dir(tmp_path, ".s-") as staging:
        assert _mode(staging) == 0o777 & ~mask


def test_a_full_disk_names_the_destination_not_the_temporary_file(tmp_path):
    dest = tmp_path / "model.onnx"
    with pytest.raises(OutputWriteError) as caught:
        with atomic_path(dest) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    message = str(caught.value)
    assert message == f"cannot write {dest}: No space left on device"
    assert ".tmp" not in message
    assert list(tmp_path.iterdir()) == []


def test_any_error_about_the_temporary_file_is_named_by_its_destination(tmp_path):
    dest = tmp_path / "report.md"
    with pytest.raises(OutputWriteError, match=r"cannot write .*report\.md: Permission denied$"):
        with atomic_path(dest) as tmp:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    with pytest.raises(OutputWriteError) as caught:
        with atomic_path(dest) as tmp:
            raise RuntimeError(f"writer failed writing {tmp}: file write failed")
    assert str(caught.value) == f"cannot write {dest}: writer failed writing {dest}: file write failed"
    with pytest.raises(KeyError):  # not about the file being written: left alone
        with atomic_path(dest):
            raise KeyError("x")
    with pytest.raises(FileNotFoundError):  # reading an input that is absent is not a write failure
        with atomic_path(dest):
            open(tmp_path / "absent.txt")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_copying_into_a_folder_names_the_folder_not_the_source(tmp_path):
    source = tmp_path / "source_model.onnx"
    source.write_bytes(b"weights")
    out = tmp_path / "out"
    out.mkdir()
    (out / "bundle").mkdir()
    (out / "bundle" / "old.txt").write_text("previous bundle")
    before = tree_state(tmp_path)
    with pytest.raises(OutputWriteError) as caught:
        with atomic_dir(out / "bundle") as tmp:
            # what shutil.copyfile raises on a full disk: the SOURCE as filename, the temporary copy as filename2
            raise OSError(errno.ENOSPC, "No space left on device", str(source), None, str(tmp / "model.onnx"))
    assert str(caught.value) == f"cannot write {out / 'bundle' / 'model.onnx'}: No space left on device"
    assert "source_model" not in str(caught.value)
    assert tree_state(tmp_path) == before
    assert_no_partial_files(tmp_path)


def test_a_full_disk_from_the_cli_is_one_line_naming_the_destination(cli, exported, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def full_disk(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    before = tree_state(tmp_path)
    result = cli("build", exported["tiny_convnet"].path, "--target", "onnxruntime", "--out", out, "--name", "m")
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "m.onnx" in lines[0], result.err
    assert ".tmp" not in lines[0] and "build-" not in lines[0] and "tiny_convnet.onnx" not in lines[0]
    assert_untouched_outside(tmp_path, before, out)
    assert [p.name for p in out.iterdir()] == []


def test_publish_replaces_entries_together_and_removes_what_the_new_output_lacks(tmp_path):
    dest, staging = tmp_path / "run", tmp_path / "staging"
    for folder in (dest / "engines", staging / "engines"):
        folder.mkdir(parents=True)
    (dest / "engines" / "old_int8.onnx").write_text("old")
    (dest / "bundle").mkdir()
    (dest / "report.json").write_text("old report")
    (dest / "mine.txt").write_text("the user's")
    (staging / "engines" / "new_fp32.onnx").write_text("new")
    (staging / "report.json").write_text("new report")
    publish_entries(staging, dest, ["engines", "bundle"], last=["report.json", "report.md"])
    assert sorted(p.name for p in (dest / "engines").iterdir()) == ["new_fp32.onnx"]
    assert not (dest / "bundle").exists() and not (dest / "report.md").exists()
    assert (dest / "report.json").read_text() == "new report"
    assert (dest / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in dest.iterdir()) == ["engines", "mine.txt", "report.json"]


def test_a_failed_publish_puts_back_what_it_moved(tmp_path, monkeypatch):
    dest, staging = tmp_path / "run", tmp_path / "staging"
    dest.mkdir(), staging.mkdir()
    for folder, text in ((dest, "old"), (staging, "new")):
        for name in ("a", "b", "report.json"):
            (folder / name).write_text(text)
    real_replace = os.replace

    def failing(source, target):
        if str(source).endswith(os.sep + "b") and str(source).startswith(str(staging)):
            raise OSError(errno.EIO, "Input/output error", str(source))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OutputWriteError, match="cannot replace the contents of"):
        publish_entries(staging, dest, ["a", "b"], last=["report.json"])
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p.name: p.read_text() for p in dest.iterdir()} == {"a": "old", "b": "old", "report.json": "old"}
    assert_no_partial_files(tmp_path)


def test_a_staging_folder_goes_whatever_happens_and_stale_ones_only_when_no_one_holds_them(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with staging_dir(tmp_path, ".run-") as staging:
            (staging / "engines").mkdir()
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / ".run-deadbeef.tmp"
    stale.mkdir()
    alive = tmp_path / ".run-alive.tmp"
    alive.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(alive)!r}, os.O_RDONLY)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('held', flush=True)\ntime.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with staging_dir(tmp_path, ".run-") as staging:
            assert not stale.exists() and alive.exists()
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, staging.name])
    finally:
        holder.kill()
        holder.wait()


def test_a_staging_folder_is_locked_before_it_carries_the_swept_name(tmp_path):
    # the race it closes: a sweep in another process took a folder made but not yet locked
    import os
    import time

    from compressor.core.files import folder_lock

    fresh, old = tmp_path / ".run-fresh.new", tmp_path / ".run-old.new"  # left between mkdir and rename
    fresh.mkdir()
    old.mkdir()
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    with staging_dir(tmp_path, ".run-") as staging:
        assert staging.name.endswith(".tmp") and fresh.exists() and not old.exists()
        with folder_lock(staging, blocking=False) as free:  # held by its maker from the moment it has the name
            assert free is False


def test_folder_lock_is_exclusive_between_processes(tmp_path):
    probe = ("import sys\nfrom compressor.core.files import folder_lock\n"
             f"with folder_lock({str(tmp_path)!r}, blocking=False) as held:\n    print(held)\n")
    with folder_lock(tmp_path) as held:
        assert held
        assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "True"
    assert list(tmp_path.iterdir()) == []  # no lock file left behind


def test_temporary_files_of_libraries_go_into_the_given_folder(tmp_path):
    scratch = tmp_path / "scratch"
    with temp_files_in(scratch):
        with tempfile.TemporaryDirectory(prefix="rank-") as made:
            assert os.path.dirname(made) == str(scratch)
    assert tempfile.gettempdir() != str(scratch)


def test_sigterm_raises_keyboard_interrupt_inside_and_is_restored_after():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert signal.getsignal(signal.SIGTERM) == previous


def test_interrupts_wait_until_a_deferred_block_is_done():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt():
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
                done.append("renamed")
    assert done == ["renamed"]
