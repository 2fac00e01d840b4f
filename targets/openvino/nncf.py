"""Everything NNCF: OpenVINO's own INT8 path (post-training quantization of the converted model), reading and
setting its activation ranges, and where it places quantizers and halves weight ranges, so the Q/DQ path,
the accuracy gate and quantization-aware training can mirror it. ``nncf`` is imported only when used."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from compressor.core.errors import BuildError
from compressor.core.feeds import Feed
from compressor.targets.openvino.cpu import cpu_has_vnni
from compressor.targets.quantize import QUANTIZED_OPS, Int8Options, rewritten_for_int8


def nncf_dataset(feeds: Sequence[Feed]):
    """An ``nncf.Dataset`` whose items are the feed dicts OpenVINO models accept directly."""
    import nncf

    return nncf.Dataset(list(feeds))


def nncf_like_qdq_options(**changes) -> Int8Options:
    """Q/DQ settings that place quantizers as NNCF does for OpenVINO (asymmetric activations at conv and
    matmul inputs only, per-channel symmetric weights, min-max ranges): a Q/DQ model ONNX Runtime can run
    that errs where the NNCF model errs (the accuracy gate ranks layers on it)."""
    return Int8Options(method="minmax", activations="uint8",
                       extra={"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}, **changes)


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


def nncf_overflow_fix():
    """NNCF's weight-range setting for this CPU: the full 8-bit range where VNNI computes u8 x s8 without
    saturating, else NNCF's default (half the range for the first conv of each input)."""
    from nncf.quantization.advanced_parameters import OverflowFix

    return OverflowFix.DISABLE if cpu_has_vnni() else OverflowFix.FIRST_LAYER


def quantize_nncf(onnx_path: Path, feeds: Sequence[Feed], options: Int8Options = Int8Options()):
    """OpenVINO model quantized by NNCF post-training quantization (its own INT8 path)."""
    import nncf
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="nncf-") as tmp:
        model = ov.convert_model(str(rewritten_for_int8(onnx_path, Path(tmp) / "rewritten.onnx", options)))
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
