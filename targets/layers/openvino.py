"""Per-layer time and executed precision in OpenVINO: performance counters of a compiled model, and its runtime
graph (``runtimePrecision``, ``originalLayersNames``) to map fused layers back to ONNX nodes."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from compressor.core.feeds import Feed
from compressor.targets.layers.onnxruntime import STATISTIC
from compressor.targets.layers.records import LayerTime, precision_name
from compressor.targets.layers.scopes import ModuleIndex, is_compute


def runtime_layers(compiled) -> dict[str, dict[str, str]]:
    """Executed layer name -> ``{"type", "precision", "original"}`` from the compiled model's runtime graph."""
    layers = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        read = {key: info[key].astype(str) for key in ("layerType", "runtimePrecision", "originalLayersNames")
                if key in info}
        layers[op.get_friendly_name()] = {"type": read.get("layerType", ""),
                                          "precision": read.get("runtimePrecision", ""),
                                          "original": read.get("originalLayersNames", "")}
    return layers


def resolve_layer(name: str, layer_type: str, original: str, index: ModuleIndex) -> str:
    """The ONNX node an OpenVINO layer ran: its own name, else the first of the original layers fused into it
    that names a node (a compute node first, for compute layers)."""
    names = [name] + [n for n in original.split(",") if n]
    resolved = [node for node in (index.resolve(n, layer_type) for n in names) if node]
    if is_compute(layer_type):
        resolved.sort(key=lambda node: not is_compute(index.op_types.get(node, "")))
    return resolved[0] if resolved else ""


def layers_from_counters(counters: Sequence[Sequence[Any]], runtime: Mapping[str, Mapping[str, str]],
                         index: ModuleIndex, statistic: str = "median") -> tuple[LayerTime, ...]:
    """Layers from the performance counters of each timed run (each layer's ``statistic``, median or min);
    ``runtime`` as returned by :func:`runtime_layers`."""
    times: dict[str, list[float]] = {}
    first: dict[str, Any] = {}
    for run in counters:
        for counter in run:
            if str(counter.status).endswith("NOT_RUN") or counter.node_type in ("Parameter", "Result", "Input",
                                                                                  "Output", "Const"):
                continue
            times.setdefault(counter.node_name, []).append(counter.real_time.total_seconds() * 1000.0)
            first.setdefault(counter.node_name, counter)
    layers = []
    for name, values in times.items():
        counter, info = first[name], runtime.get(name, {})
        layer_type = info.get("type") or counter.node_type
        node = resolve_layer(name, layer_type, info.get("original", ""), index)
        precision = precision_name(info.get("precision", "")) or precision_name(counter.exec_type)
        layers.append(LayerTime(layer=name, op_type=layer_type, onnx_node=node,
                                module=index.module_of(node) if node else f"({layer_type})",
                                time_ms=STATISTIC[statistic](values + [0.0] * (len(counters) - len(values))),
                                precision=precision, kernel=counter.exec_type))
    return tuple(layers)


def profile_openvino(path: Path, options: Mapping[str, Any], feed: Feed, index: ModuleIndex, *, runs: int,
                     warmup_runs: int, threads: int | None,
                     statistic: str = "median") -> tuple[tuple[LayerTime, ...], int, float]:
    """Compile ``path`` as its runner does (inference precision, latency hint, static shapes) with performance
    counters on, run ``feed`` and return its layers, the timed runs and the median inference time in ms."""
    import time

    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if options.get("static_shapes"):
        model.reshape({name: list(np.shape(array)) for name, array in feed.items()})
    config = {"INFERENCE_PRECISION_HINT": str(options.get("inference_precision", "f32")),
              "PERFORMANCE_HINT": str(options.get("performance_hint", "LATENCY")), "PERF_COUNT": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    compiled = core.compile_model(model, str(options.get("device", "CPU")), config)
    request = compiled.create_infer_request()
    for _ in range(warmup_runs):
        request.infer(dict(feed))
    counters, durations = [], []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer(dict(feed))
        durations.append((time.perf_counter() - start) * 1000.0)
        counters.append(request.get_profiling_info())
    layers = layers_from_counters(counters, runtime_layers(compiled), index, statistic)
    return layers, runs, statistics.median(durations)
