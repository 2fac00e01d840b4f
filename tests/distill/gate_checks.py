"""What an end-to-end run's INT8 accuracy gate must have measured, checked against the report's own engines."""
from __future__ import annotations

import onnx
import pytest

QUANTIZABLE = {"Conv", "MatMul", "Gemm", "LSTM"}


def assert_int8_gate_measured(report: dict, budget: float) -> dict:
    """The student's INT8 engine went through the gate with ``budget`` and the gate's numbers are the report's.

    Fails when the INT8 engine is broken: a broken engine scores far below the FP32 student, so its drop
    exceeds the budget (which the reference can exceed, unlike a budget of 1.0 on a metric in [0, 1]); the gate
    then either fails, or passes only by keeping every quantizable layer in float (no INT8 left), and both are
    caught here. Also fails when the gate judged another engine than the one the report measured, or when
    its reference is not the FP32 student. Returns the gate record.
    """
    metric = report["headline_metric"]
    (int8,) = [a for a in report["artifacts"] if a["role"] == "student" and a["precision"] == "int8"]
    gate = int8["int8_gate"]
    assert gate["budget"] == budget
    assert gate["reference_metric"] > budget, "the budget must be one the metric's drop can exceed"
    fp32 = next(a for a in report["artifacts"] if a["role"] == "student" and a["target"] == int8["target"]
                and a["precision"] == "fp32")
    # the reference is the FP32 student (PyTorch); its ONNX Runtime twin in the report scores the same
    assert abs(gate["reference_metric"] - fp32["metric"][metric]) <= budget / 2
    # the try that chose the shipped layers is the engine the report evaluated again
    chosen = [t for t in gate["tries"] if t["kept_in_float"] == gate["kept_in_float"]]
    assert chosen and chosen[-1]["metric"] == pytest.approx(int8["metric"][metric], abs=1e-9)
    drop = gate["reference_metric"] - int8["metric"][metric]
    assert gate["passed"] and drop <= budget, f"INT8 drops {metric} by {drop:.4f} (budget {budget})"
    # and the engine is still INT8: quantized nodes, not everything kept in float
    graph = onnx.load(int8["path"]).graph
    ops = [node.op_type for node in graph.node]
    dynamic = gate.get("quantizer") == "dynamic"  # activations quantized per call, weights ahead of time
    assert {"DynamicQuantizeLinear"} <= set(ops) if dynamic else {"QuantizeLinear", "DequantizeLinear"} <= set(ops)
    fp32_graph = onnx.load(fp32["path"]).graph
    quantizable = sum(node.op_type in QUANTIZABLE for node in fp32_graph.node)
    assert len(gate["kept_in_float"]) < quantizable
    return gate
