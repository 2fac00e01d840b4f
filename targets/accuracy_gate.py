"""The INT8 accuracy gate: when quantization costs more metric than the budget allows, find the layers
that hurt most and keep them in float, re-quantizing until the budget holds.

Two rankings, matched to what keeping a node in float means to the quantizer:

- ONNX Runtime Q/DQ (:func:`rank_sensitive_nodes`): the quantizer also quantizes each layer's output, so a
  node excluded alone still reads an INT8 input; nodes are ranked by the error they *add*: the relative
  error of the node's output (fp32 model vs Q/DQ model on the calibration data) minus that of its input.
- NNCF for OpenVINO (:func:`rank_by_float_gain`): quantizers sit at layer inputs only, so an excluded node
  reads float. Leave-one-out on a Q/DQ model with NNCF's placement: how much of the output error each node
  alone gives back in float, per share of the multiply-accumulates it does. Keeping a node in float costs
  latency in proportion to its work, so this is the greedy answer to "the most accuracy back for the least
  time" (an image net's first conv reads 3 channels, does ~1% of the work, and its 8-bit input grid rarely
  matches the image's: it often ranks first), measured at the outputs, where the metric is.

The gate keeps the top 1, 2, 4, ... nodes in float (activation ranges are cached, so each try only
re-quantizes), bisects to the fewest that meet the budget, and names them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from compressor.core.feeds import Feed
from compressor.targets.quantize import QUANTIZED_OPS

log = logging.getLogger(__name__)

Ranking = list[tuple[str, float]]
"""Quantizable node names with a score, largest first: the order in which the gate keeps nodes in float."""


@dataclass
class GateResult:
    """What the gate did: the metric at each try and the nodes finally kept in float."""

    reference: float
    budget: float
    tries: list[dict] = field(default_factory=list)
    kept_in_float: tuple[str, ...] = ()
    passed: bool = False

    def to_dict(self) -> dict:
        return {"reference_metric": self.reference, "budget": self.budget, "passed": self.passed,
                "kept_in_float": list(self.kept_in_float), "tries": self.tries}


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    produced = {out for node in model.graph.node for out in node.output}  # a rewrite may have removed some
    for name in names:
        if name not in present and name in produced:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return model.SerializeToString()


def _relative_error(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    num = sum(float(np.sum((r - g) ** 2)) for r, g in zip(ref, got))
    den = sum(float(np.sum(r ** 2)) for r in ref)
    return num / max(den, 1e-30)


def node_macs(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto], output: np.ndarray,
              first_input: np.ndarray | None) -> int:
    """Multiply-accumulates of a Conv/MatMul/Gemm node for one output tensor: output elements times the
    reduction length (a conv's in-channels per group x kernel; a product's inner dimension)."""
    weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type == "Conv" and weight is not None:
        reduction = int(np.prod(weight.dims[1:]))
    elif node.op_type == "Gemm" and first_input is not None:
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        reduction = first_input.shape[-2] if trans_a else first_input.shape[-1]
    elif node.op_type == "MatMul" and weight is not None and len(weight.dims) > 1:
        reduction = int(weight.dims[-2])
    else:
        reduction = first_input.shape[-1] if first_input is not None and first_input.ndim else 1
    return int(output.size) * int(reduction)


def _with_float_node(qdq: onnx.ModelProto, float_weights: dict[str, onnx.TensorProto], name: str) -> bytes:
    """``qdq`` with node ``name`` (or its ``name_partN`` pieces after a Concat split) reading float: each
    input that comes from a Q -> DQ pair reads the tensor before the Q, each dequantized initializer
    (weight, bias) the float initializer it was made from."""
    model = onnx.ModelProto.FromString(qdq.SerializeToString())
    producer = {out: node for node in model.graph.node for out in node.output}
    present = {init.name for init in model.graph.initializer}
    defined = present | set(producer)
    for node in model.graph.node:
        if node.name != name and not node.name.startswith(f"{name}_part"):
            continue
        for index, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[index] = q.input[0]
                continue
            source = dq.input[0].removesuffix("_quantized")
            if source in float_weights:
                float_name = source if source not in defined - present else f"{source}_float"
                if float_name not in present:
                    tensor = onnx.TensorProto()
                    tensor.CopyFrom(float_weights[source])
                    tensor.name = float_name
                    model.graph.initializer.append(tensor)
                    present.add(float_name)
                node.input[index] = float_name
    return model.SerializeToString()


def _output_error(model_bytes: bytes, feeds: Sequence[Feed], reference: list[list[np.ndarray]]) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    got = [[np.asarray(v, np.float64) for v in session.run(None, feed)] for feed in feeds]
    outputs = len(reference[0])
    return sum(_relative_error([r[k] for r in reference], [g[k] for g in got]) for k in range(outputs))


def _tensor_errors(reference: bytes, quantized: bytes, feeds: Sequence[Feed], names: Sequence[str]) -> dict[str, float]:
    """Relative squared error of each named tensor, ``quantized`` vs ``reference`` model, summed over
    ``feeds`` one at a time (memory stays at one feed's activations)."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (reference, quantized)]
    available = [n for n in names if all(n in {o.name for o in s.get_outputs()} for s in sessions)]
    num, den = dict.fromkeys(available, 0.0), dict.fromkeys(available, 0.0)
    for feed in feeds:
        ref, got = (s.run(available, feed) for s in sessions)
        for name, r, g in zip(available, ref, got):
            r, g = np.asarray(r, np.float64), np.asarray(g, np.float64)
            num[name] += float(np.sum((r - g) ** 2))
            den[name] += float(np.sum(r ** 2))
    return {name: num[name] / max(den[name], 1e-30) for name in available}


def rank_sensitive_nodes(fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed],
                         max_feeds: int = 64) -> Ranking:
    """Quantizable nodes sorted by the quantization error they add (largest first), measured on (up to
    ``max_feeds``) ``feeds``."""
    fp32 = onnx.load(str(fp32_path))
    qdq = onnx.load(str(qdq_path))
    nodes = [n for n in fp32.graph.node if n.op_type in QUANTIZED_OPS and n.name]
    graph_inputs = {i.name for i in fp32.graph.input}
    tensors = sorted({t for n in nodes for t in (*n.input[:1], n.output[0]) if t and t not in graph_inputs})
    error = _tensor_errors(_with_outputs(fp32, tensors), _with_outputs(qdq, tensors), list(feeds)[:max_feeds],
                           tensors)
    added = [(n.name, error.get(n.output[0], 0.0) - error.get(n.input[0], 0.0)) for n in nodes]
    return sorted(added, key=lambda item: item[1], reverse=True)


def rank_by_float_gain(fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed],
                       max_feeds: int = 32) -> Ranking:
    """Quantizable nodes sorted by the output error each gives back in float per share of the work (largest
    first; for quantizers placed at layer inputs only, see the module notes), as ``(name, (error of the
    Q/DQ model - error with the node in float) / its share of the MACs)``; errors are relative squared
    errors of the outputs against FP32 on (up to ``max_feeds``) ``feeds``."""
    import onnxruntime as ort

    from compressor.targets.graph_rewrites import split_concat_convs

    fp32 = onnx.load(str(fp32_path))
    qdq = onnx.load(str(qdq_path))
    feeds = list(feeds)[:max_feeds]
    nodes = [n for n in fp32.graph.node if n.op_type in QUANTIZED_OPS and n.name]
    tensors = sorted({t for n in nodes for t in (*n.input[:1], n.output[0]) if t})
    session = ort.InferenceSession(_with_outputs(fp32, tensors), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    reference, values = [], {}  # the outputs of every feed; every tensor of the first (for the MACs)
    for feed in feeds:
        run = dict(zip(names, session.run(names, feed)))
        values = values or run
        reference.append([np.asarray(run[o.name], np.float64) for o in fp32.graph.output])
    initializers = {t.name: t for t in fp32.graph.initializer}
    split, _ = split_concat_convs(fp32)  # the quantizer may have split convs: their part weights too
    float_weights = initializers | {t.name: t for t in split.graph.initializer}
    macs = {n.name: node_macs(n, initializers, values[n.output[0]], values.get(n.input[0], feeds[0].get(n.input[0])))
            if n.output[0] in values else 1 for n in nodes}
    total = max(sum(macs.values()), 1)
    base = _output_error(qdq.SerializeToString(), feeds, reference)
    gains = {n.name: base - _output_error(_with_float_node(qdq, float_weights, n.name), feeds, reference)
             for n in nodes}
    ranked = [(name, gain / max(macs[name] / total, 1e-9)) for name, gain in gains.items()]
    return sorted(ranked, key=lambda item: item[1], reverse=True)


def gate_int8(build: Callable[[tuple[str, ...]], object], evaluate: Callable[[object], float], *, reference: float,
              budget: float, rank: Callable[[object], Ranking]) -> tuple[object, GateResult]:
    """Build INT8 with nothing excluded; while ``reference - metric > budget``, keep more top-ranked nodes
    in float (1, 2, 4, ...), then bisect down to the fewest that still meet the budget. Returns the
    artifact for the chosen set and what happened (every try)."""
    result = GateResult(reference=reference, budget=budget)
    artifact = build(())
    metric = evaluate(artifact)
    result.tries.append({"kept_in_float": [], "metric": metric})
    if reference - metric <= budget:
        result.passed = True
        return artifact, result
    ranking = [name for name, _ in rank(artifact)]

    def attempt(count: int):
        keep = tuple(ranking[:count])
        built = build(keep)
        value = evaluate(built)
        result.tries.append({"kept_in_float": list(keep), "metric": value})
        log.info("int8 gate: %d node(s) in float -> metric %.4f (reference %.4f)", count, value, reference)
        return built, reference - value <= budget

    low = 0  # the most nodes in float known to miss the budget
    for count in _growing(len(ranking)):
        artifact, passed = attempt(count)
        result.kept_in_float = tuple(ranking[:count])
        if passed:
            result.passed = True
            break
        low = count
    if not result.passed:
        return artifact, result
    high, last = len(result.kept_in_float), len(result.kept_in_float)
    while high - low > 1:  # doubling overshoots: bisect for the fewest nodes in float that still pass
        middle = (low + high) // 2
        artifact, passed = attempt(middle)
        last = middle
        if passed:
            high = middle
        else:
            low = middle
    if last != high:  # the file on disk is the last try: build the passing one again
        artifact, _ = attempt(high)
        result.tries.pop()
    result.kept_in_float = tuple(ranking[:high])
    return artifact, result


def _growing(total: int) -> list[int]:
    """1, 2, 4, ... up to ``total`` (always ending with ``total``)."""
    sizes, count = [], 1
    while count < total:
        sizes.append(count)
        count *= 2
    return sizes + [total] if total else sizes
