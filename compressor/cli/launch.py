"""``compress run --nproc N``: start the same command in N processes on this machine with torchrun (PyTorch's
own launcher, run inside this process), which sets each one's rank and the rendezvous; the processes train
together with DistributedDataParallel and rank 0 writes the run. For several machines, run ``torchrun``
yourself (README).

The processes write to this terminal as they go. A bad input stops every rank alike, so an ``error:`` line
several ranks print is shown once (and a rank's ``interrupted`` after another's error not at all); torchrun's
own failure report (a traceback of the launcher) is left out: the failing process already said why."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from typing import Iterator

import click

NPROC_MAX = 64
EXIT_FAILED = 1
ONCE_PREFIX = b"error: "  # compressor.cli.failures: every one-line failure starts so
AFTER_ERROR = b"interrupted"  # what a rank torchrun stops because another failed prints
_SEGMENT = re.compile(rb"(?<=[\r\n])")  # split after each line end or carriage return (progress bars)


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command line starting ``compress <args>`` in ``nproc`` local processes under torchrun."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "compressor.cli", *args]


def command_args(ctx: click.Context, skip: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The command's own arguments rebuilt from what click parsed (its name first), without ``skip``."""
    args = [ctx.info_name or ctx.command.name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in skip or value is None:
            continue
        if isinstance(param, click.Argument):
            args.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            if value:
                args.append(param.opts[0])
        elif isinstance(param, click.Option) and value != param.default:
            args += [param.opts[0], str(value)]
    return args


def launch(nproc: int, args: list[str]) -> int:
    """Run ``compress <args>`` in ``nproc`` processes and return the exit code: 0, or the first failed
    process's (2 for a bad input it explained in one line, 1 otherwise, with one line saying which rank)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    with _launcher_quiet(), _stderr_lines_once():
        try:
            run(parse_args(torchrun_command(nproc, args)[3:]))
            return 0
        except ChildFailedError as failed:
            rank, failure = failed.get_first_failure()
            code = failure.exitcode
    if code == 2:  # a bad input: that rank printed its one line
        return code
    click.echo(f"error: training process {rank} of {nproc} failed (exit code {code}); its output is above",
               err=True)
    return EXIT_FAILED


@contextlib.contextmanager
def _launcher_quiet() -> Iterator[None]:
    """torchrun's own log lines (the OMP_NUM_THREADS banner, 'failed (exitcode ...)') off while it runs."""
    logger = logging.getLogger("torch.distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _stderr_lines_once() -> Iterator[None]:
    """Route file descriptor 2 (this process's and, inherited, the training processes') through a pipe that
    passes everything on except repeats of an ``error:`` line, and ``interrupted`` after an error."""
    sys.stderr.flush()
    terminal = os.dup(2)
    source, sink = os.pipe()
    os.dup2(sink, 2)
    os.close(sink)
    forwarder = threading.Thread(target=_forward, args=(source, terminal), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # the last write end closes (the training processes have exited): the pipe ends
        forwarder.join(timeout=10)
        os.close(terminal)


def _forward(source: int, target: int) -> None:
    shown: set[bytes] = set()
    pending = b""
    with os.fdopen(source, "rb", buffering=0) as stream:
        while chunk := stream.read(65536):
            *complete, pending = _SEGMENT.split(pending + chunk)
            for segment in complete:
                if _passes(segment, shown):
                    os.write(target, segment)
    if pending:
        os.write(target, pending)


def _passes(segment: bytes, shown: set[bytes]) -> bool:
    line = segment.rstrip(b"\r\n")
    if line.startswith(ONCE_PREFIX):
        if line in shown:
            return False
        shown.add(line)
    return not (line == AFTER_ERROR and any(s.startswith(ONCE_PREFIX) for s in shown))
