"""A command that fails the way the machine or a bug makes real commands fail, to test the CLI's top level."""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import click
import numpy as np


@click.command()
@click.argument("failure")
@click.argument("folder", type=click.Path(file_okay=False))
def raising(failure: str, folder: str) -> None:
    """Fail with FAILURE, using FOLDER for any file it needs."""
    folder_path = Path(folder)
    if failure == "disk-full":  # what an atomic write reports when the disk fills (a temporary name)
        with open("/dev/full", "wb") as handle:
            try:
                handle.write(b"x" * 65536)
                handle.flush()
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(folder_path / ".report.json.k3j9x_2a.tmp.json")) from exc
    if failure == "disk-full-wrapped":  # a library that wraps the OSError in its own exception
        try:
            with open("/dev/full", "wb") as handle:
                handle.write(b"x" * 65536)
                handle.flush()
        except OSError as exc:
            raise RuntimeError("serialization failed") from exc
    if failure == "quota":
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(folder_path / "model.onnx"))
    if failure == "memory":
        np.empty(2**62, np.uint8)
    if failure == "missing-file":
        open(folder_path / "no" / "such.file", "rb")
    if failure == "end-of-file":
        (folder_path / "empty.npz").write_bytes(b"")
        np.load(folder_path / "empty.npz")
    if failure == "recursion":
        def deeper(level: int) -> int:
            return deeper(level + 1) + 1

        deeper(0)
    if failure == "interrupt":
        signal.raise_signal(signal.SIGINT)
    if failure == "bug":
        settings: dict[str, int] = {}
        print(settings["threads"])
    raise click.UsageError(f"unknown failure {failure}")
