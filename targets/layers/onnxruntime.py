"""Per-node time and executed precision in ONNX Runtime, from its profiler's JSON trace."""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Sequence

from compressor.core.feeds import Feed
from compressor.targets.layers.records import LayerTime, precision_name
from compressor.targets.layers.scopes import ModuleIndex

STATISTIC = {"median": statistics.median, "min": min}
_INT8_OPS = ("QLinear", "Integer", "DynamicQuantize", "QGemm", "QAttention", "QEmbed")


def kernel_precision(op_name: str, input_types: Sequence[dict[str, Any]] | None) -> str:
    """The precision an ONNX Runtime kernel ran in: int8 for QLinear*/…Integer/DynamicQuantize* kernels,
    else the element type of its first input (``float16`` -> fp16, ``float`` -> fp32)."""
    if any(marker in op_name for marker in _INT8_OPS):
        return "int8"
    for entry in input_types or ():
        for dtype in entry:
            return precision_name(dtype)
    return ""


def node_events(trace: Sequence[dict[str, Any]], warmup_runs: int) -> tuple[dict[str, list], list[float]]:
    """Kernel events of each timed run (the first ``warmup_runs`` runs dropped), grouped by node name, as lists
    of (microseconds, event args) per run; and the duration of each timed run in microseconds."""
    runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[warmup_runs:]
    per_node: dict[str, list] = {}
    for index, run in enumerate(runs):
        start, end = run["ts"], run["ts"] + run["dur"]
        for event in trace:
            if (event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time")
                    and start <= event["ts"] <= end):
                name = event["name"][: -len("_kernel_time")]
                slots = per_node.setdefault(name, [])
                while len(slots) <= index:
                    slots.append([0.0, event.get("args", {})])
                slots[index][0] += float(event["dur"])
    return per_node, [float(r["dur"]) for r in runs]


def layers_from_trace(trace: Sequence[dict[str, Any]], index: ModuleIndex, warmup_runs: int = 1,
                      statistic: str = "median") -> tuple[tuple[LayerTime, ...], int, float]:
    """Layers (their ``statistic``, median or min, over the timed runs), the number of timed runs and the
    median run time in ms."""
    per_node, durations = node_events(trace, warmup_runs)
    runs = len(durations)
    layers = []
    for name, slots in per_node.items():
        times = [t for t, _ in slots] + [0.0] * (runs - len(slots))
        args = slots[0][1]
        op = str(args.get("op_name", ""))
        node = index.resolve(name, op) or ""
        layers.append(LayerTime(layer=name, op_type=op, onnx_node=node,
                                module=index.module_of(node) if node else f"({op or 'runtime'})",
                                time_ms=STATISTIC[statistic](times) / 1000.0,
                                precision=kernel_precision(op, args.get("input_type_shape")),
                                kernel=f"{args.get('provider', '')}:{op}"))
    total = statistics.median(durations) / 1000.0 if durations else 0.0
    return tuple(layers), runs, total


def profile_onnxruntime(path: Path, options: dict[str, Any], feed: Feed, index: ModuleIndex, *, runs: int,
                        warmup_runs: int, threads: int | None,
                        statistic: str = "median") -> tuple[tuple[LayerTime, ...], int, float]:
    """Run ``path`` with ONNX Runtime's profiler on ``feed`` (``warmup_runs`` + ``runs`` inferences, the same
    providers the artifact's runner picks) and return its layers (see :func:`layers_from_trace`)."""
    import onnxruntime as ort

    from compressor.runtime.backends import select_providers

    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    if threads:
        session_options.intra_op_num_threads, session_options.inter_op_num_threads = int(threads), 1
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as scratch:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = str(Path(scratch) / "trace")
        providers = select_providers(ort.get_available_providers(), str(options.get("provider", "auto")))
        session = ort.InferenceSession(str(path), sess_options=session_options, providers=providers)
        for _ in range(warmup_runs + runs):
            session.run(None, dict(feed))
        trace = json.loads(Path(session.end_profiling()).read_text())
    return layers_from_trace(trace, index, warmup_runs, statistic)
