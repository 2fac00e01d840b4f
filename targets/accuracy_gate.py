"""The INT8 accuracy gate: when quantization costs more metric than the budget allows, find the layers
that hurt most and keep them in float, re-quantizing until the budget holds.

Layers are ranked by how much quantization error they *add*: for each quantizable node, the relative
error of its output (fp32 model vs Q/DQ model on the calibration data) minus that of its inputs. The
gate then keeps the top 1, 2, 4, ... nodes in float (activation ranges are cached, so each try only
re-quantizes) and stops at the first set that meets the budget.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from targets.quantize import QUANTIZED_OPS

log = logging.getLogger(__name__)
Feed = dict[str, np.ndarray]


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


def _run_all(model_bytes: bytes, feeds: Sequence[Feed], names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    available = [n for n in names if n in {o.name for o in session.get_outputs()}]
    values: dict[str, list[np.ndarray]] = {n: [] for n in available}
    for feed in feeds:
        for name, value in zip(available, session.run(available, feed)):
            values[name].append(np.asarray(value, dtype=np.float64))
    return values


def _relative_error(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    num = sum(float(np.sum((r - g) ** 2)) for r, g in zip(ref, got))
    den = sum(float(np.sum(r ** 2)) for r in ref)
    return num / max(den, 1e-30)


def rank_sensitive_nodes(fp32_path: Path, qdq_path: Path, feeds: Sequence[Feed]) -> list[tuple[str, float]]:
    """Quantizable nodes sorted by the quantization error they add (largest first)."""
    fp32 = onnx.load(str(fp32_path))
    qdq = onnx.load(str(qdq_path))
    nodes = [n for n in fp32.graph.node if n.op_type in QUANTIZED_OPS and n.name]
    graph_inputs = {i.name for i in fp32.graph.input}
    tensors = sorted({t for n in nodes for t in (*n.input[:1], n.output[0]) if t and t not in graph_inputs})
    ref = _run_all(_with_outputs(fp32, tensors), feeds, tensors)
    got = _run_all(_with_outputs(qdq, tensors), feeds, tensors)
    error = {t: _relative_error(ref[t], got[t]) for t in tensors if t in ref and t in got}
    added = [(n.name, error.get(n.output[0], 0.0) - error.get(n.input[0], 0.0)) for n in nodes]
    return sorted(added, key=lambda item: item[1], reverse=True)


def gate_int8(build: Callable[[tuple[str, ...]], object], evaluate: Callable[[object], float], *, reference: float,
              budget: float, rank: Callable[[object], list[tuple[str, float]]]) -> tuple[object, GateResult]:
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
