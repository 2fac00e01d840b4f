"""Latency profiling of any Runner: time-based warm-up, then at least N iterations AND T seconds, in windows.

The input shapes timed are chosen here (:func:`timed_specs`: a size for every dynamic axis, from ``--shape``,
``--batch`` or the spec's example sizes) and recorded in the result's protocol with the machine's state.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from compressor.core.errors import CompressError, InputSpecError, did_you_mean
from compressor.core.feeds import random_feed
from compressor.core.machine import snapshot
from compressor.core.tensor_spec import MAX_DIM, TensorSpec
from compressor.runtime.measurement import (
    COV_WARNING,
    WINDOWS,
    check_protocol,
    input_shapes,
    measure_call,
    window_stats,
)
from compressor.targets.base import Artifact, Runner

MAX_FEED_BYTES = 4 << 30
"""Largest random input feed (all inputs together) profiling will allocate: a bigger one is refused first."""

Shapes = Mapping[str, Sequence[int]]
"""Concrete shapes chosen for inputs by name (``--shape image=1x3x256x256``)."""


class ProfileOptionsError(CompressError):
    """A profiling protocol out of bounds (NaN, infinite or huge seconds, iterations, threads or batch)."""


@dataclass(frozen=True)
class ProfileOptions:
    """The measurement protocol (trtexec's shape: warm-up by time, then iterations AND duration).

    Checked when made: seconds finite and bounded, counts within the bounds of
    :func:`compressor.runtime.measurement.check_protocol`; anything else raises :class:`ProfileOptionsError`.
    ``windows``: the timed samples are cut into this many consecutive windows (their medians and spread).
    """

    batch: int = 1
    threads: int | None = None
    warmup_s: float = 0.5
    min_iterations: int = 50
    min_duration_s: float = 3.0
    cov_warning: float = COV_WARNING
    seed: int = 0
    windows: int = WINDOWS

    def __post_init__(self) -> None:
        try:
            check_protocol(batch=self.batch, threads=self.threads, warmup_s=self.warmup_s,
                           min_iterations=self.min_iterations, min_duration_s=self.min_duration_s)
            window_stats([1.0], self.windows)
        except ValueError as exc:
            raise ProfileOptionsError(f"profiling: {exc}") from None


def feed_bytes(specs: Sequence[TensorSpec], batch: int) -> int:
    """Bytes a random feed for ``specs`` at ``batch`` would take."""
    return sum(int(np.prod(s.concrete_shape(batch), dtype=np.float64)) * np.dtype(s.dtype).itemsize for s in specs)


def parse_shapes(texts: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``["image=1x3x256x256", ...]`` -> ``{"image": (1, 3, 256, 256)}``; one-line InputSpecError otherwise."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, sep, dims = str(text).partition("=")
        parts = dims.split("x") if dims else []
        if (not sep or not name or not name.isprintable() or not parts
                or not all(p.isascii() and p.isdigit() and len(p) <= 10 and 0 < int(p) <= MAX_DIM for p in parts)):
            raise InputSpecError(f"--shape {text!r} is not NAME=SIZExSIZE... with sizes from 1 to {MAX_DIM} "
                                 "(e.g. image=1x3x256x256)")
        if name in shapes:
            raise InputSpecError(f"--shape gives input '{name}' twice")
        shapes[name] = tuple(int(p) for p in parts)
    return shapes


def timed_specs(specs: Sequence[TensorSpec], shapes: Shapes | None = None, batch: int | None = None, *,
                owner: str = "the model") -> tuple[list[TensorSpec], int]:
    """The input specs at the concrete shapes to time, and the batch they make.

    A shape in ``shapes`` must have the input's rank and its fixed sizes; a symbol takes one size across the
    inputs (a chosen shape sets it for the others too). ``batch`` (None: from the shapes, else 1) sizes a
    symbolic axis 0 not set by a shape; a fixed or chosen batch that differs from it is refused. Other symbols
    take their example size. Every problem is one InputSpecError line naming the input.
    """
    shapes = {name: tuple(int(d) for d in shape) for name, shape in (shapes or {}).items()}
    by_name = {spec.name: spec for spec in specs}
    sizes: dict[str, tuple[int, str]] = {}
    for name, shape in shapes.items():
        spec = by_name.get(name)
        if spec is None:
            raise InputSpecError(f"--shape {name}: {owner} has no input '{name}'{did_you_mean(name, by_name)}; "
                                 f"it takes: {', '.join(by_name)}")
        text = f"--shape {name}={'x'.join(map(str, shape))}"
        if len(shape) != len(spec.shape):
            raise InputSpecError(f"{text}: input '{name}' has rank {len(spec.shape)} ({spec.shape_text})")
        for axis, (dim, size) in enumerate(zip(spec.shape, shape)):
            if isinstance(dim, int) and dim != size:
                raise InputSpecError(f"{text}: axis {axis} of input '{name}' is fixed at {dim} ({spec.shape_text})")
            if isinstance(dim, str):
                seen = sizes.setdefault(dim, (size, name))
                if seen[0] != size:
                    raise InputSpecError(f"{text}: {dim} is {size} here but {seen[0]} in input '{seen[1]}'")
    fixed_batch = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    chosen = {sizes[s.shape[0]][0] for s in specs if s.shape and isinstance(s.shape[0], str) and s.shape[0] in sizes}
    batches = fixed_batch | chosen
    if batch is not None and batches and batches != {batch}:
        if fixed_batch and fixed_batch != {batch}:
            raise InputSpecError(f"{owner} has a fixed batch of {fixed_batch.pop()}; "
                                 f"it cannot be profiled at batch {batch}")
        raise InputSpecError(f"--shape gives batch {chosen.pop()} (axis 0) but --batch is {batch}")
    if len(batches) > 1:
        raise InputSpecError(f"the inputs of {owner} would take different batches: {sorted(batches)}")
    resolved = batch if batch is not None else (batches.pop() if batches else 1)
    for spec in specs:  # the batch symbol takes the batch wherever it appears
        if spec.shape and isinstance(spec.shape[0], str):
            sizes.setdefault(spec.shape[0], (resolved, spec.name))
    examples: dict[str, int] = {}
    for spec in specs:  # an example size declared on one input holds for the symbol everywhere
        for symbol, size in spec.examples.items():
            examples.setdefault(symbol, int(size))
    out = []
    for spec in specs:
        if spec.name in shapes:
            concrete = shapes[spec.name]
        else:
            concrete = tuple(_size(spec, dim, sizes, examples) for dim in spec.shape)
        fixed = TensorSpec(spec.name, concrete, spec.dtype, spec.low, spec.high)
        fixed.concrete_shape()  # one input beyond the size bound is refused here
        out.append(fixed)
    return out, resolved


def _size(spec: TensorSpec, dim, sizes: dict[str, tuple[int, str]], examples: dict[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    if dim in sizes:
        return sizes[dim][0]
    if dim in spec.examples:
        return int(spec.examples[dim])
    if dim in examples:
        return examples[dim]
    raise InputSpecError(f"input '{spec.name}': symbolic dimension '{dim}' has no example size; choose one with "
                         f"--shape {spec.name}=...")


def runtime_version(runner: Runner) -> str:
    """The version of the runtime behind ``runner`` (its own report, else the installed package's)."""
    version = getattr(runner, "runtime_version", "") or ""
    if version:
        return str(version)
    package = {"pytorch": "torch"}.get(runner.name.split(":")[0], runner.name.split(":")[0])
    try:
        return importlib.metadata.version(package)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ""


def artifact_size(artifact: Artifact) -> dict:
    """``{"bytes": total, "files": {name: bytes}}`` of the artifact's model files (sidecar not counted)."""
    files = {}
    for name in artifact.files or (artifact.path.name,):
        path = artifact.folder / name
        files[name] = path.stat().st_size if path.is_file() else 0
    return {"bytes": sum(files.values()), "files": files}


def profile_runner(runner: Runner, options: ProfileOptions = ProfileOptions(), *, feed=None,
                   shapes: Shapes | None = None) -> dict:
    """Profile an active runner on ``feed`` (default: random inputs at :func:`timed_specs`' shapes), bound once
    outside the timed loop.

    Returns ``{"latency_ms": {min, median, mean, p90, p95, p99, max, std}, "throughput_fps", "cov",
    "iterations", "windows", "machine", "protocol", "warnings"}``; the protocol records the input shapes timed.

    >>> with load_target("openvino").load_runner(Artifact.load("m.xml")) as runner:
    ...     profile_runner(runner, ProfileOptions(batch=2), shapes={"image": (2, 3, 256, 256)})["latency_ms"]
    """
    if feed is None:
        specs, _ = timed_specs(runner.input_specs, shapes, options.batch, owner=runner.name)
        size = feed_bytes(specs, options.batch)
        if size > MAX_FEED_BYTES:
            raise InputSpecError(f"inputs of {runner.name} at batch {options.batch} would take {size / 2**30:.1f} GiB "
                                 f"(more than {MAX_FEED_BYTES / 2**30:.0f} GiB): profile a smaller batch or shape")
        feed = random_feed(specs, batch=options.batch, rng=np.random.default_rng(options.seed))
    return measure_call(runner.bind(feed), batch=options.batch, threads=options.threads, runtime=runner.name,
                        runtime_version=runtime_version(runner), warmup_s=options.warmup_s,
                        min_iterations=options.min_iterations, min_duration_s=options.min_duration_s,
                        cov_warning=options.cov_warning, windows=options.windows, inputs=input_shapes(feed),
                        probe=snapshot)
