"""Per-layer profile of an artifact on its own runtime: :func:`profile_layers`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.core.errors import CompressError, InputSpecError
from compressor.core.feeds import Feed, random_feed
from compressor.targets.base import Artifact
from compressor.targets.layers.records import LayerProfile
from compressor.targets.layers.scopes import ModuleIndex

STATISTICS = ("median", "min")


class LayerProfileError(CompressError):
    """An artifact whose layers cannot be profiled here (a target without a per-layer profiler, bad counts)."""


@dataclass(frozen=True)
class LayerOptions:
    """How many inferences to profile (after ``warmup_runs`` untimed ones), on which batch and threads;
    ``statistic``: each layer's time over the runs, "median" or "min" (robust on a loaded machine, where
    preemption lands on random layers)."""

    runs: int = 10
    warmup_runs: int = 2
    batch: int = 1
    threads: int | None = None
    seed: int = 0
    statistic: str = "median"

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise LayerProfileError(f"layer profiling: statistic must be one of {', '.join(STATISTICS)}, "
                                    f"not {self.statistic!r}")
        if not (1 <= self.runs <= 10_000 and 0 <= self.warmup_runs <= 10_000 and 1 <= self.batch <= 4096):
            raise LayerProfileError(f"layer profiling: runs must be 1..10000, warm-up runs 0..10000 and batch "
                                    f"1..4096 (got {self.runs}, {self.warmup_runs}, {self.batch})")


def module_index(artifact: Artifact) -> ModuleIndex:
    """The ONNX -> module index of an artifact: the ONNX it was built from (where the exporter's scopes are),
    then its own file when it is an ONNX."""
    return ModuleIndex.from_paths([artifact.source, artifact.path])


def profile_layers(artifact: Artifact, options: LayerOptions = LayerOptions(), *,
                   feed: Feed | None = None) -> LayerProfile:
    """Time every layer of ``artifact`` on its runtime (ONNX Runtime's profiler, OpenVINO's performance
    counters), map each to its ONNX node and PyTorch module, and record the precision it executed in.

    >>> profile = profile_layers(Artifact.load("build/model_int8.xml"))
    >>> module_times(profile, depth=1)[0].module
    """
    target = "onnxruntime" if artifact.target == "onnx" else artifact.target
    if target not in ("onnxruntime", "openvino"):
        raise LayerProfileError(f"per-layer profiling of {artifact.target} artifacts runs where the engine runs "
                                f"(TensorRT: compressor.targets.layers.tensorrt on the GPU machine)")
    if feed is None:
        fixed = {s.shape[0] for s in artifact.inputs if isinstance(s.shape[0], int)}
        if fixed and fixed != {options.batch}:
            raise InputSpecError(f"{artifact.path.name} has a fixed batch of {fixed.pop()}; "
                                 f"it cannot be profiled at batch {options.batch}")
        feed = random_feed(artifact.inputs, batch=options.batch, rng=np.random.default_rng(options.seed))
    index = module_index(artifact)
    if target == "onnxruntime":
        from compressor.targets.layers.onnxruntime import profile_onnxruntime as run
    else:
        from compressor.targets.layers.openvino import profile_openvino as run
    try:
        layers, runs, total = run(Path(artifact.path), dict(artifact.options), feed, index, runs=options.runs,
                                  warmup_runs=options.warmup_runs, threads=options.threads,
                                  statistic=options.statistic)
    except CompressError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types for files they cannot run
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise LayerProfileError(f"cannot profile the layers of {artifact.path.name}: {lines[0]}") from None
    int8 = artifact.metadata.get("int8") or {}
    float_layers = str(artifact.options.get("float_layers", "fp32"))
    notes = () if any(index.sources.get(n) == "metadata" for n in index.sources) else (
        "the ONNX records no module scopes: modules are read from parameter and node names",)
    return LayerProfile(target=target, precision=artifact.precision, artifact=str(artifact.path),
                        layers=tuple(sorted(layers, key=lambda x: -x.time_ms)), runs=runs, total_ms=total,
                        float_layers=float_layers, kept_in_float=tuple(int8.get("exclude", ())),
                        quantizer=str(int8.get("quantizer", "qdq" if int8 else "")), notes=notes)
