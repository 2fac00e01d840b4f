"""Latency profiling of any Runner: time-based warm-up, then at least N iterations AND T seconds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from compressor.core.errors import CompressError, InputSpecError
from compressor.core.feeds import random_feed
from compressor.core.tensor_spec import TensorSpec
from compressor.runtime.measurement import COV_WARNING, check_protocol, measure_call
from compressor.targets.base import Runner

MAX_FEED_BYTES = 4 << 30
"""Largest random input feed (all inputs together) profiling will allocate: a bigger one is refused first."""


class ProfileOptionsError(CompressError):
    """A profiling protocol out of bounds (NaN, infinite or huge seconds, iterations, threads or batch)."""


@dataclass(frozen=True)
class ProfileOptions:
    """The measurement protocol (trtexec's shape: warm-up by time, then iterations AND duration).

    Checked when made: seconds finite and bounded, counts within the bounds of
    :func:`compressor.runtime.measurement.check_protocol`; anything else raises :class:`ProfileOptionsError`.
    """

    batch: int = 1
    threads: int | None = None
    warmup_s: float = 0.5
    min_iterations: int = 50
    min_duration_s: float = 3.0
    cov_warning: float = COV_WARNING
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            check_protocol(batch=self.batch, threads=self.threads, warmup_s=self.warmup_s,
                           min_iterations=self.min_iterations, min_duration_s=self.min_duration_s)
        except ValueError as exc:
            raise ProfileOptionsError(f"profiling: {exc}") from None


def feed_bytes(specs: Sequence[TensorSpec], batch: int) -> int:
    """Bytes a random feed for ``specs`` at ``batch`` would take."""
    return sum(int(np.prod(s.concrete_shape(batch), dtype=np.float64)) * np.dtype(s.dtype).itemsize for s in specs)


def profile_runner(runner: Runner, options: ProfileOptions = ProfileOptions(), *, feed=None) -> dict:
    """Profile an active runner on ``feed`` (default: random inputs), bound once outside the timed loop.

    Returns ``{"latency_ms": {min, median, mean, p90, p95, p99, max, std}, "throughput_fps", "cov",
    "iterations", "protocol", "warnings"}``.

    >>> with load_target("openvino").load_runner(Artifact.load("m.xml")) as runner:
    ...     profile_runner(runner, ProfileOptions(batch=2))["latency_ms"]["median"]
    """
    if feed is None:
        fixed = {s.shape[0] for s in runner.input_specs if isinstance(s.shape[0], int)}
        if fixed and fixed != {options.batch}:
            raise InputSpecError(f"{runner.name} has a fixed batch of {fixed.pop()}; "
                                 f"it cannot be profiled at batch {options.batch}")
        size = feed_bytes(runner.input_specs, options.batch)
        if size > MAX_FEED_BYTES:
            raise InputSpecError(f"inputs of {runner.name} at batch {options.batch} would take {size / 2**30:.1f} GiB "
                                 f"(more than {MAX_FEED_BYTES / 2**30:.0f} GiB): profile a smaller batch or shape")
        feed = random_feed(runner.input_specs, batch=options.batch, rng=np.random.default_rng(options.seed))
    return measure_call(runner.bind(feed), batch=options.batch, threads=options.threads, runtime=runner.name,
                        runtime_version=getattr(runner, "runtime_version", ""), warmup_s=options.warmup_s,
                        min_iterations=options.min_iterations, min_duration_s=options.min_duration_s,
                        cov_warning=options.cov_warning)
