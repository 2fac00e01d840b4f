"""Precision conversions of an ONNX model: FP16 (float32 inputs and outputs kept), INT8 Q/DQ through
ONNX Runtime's static quantizer, INT8 through NNCF for OpenVINO."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
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


def nncf_like_qdq_options(**changes) -> Int8Options:
    """Q/DQ settings that place quantizers as NNCF does for OpenVINO (asymmetric activations at conv and
    matmul inputs only, per-channel symmetric weights, min-max ranges): a Q/DQ model ONNX Runtime can run
    that errs where the NNCF model errs (the accuracy gate ranks layers on it)."""
    return Int8Options(method="minmax", activations="uint8",
                       extra={"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}, **changes)


def to_fp16(onnx_path: Path, out_path: Path) -> Path:
    """FP16 weights and compute with float32 graph inputs and outputs (casts at the boundary)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(onnx_path))
    with contextlib.redirect_stdout(io.StringIO()):
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    with atomic_path(out_path) as tmp:
        onnx.save(half, str(tmp))
    return out_path


def quantize_qdq(onnx_path: Path, out_path: Path, feeds: Sequence[Feed], options: Int8Options = Int8Options()) -> Path:
    """Static INT8 quantization into a Q/DQ ONNX (per-channel weights, calibrated activations).

    Activation ranges are cached by model and data hash, so re-quantizing with other excluded nodes
    (the accuracy gate's fallback) does not calibrate again. With ``options.ranges_from`` they are
    those of that model (calibrated on ``feeds``), applied to this one's tensors of the same names.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compressor.calibration.adapters import ort_reader
    from compressor.calibration.cache import cache_path

    if options.method not in METHODS:
        raise BuildError(f"unknown calibration method '{options.method}'; choose from: {', '.join(METHODS)}")
    if options.activations not in ("int8", "uint8"):
        raise BuildError(f"activations must be int8 or uint8, not '{options.activations}'")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.method]
    act = QuantType.QInt8 if options.activations == "int8" else QuantType.QUInt8

    def prepared(path: Path, folder: Path) -> Path:
        folder.mkdir()
        source = _rewritten(path, folder / "rewritten.onnx", options)
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(source), str(folder / "prepared.onnx"), skip_symbolic_shape=True)
        return folder / "prepared.onnx"

    def quantize(model: Path, target: Path, cache: Path | None) -> None:
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
            if not cache.is_file():
                quantize(reference, Path(tmp) / "reference_qdq.onnx", cache)
        with atomic_path(out_path) as target:
            quantize(model, target, cache)
    return out_path


def calibration_chunk(count: int, most: int = 64) -> int:
    """Feeds per ONNX Runtime calibration pass: the largest divisor of ``count`` up to ``most``. Its
    calibrators keep every collected activation until a pass ends (1024 SR patches: ~17 GB), so passes of
    ``most`` feeds bound the memory; histograms (entropy, percentile) merge across passes."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0) if count > 0 else 1


def _rewritten(onnx_path: Path, out_path: Path, options: Int8Options) -> Path:
    """``onnx_path`` after the exact rewrites that help INT8 (see :mod:`compressor.targets.graph_rewrites`), or itself."""
    from compressor.targets.graph_rewrites import split_concat_convs

    if not options.split_concat:
        return Path(onnx_path)
    model, split = split_concat_convs(onnx.load(str(onnx_path)), keep=options.exclude)
    if not split:
        return Path(onnx_path)
    log.info("split %d conv(s) over a Concat for per-part activation scales: %s", len(split), ", ".join(split))
    onnx.save(model, str(out_path))
    return out_path


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


def first_conv_weights(onnx_path: Path) -> list[str]:
    """Weight names of the first Conv reached from each graph input: the layers NNCF quantizes with half the
    8-bit weight range by default (its overflow fix for CPUs without VNNI), so QAT can mirror them."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found, seen = [], set()
    queue = [node for graph_input in graph.input for node in consumers.get(graph_input.name, [])]
    while queue:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Conv":
            found.append(node.input[1])
            continue
        queue.extend(c for out in node.output for c in consumers.get(out, []))
    return found


def nncf_half_range_weights(onnx_path: Path) -> list[str]:
    """Weight names NNCF quantizes with half the 8-bit range on this CPU (see :func:`nncf_overflow_fix`):
    the first convs of each input where the CPU lacks VNNI, none where it has it."""
    from nncf.quantization.advanced_parameters import OverflowFix

    return [] if nncf_overflow_fix() == OverflowFix.DISABLE else first_conv_weights(onnx_path)


@functools.cache
def cpu_has_vnni() -> bool:
    """True when this x86 CPU has VNNI (Linux ``/proc/cpuinfo`` flags); False when it cannot be told."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def nncf_overflow_fix():
    """NNCF's weight-range setting for this CPU: the full 8-bit range where VNNI computes u8 x s8 without
    saturating, else NNCF's default (half the range for the first conv of each input)."""
    from nncf.quantization.advanced_parameters import OverflowFix

    return OverflowFix.DISABLE if cpu_has_vnni() else OverflowFix.FIRST_LAYER


def quantize_nncf(onnx_path: Path, feeds: Sequence[Feed], options: Int8Options = Int8Options()):
    """OpenVINO model quantized by NNCF post-training quantization (its own INT8 path)."""
    import nncf
    import openvino as ov

    from compressor.calibration.adapters import nncf_dataset

    with tempfile.TemporaryDirectory(prefix="nncf-") as tmp:
        model = ov.convert_model(str(_rewritten(onnx_path, Path(tmp) / "rewritten.onnx", options)))
    # Quantize the same op kinds as the Q/DQ path (conv and matmul inputs); OpenVINO names an op after the
    # ONNX node, with suffixes such as "/WithoutBiases", so excluded nodes are matched as name patterns.
    keep_types = {"Convolution", "GroupConvolution", "MatMul"}
    other_types = sorted({op.get_type_name() for op in model.get_ops()} - keep_types)
    patterns = [f"{re.escape(name)}(/.*)?$" for name in options.exclude]  # anchored: conv2d is not conv2d_5
    ignored = nncf.IgnoredScope(types=other_types, patterns=patterns, validate=False)
    # MIXED: asymmetric activations (OpenVINO's CPU kernels take the zero points at no cost; published
    # SPAN-Tiny full INT8 30.93 dB vs 30.77 with PERFORMANCE's symmetric ones), symmetric weights.
    preset = nncf.QuantizationPreset.MIXED
    logging.getLogger("nncf").setLevel(logging.ERROR)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    try:
        advanced = AdvancedQuantizationParameters(**{"overflow_fix": nncf_overflow_fix(),
                                                     "disable_bias_correction": not options.bias_correction,
                                                     **options.extra})
    except TypeError as exc:
        raise BuildError(f"NNCF does not take these advanced parameters: {exc}") from None
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf_dataset(feeds), preset=preset, subset_size=len(feeds),
                                  ignored_scope=ignored, fast_bias_correction=True, advanced_parameters=advanced)
    if options.ranges_from:
        set_activation_ranges(quantized, activation_ranges_nncf(
            quantize_nncf(Path(options.ranges_from), feeds, dataclasses.replace(options, ranges_from=None))))
    return quantized


def activation_ranges_nncf(model) -> dict[str, tuple[float, float]]:
    """``{FakeQuantize name: (low, high)}`` of the per-tensor activation quantizers in an NNCF-quantized
    OpenVINO model (weights, quantized per channel from constants, are left out)."""
    ranges = {}
    for fq in model.get_ops():
        if fq.get_type_name() != "FakeQuantize" or fq.input_value(0).get_node().get_type_name() == "Constant":
            continue
        low, high = (fq.input_value(port).get_node().get_data() for port in (1, 2))
        if low.size == 1:
            ranges[fq.get_friendly_name()] = (float(low.item()), float(high.item()))
    return ranges


def set_activation_ranges(model, ranges: dict[str, tuple[float, float]]) -> int:
    """Overwrite the activation FakeQuantize ranges of an NNCF-quantized OpenVINO model by op name (as
    :func:`activation_ranges_nncf` reads them, e.g. from the FP32 model a quantization-aware fine-tuning
    started from). Returns how many were set; an error when none of the names is in a model that has
    activation quantizers (one with every layer kept in float has none: nothing to set)."""
    import openvino as ov

    if not ranges and not activation_ranges_nncf(model):
        return 0
    count = 0
    for fq in model.get_ops():
        if fq.get_type_name() != "FakeQuantize" or fq.get_friendly_name() not in ranges:
            continue
        low, high = ranges[fq.get_friendly_name()]
        for port, value in ((1, low), (2, high), (3, low), (4, high)):  # input and output low/high
            shape = fq.input_value(port).get_shape()
            fq.input(port).replace_source_output(ov.opset13.constant(np.full(shape, value, np.float32)).output(0))
        count += 1
    if not count:
        raise BuildError(f"none of the {len(ranges)} activation ranges names a quantizer of this model")
    model.validate_nodes_and_infer_types()
    return count
