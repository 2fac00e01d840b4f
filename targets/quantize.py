"""Precision conversions of an ONNX model shared by every target: FP16 (float32 inputs and outputs kept) and
INT8 Q/DQ through ONNX Runtime's static quantizer (NNCF's own INT8 path is :mod:`compressor.targets.openvino.nncf`)."""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import onnx

from compressor.core.errors import BuildError
from compressor.core.feeds import Feed
from compressor.core.files import atomic_path

log = logging.getLogger(__name__)
METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class Int8Options:
    """Post-training INT8 settings. ``exclude`` names nodes kept in float (the accuracy gate fills it).

    Activations default to symmetric int8 so TensorRT, OpenVINO and ONNX Runtime consume one Q/DQ model.
    """

    method: str = "minmax"
    per_channel: bool = True
    activations: str = "int8"
    exclude: tuple[str, ...] = ()
    samples: int = 32
    op_types: tuple[str, ...] = QUANTIZED_OPS
    use_cache: bool = True
    split_concat: bool = True  # give each part of a Concat feeding a Conv its own scale (exact rewrite)
    bias_correction: bool = True  # NNCF: correct biases for the quantization shift (off after QAT, which did)
    extra: dict = field(default_factory=dict)  # ONNX Runtime extra_options, or NNCF advanced parameters
    # Calibrate this ONNX instead and use its activation ranges (same graph, other weights): the FP32 model a
    # quantization-aware fine-tuning started from, whose ranges it trained the weights for (compressor.distill.qat)
    ranges_from: str | None = None


def to_fp16(onnx_path: Path, out_path: Path) -> Path:
    """FP16 weights and compute with float32 graph inputs and outputs (casts at the boundary)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(onnx_path))
    with contextlib.redirect_stdout(io.StringIO()):
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    with atomic_path(out_path) as tmp:
        onnx.save(half, str(tmp))
    return out_path


DYNAMIC_OPS = ("MatMul", "Gemm", "Attention", "Gather")  # where dynamic INT8 pays off on a CPU (no ConvInteger)


def quantize_dynamic_int8(onnx_path: Path, out_path: Path, exclude: Sequence[str] = ()) -> Path:
    """Dynamic INT8 (ONNX Runtime's recommendation for transformers on CPUs): weights of MatMul, Gemm and
    embedding Gather per-channel int8 ahead of time, activations quantized per call from their own range, so
    no calibration data is needed and no activation range is clipped. ``exclude`` names nodes kept in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    check_excluded_nodes(onnx_path, exclude)
    with atomic_path(out_path) as tmp, contextlib.redirect_stdout(io.StringIO()):
        quantize_dynamic(str(onnx_path), str(tmp), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(DYNAMIC_OPS), nodes_to_exclude=list(exclude),
                         extra_options={"MatMulConstBOnly": True})
    return out_path


def quantize_qdq(onnx_path: Path, out_path: Path, feeds: Sequence[Feed], options: Int8Options = Int8Options()) -> Path:
    """Static INT8 quantization into a Q/DQ ONNX (per-channel weights, calibrated activations).

    Activation ranges are cached by model and data hash, so re-quantizing with other excluded nodes
    (the accuracy gate's fallback) does not calibrate again. With ``options.ranges_from`` they are
    those of that model (calibrated on ``feeds``), applied to this one's tensors of the same names.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compressor.calibration.cache import cache_path, discard_cache, usable_cache
    from compressor.calibration.ort_reader import ort_reader

    if options.method not in METHODS:
        raise BuildError(f"unknown calibration method '{options.method}'; choose from: {', '.join(METHODS)}")
    if options.activations not in ("int8", "uint8"):
        raise BuildError(f"activations must be int8 or uint8, not '{options.activations}'")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.method]
    act = QuantType.QInt8 if options.activations == "int8" else QuantType.QUInt8

    def prepared(path: Path, folder: Path) -> Path:
        folder.mkdir()
        source = rewritten_for_int8(path, folder / "rewritten.onnx", options)
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(source), str(folder / "prepared.onnx"), skip_symbolic_shape=True)
        return folder / "prepared.onnx"

    def quantize(model: Path, target: Path, cache: Path | None) -> None:
        cached = cache is not None and usable_cache(cache, options.method)
        try:
            quantize_once(model, target, cache)
        except Exception as exc:  # a cache that parses but does not fit this model: calibrate again, once
            if not cached or options.ranges_from:  # (ranges_from: the cache holds another model's ranges)
                raise
            log.warning("ignoring the calibration cache %s (%s: %s); calibrating again", cache, type(exc).__name__,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            discard_cache(cache)
            quantize_once(model, target, cache)

    def quantize_once(model: Path, target: Path, cache: Path | None) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # calibrator chatter
            quantize_static(str(model), str(target), ort_reader(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=options.per_channel, activation_type=act, weight_type=QuantType.QInt8,
                            calibrate_method=method, op_types_to_quantize=list(options.op_types),
                            nodes_to_exclude=list(options.exclude), calibration_cache_path=cache,
                            extra_options={"ActivationSymmetric": act == QuantType.QInt8, "WeightSymmetric": True,
                                           "CalibStridedMinMax": calibration_chunk(len(feeds)), **options.extra})

    with tempfile.TemporaryDirectory(prefix="quant-") as tmp:
        model = prepared(Path(onnx_path), Path(tmp) / "model")
        cache = cache_path(model, feeds, options.method) if options.use_cache else None
        if options.ranges_from:  # ONNX Runtime reads the ranges from a calibration cache keyed by tensor name
            reference = prepared(Path(options.ranges_from), Path(tmp) / "reference")
            cache = cache_path(reference, feeds, options.method) if options.use_cache else Path(tmp) / "ranges.json"
            if not usable_cache(cache, options.method):
                quantize(reference, Path(tmp) / "reference_qdq.onnx", cache)
        with atomic_path(out_path) as target:
            quantize(model, target, cache)
    return out_path


def calibration_chunk(count: int, most: int = 64) -> int:
    """Feeds per ONNX Runtime calibration pass: the largest divisor of ``count`` up to ``most``. Its
    calibrators keep every collected activation until a pass ends (1024 SR patches: ~17 GB), so passes of
    ``most`` feeds bound the memory; histograms (entropy, percentile) merge across passes."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0) if count > 0 else 1


def rewritten_for_int8(onnx_path: Path, out_path: Path, options: Int8Options) -> Path:
    """``onnx_path`` after the exact rewrites that help INT8 (see :mod:`compressor.targets.graph_rewrites`), or
    itself; the Q/DQ and NNCF paths both quantize it. An old-style graph is normalized first (current opset,
    initializers out of the inputs; :mod:`compressor.targets.onnx_normalize`), into ``out_path``'s folder.
    Nodes named in ``options.exclude`` must exist (one line naming the first that does not)."""
    from compressor.targets.graph_rewrites import split_concat_convs
    from compressor.targets.onnx_normalize import normalized_onnx

    onnx_path, _ = normalized_onnx(onnx_path, Path(out_path).parent)
    check_excluded_nodes(onnx_path, options.exclude)
    if not options.split_concat:
        return Path(onnx_path)
    model, split = split_concat_convs(onnx.load(str(onnx_path)), keep=options.exclude)
    if not split:
        return Path(onnx_path)
    log.info("split %d conv(s) over a Concat for per-part activation scales: %s", len(split), ", ".join(split))
    onnx.save(model, str(out_path))
    return out_path


def check_excluded_nodes(onnx_path: Path, exclude: Sequence[str]) -> None:
    """Raise BuildError naming the first of ``exclude`` (nodes to keep in float) that is not a node of the
    graph, with the closest name when there is one."""
    from compressor.core.errors import did_you_mean

    if not exclude:
        return
    names = [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.name]
    missing = [name for name in exclude if name not in set(names)]
    if missing:
        quantizable = [n for n in quantizable_nodes(Path(onnx_path))] or names
        raise BuildError(f"cannot keep node '{missing[0]}' in float: the model has no node of that name"
                         f"{did_you_mean(missing[0], names)}; quantizable nodes: {_listed(quantizable)}")


def _listed(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "") if names else "none"


def qdq_layer_scales(qdq_path: Path) -> dict[str, dict[str, float]]:
    """Activation scales the Q/DQ model uses around each quantized layer, keyed by the layer's weight name
    (``conv_1.weight``; a split conv's parts as ``conv_cat.weight_part0`` ...): ``{"input": s, "output": s}``
    (``output`` only where the layer's output is quantized). Lets training mirror the exporter exactly."""
    from onnx import numpy_helper

    graph = onnx.load(str(qdq_path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    scales = {}
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2:
            continue
        source, weight = producer.get(node.input[0]), producer.get(node.input[1])
        if weight is None or weight.op_type != "DequantizeLinear":
            continue
        entry = {}
        if source is not None and source.op_type == "DequantizeLinear" and source.input[1] in values:
            entry["input"] = float(values[source.input[1]])
        quantized = [c for c in consumers.get(node.output[0], []) if c.op_type == "QuantizeLinear"]
        if quantized and quantized[0].input[1] in values:
            entry["output"] = float(values[quantized[0].input[1]])
        scales[weight.input[0].removesuffix("_quantized")] = entry
    return scales


def quantizable_nodes(onnx_path: Path, op_types: Sequence[str] = QUANTIZED_OPS) -> list[str]:
    """Names of the nodes the quantizer would turn into INT8 (candidates for keeping in float)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in op_types and n.name]
