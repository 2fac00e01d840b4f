"""The report's verdict: which student engine to deploy, how much faster it is than the teacher, and what it
costs in accuracy, from the numbers the report holds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from compressor.distill.report.model import EngineReport, RunReport

TOLERANCE = 1e-9  # a change of exactly the budget is within it


@dataclass(frozen=True)
class Choice:
    """The engine to deploy and why: ``reason`` is one sentence; ``budget`` the allowed drop of the metric."""

    engine: EngineReport
    reason: str
    budget: float


def int8_budget(report: RunReport) -> float:
    """The allowed drop of the headline metric (the INT8 gate's budget; 0 when the run built no INT8 engine)."""
    budgets = [e.int8.budget for e in report.engines if e.int8 is not None]
    return max(budgets) if budgets else 0.0


def student_reference(report: RunReport) -> float:
    """The student's headline metric through its reference (FP32) engine."""
    return report.summary.student


def selection_of(report: RunReport) -> Any:
    """The run's selection record when the report carries one (``deploy.select``), else None."""
    return getattr(report, "selection", None)


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def choose_engine(report: RunReport) -> Choice | None:
    """The report's selection when it has one; otherwise the fastest student engine that matches PyTorch,
    passed its INT8 gate, and whose metric is within the INT8 budget of the FP32 student."""
    students = [e for e in report.engines if e.role == "student"]
    if not students:
        return None
    budget = int8_budget(report)
    selection = selection_of(report)
    if selection is not None:
        wanted = (_get(selection, "target"), _get(selection, "precision"), _get(selection, "quantizer"))
        for e in students:
            if (e.target, e.precision) == wanted[:2] and (wanted[2] is None or e.quantizer == wanted[2]):
                return Choice(e, _get(selection, "reason") or "chosen by the run's selection (deploy.select)", budget)
    reference = student_reference(report)
    metric = report.headline_metric
    fit = [e for e in students if e.parity.passed and (e.int8 is None or e.int8.passed)
           and _within(e.metric.get(metric), reference, budget)]
    if not fit:
        fastest = min(students, key=lambda e: e.latency.median)
        return Choice(fastest, f"no student engine is within the {metric} budget and matches PyTorch; "
                               "this is merely the fastest", budget)
    best = min(fit, key=lambda e: e.latency.median)
    return Choice(best, f"the fastest student engine whose {metric} is within {budget:g} of the FP32 student "
                        "and that matches PyTorch", budget)


def _within(value: Any, reference: float, budget: float) -> bool:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not math.isfinite(reference):
        return False
    return reference - value <= budget + TOLERANCE


def teacher_engine(report: RunReport) -> EngineReport | None:
    """The teacher's engine the summary's speed-up is measured on (its fastest when several)."""
    teachers = [e for e in report.engines if e.role == "teacher"]
    return min(teachers, key=lambda e: e.latency.median) if teachers else None


def student_fp32_engine(report: RunReport) -> EngineReport | None:
    """The student's FP32 engine whose metric is the summary's (the first FP32 one)."""
    return next((e for e in report.engines if e.role == "student" and e.precision == "fp32"), None)


def verdict_sentences(report: RunReport) -> list[str]:
    """The verdict as plain sentences (the HTML report and the terminal show them)."""
    choice = choose_engine(report)
    if choice is None:
        return ["This run has no student engine to deploy."]
    e, metric, s = choice.engine, report.headline_metric, report.summary
    value = e.metric.get(metric, float("nan"))
    sentences = [f"Deploy the student on {e.label}: {e.latency.median:.3g} ms median, {e.latency.p99:.3g} ms p99 "
                 f"on this host ({choice.reason})."]
    speed = []
    teacher = teacher_engine(report)
    if teacher is not None:
        speed.append(f"{teacher.latency.median / e.latency.median:.1f}x faster than the teacher on {teacher.label} "
                     f"({teacher.latency.median:.3g} ms)")
    fp32 = student_fp32_engine(report)
    if fp32 is not None and fp32 is not e:
        speed.append(f"{fp32.latency.median / e.latency.median:.1f}x faster than the student on {fp32.label} "
                     f"({fp32.latency.median:.3g} ms)")
    if speed:
        sentences.append("That is " + " and ".join(speed) + ".")
    cost = [f"{metric} {value:.4g}: {value - s.student:+.4g} against the FP32 student (budget {choice.budget:g})",
            f"{value - s.teacher:+.4g} against the teacher ({s.teacher:.4g})"]
    sentences.append("It costs " + ", ".join(cost) + f"; distillation gained {s.student_minus_baseline:+.4g} over "
                     f"the baseline trained without the teacher ({s.baseline:.4g}).")
    sentences.append("Every engine matches PyTorch." if s.all_parity_passed
                     else "Not every engine matches PyTorch: see the engines table.")
    return sentences
