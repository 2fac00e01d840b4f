"""``compress run --nproc N``: start the same command in N processes on this machine with ``torchrun``
(PyTorch's own launcher), which sets each one's rank and the rendezvous; the processes train together with
DistributedDataParallel and rank 0 writes the run. For several machines, run ``torchrun`` yourself (README)."""
from __future__ import annotations

import subprocess
import sys

import click

NPROC_MAX = 64


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
    """Run ``compress <args>`` in ``nproc`` processes and return torchrun's exit code."""
    return subprocess.call(torchrun_command(nproc, args))
