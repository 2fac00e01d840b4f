"""More than one training process, on PyTorch's own engine (``torch.distributed``).

A run started by ``torchrun`` (or ``compress run --nproc N``, which starts ``torchrun``) finds ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in its environment. Every rank builds the same
models from the same seed and draws the same *global* batches; :func:`shard` gives each rank its contiguous
slice of a batch (rank ``r`` of ``w`` takes rows ``[r*n//w, (r+1)*n//w)``: the distributed sampler, applied per
batch, so the data order does not depend on the number of processes). The trainer wraps the trained parameters
in :class:`~torch.nn.parallel.DistributedDataParallel`, which averages gradients across ranks; each rank's loss
is weighted by its share of the batch, so N processes with global batch B take the same steps as one process
with batch B (up to float summation order). Teachers run inside the loss, so their forward pass is sharded the
same way. Only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from compressor.distill.config import ConfigError
from compressor.distill.tensor_tree import map_tensors, tensors_in

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """More than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and prints progress."""
        return self.rank == 0

    def to_dict(self) -> dict[str, Any]:
        return {"processes": self.world_size, "backend": self.backend}


SINGLE = DistContext()


def launched_by_torchrun(environ: dict[str, str] | None = None) -> bool:
    """True when the environment is a ``torchrun`` worker's (it sets ``WORLD_SIZE`` and ``RANK``)."""
    env = os.environ if environ is None else environ
    return "WORLD_SIZE" in env and "RANK" in env


def context_from_env(device: str = "cpu", environ: dict[str, str] | None = None) -> DistContext:
    """This process's place from torchrun's variables (one line on malformed ones); one process without them."""
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return SINGLE
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"]))
    except ValueError:
        raise ConfigError(f"torchrun environment: RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r} "
                          f"are not integers") from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise ConfigError(f"torchrun environment: RANK {rank} is not in 0..WORLD_SIZE-1 ({world})")
    return DistContext(rank, world, local, BACKENDS["cuda" if device.startswith("cuda") else "cpu"])


@contextlib.contextmanager
def process_group(context: DistContext, timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """Join the process group for the run's training (gloo on CPU, NCCL on GPUs), and leave it afterwards."""
    import torch.distributed as dist

    if not context.active or dist.is_initialized():
        yield context
        return
    if context.backend == "nccl":
        torch.cuda.set_device(context.local_rank)
    dist.init_process_group(context.backend, rank=context.rank, world_size=context.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield context
    finally:
        dist.destroy_process_group()


def batch_size(batch: Any) -> int:
    """The number of samples in a batch (a tensor, or a tuple/list/dict of tensors sharing their first axis)."""
    tensors = list(tensors_in(batch))
    if not tensors:
        raise ConfigError("a training batch holds no tensors to split across processes")
    sizes = {int(t.shape[0]) if t.dim() else -1 for t in tensors}
    if len(sizes) != 1 or -1 in sizes:
        raise ConfigError(f"cannot split a training batch across processes: its tensors' first axes differ "
                          f"({sorted(sizes)})")
    return sizes.pop()


def shard(batch: Any, rank: int, world: int) -> tuple[Any, float]:
    """Rank ``rank``'s contiguous slice of ``batch`` and its loss weight ``world * n_local / n`` (1.0 when the
    batch divides evenly), which makes DDP's gradient average equal the whole batch's mean gradient."""
    if world == 1:
        return batch, 1.0
    size = batch_size(batch)
    if size < world:
        raise ConfigError(f"a training batch of {size} samples cannot be split across {world} processes: "
                          f"raise the batch size to at least {world}")
    start, stop = rank * size // world, (rank + 1) * size // world
    return map_tensors(lambda t: t[start:stop], batch), world * (stop - start) / size


def broadcast_object(value: Any, context: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (a checkpoint read by rank 0 alone, e.g. on another node's disk)."""
    if not context.active:
        return value
    import torch.distributed as dist

    holder = [value if context.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(value: Any, context: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order (each rank's random states, for rank 0's checkpoint)."""
    if not context.active:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def average_buffers(modules: Sequence[torch.nn.Module], context: DistContext) -> None:
    """Average floating-point buffers (BatchNorm's running statistics) across ranks, so every rank ends with
    the same model; each rank's statistics came from its own shard of the batches."""
    if not context.active:
        return
    import torch.distributed as dist

    for module in modules:
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(context.world_size)


def map_sharded(fn: Callable[[Any], Any], chunks: Iterable[Any], context: DistContext | None = None) -> list[Any]:
    """``[fn(chunk) for chunk in chunks]``, the work shared across the run's processes: rank ``r`` computes the
    chunks ``i`` with ``i % world == r`` and every rank gets all the results back, in the chunks' order (a teacher's
    outputs over the whole training set, computed once before training). Each chunk's result is what one process
    computes for it, so the list is the same for any number of processes. ``context`` defaults to the running
    training's (:func:`~compressor.distill.train_runtime.current_runtime`); one process maps them all itself.

    >>> logits = np.concatenate(map_sharded(lambda x: teacher(torch.from_numpy(x)).numpy(), batches))
    """
    if context is None:
        from compressor.distill.train_runtime import current_runtime

        context = current_runtime().dist
    items = list(chunks)
    if not context.active:
        return [fn(item) for item in items]
    mine = [fn(item) for item in items[context.rank::context.world_size]]
    shares = gather_objects(mine, context)
    return [shares[i % context.world_size][i // context.world_size] for i in range(len(items))]
