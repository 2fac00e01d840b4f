"""TensorRT layers: the engine inspector's layer information (``IEngineInspector``, JSON format, engines built
with detailed profiling verbosity) for each layer's type, precision and the ONNX nodes fused into it, and a
per-layer time profile (``trtexec --exportProfile`` JSON, or :class:`tensorrt.IProfiler` times in that shape)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from compressor.core.errors import ArtifactError
from compressor.targets.layers.records import LayerTime, precision_name
from compressor.targets.layers.scopes import ModuleIndex, is_compute

_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def fused_onnx_nodes(layer: Mapping[str, Any]) -> list[str]:
    """ONNX node names a TensorRT layer was built from: its ``Metadata`` (``[ONNX Layer: name]`` entries), else
    the parts of its name (TensorRT joins fused layers' names with ``" + "``)."""
    metadata = str(layer.get("Metadata", ""))
    found = _ONNX_LAYER.findall(metadata)
    if found:
        return [name.strip() for name in found]
    name = str(layer.get("Name", ""))
    return [part.strip() for part in re.split(r" \+ |\|\|", name) if part.strip()]


def layer_precision(layer: Mapping[str, Any]) -> str:
    """The precision a layer computed in: the data type of its first non-constant input (``"Int8 NC/32HW32"``,
    ``"Row major linear FP16 format"``), else of its first output."""
    for key in ("Inputs", "Outputs"):
        for tensor in layer.get(key) or ():
            if not isinstance(tensor, Mapping):
                continue
            text = str(tensor.get("Format/Datatype", tensor.get("Datatype", "")))
            found = precision_name(text.replace("Int8", "int8").replace("Float", "fp32").replace("Half", "fp16"))
            if found:
                return found
    return ""


def inspector_layers(info: Mapping[str, Any] | str) -> list[Mapping[str, Any]]:
    """The layer entries of an inspector JSON (``{"Layers": [...]}``); layers given as plain names (an engine
    built without detailed verbosity) become ``{"Name": name}``."""
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers") if isinstance(data, Mapping) else None
    if not isinstance(layers, list):
        raise ArtifactError("TensorRT layer information has no 'Layers' list")
    return [layer if isinstance(layer, Mapping) else {"Name": str(layer)} for layer in layers]


def profile_times(profile: Sequence[Mapping[str, Any]] | None) -> dict[str, float]:
    """Layer name -> median (else average) milliseconds per inference from a ``trtexec --exportProfile`` JSON
    (a leading ``{"count": N}`` entry, then one entry per layer)."""
    times = {}
    for entry in profile or ():
        if isinstance(entry, Mapping) and "name" in entry:
            value = entry.get("medianMs", entry.get("averageMs"))
            if value is None and entry.get("timeMs") is not None:
                value = float(entry["timeMs"]) / max(float(profile[0].get("count", 1) or 1), 1.0)
            times[str(entry["name"])] = float(value or 0.0)
    return times


def layers_from_inspector(info: Mapping[str, Any] | str, index: ModuleIndex,
                          profile: Sequence[Mapping[str, Any]] | None = None) -> tuple[LayerTime, ...]:
    """Layers of a TensorRT engine from its inspector JSON, timed from ``profile`` when given (else 0 ms)."""
    times = profile_times(profile)
    layers = []
    for entry in inspector_layers(info):
        name, layer_type = str(entry.get("Name", "")), str(entry.get("LayerType", ""))
        candidates = [node for node in (index.resolve(n, layer_type) for n in fused_onnx_nodes(entry)) if node]
        if is_compute(layer_type):
            candidates.sort(key=lambda node: not is_compute(index.op_types.get(node, "")))
        node = candidates[0] if candidates else ""
        layers.append(LayerTime(layer=name, op_type=layer_type, onnx_node=node,
                                module=index.module_of(node) if node else f"({layer_type or 'layer'})",
                                time_ms=times.get(name, 0.0), precision=layer_precision(entry),
                                kernel=str(entry.get("TacticName", entry.get("Tactic", "")))))
    return tuple(layers)


def engine_information(engine_path: Path) -> dict[str, Any]:
    """The inspector's JSON for a serialized engine (needs TensorRT and a GPU; the engine must have been built
    with ``config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED`` for per-layer precisions)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise ArtifactError(f"TensorRT cannot load the engine {engine_path}")
    inspector = engine.create_engine_inspector()
    return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
