"""Latency profiling of any Runner: time-based warm-up, then at least N iterations AND T seconds."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressor.core.errors import InputSpecError
from compressor.core.feeds import random_feed
from compressor.runtime.measurement import COV_WARNING, measure_call
from compressor.targets.base import Runner


@dataclass(frozen=True)
class ProfileOptions:
    """The measurement protocol (trtexec's shape: warm-up by time, then iterations AND duration)."""

    batch: int = 1
    threads: int | None = None
    warmup_s: float = 0.5
    min_iterations: int = 50
    min_duration_s: float = 3.0
    cov_warning: float = COV_WARNING
    seed: int = 0


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
        feed = random_feed(runner.input_specs, batch=options.batch, rng=np.random.default_rng(options.seed))
    return measure_call(runner.bind(feed), batch=options.batch, threads=options.threads, runtime=runner.name,
                        runtime_version=getattr(runner, "runtime_version", ""), warmup_s=options.warmup_s,
                        min_iterations=options.min_iterations, min_duration_s=options.min_duration_s,
                        cov_warning=options.cov_warning)
