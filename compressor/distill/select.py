"""Which student engine a run bundles (``deploy.select``), and which engines a run builds on this machine.

``deploy.select: fastest`` (the default) bundles the fastest student engine (median latency) whose headline
metric is within the accuracy budget of the FP32 student (``deploy.select_budget``, default
``deploy.int8_budget``) and that matches PyTorch; when no engine but the FP32 reference qualifies, the
reference is bundled and the record says why. ``deploy.select: {target, precision, quantizer}`` bundles the
named engine (the fastest of those that match), saying so when it is outside the budget.

A target entry marked ``when: bf16`` is built only where the CPU reports bf16 (OpenVINO's optimisation
capabilities, or ``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo`` where OpenVINO is absent): the search
then holds every precision the machine runs, and nothing is asked of a CPU that lacks it.

Every choice is a typed :class:`SelectionRecord`: the candidates with their metric drop against FP32, their
latency and size, the rule and the reason, for ``report.json`` (``to_dict``), ``report.md``
(:func:`render_selection`) and the bundle (``selection.json``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from compressor.core.errors import CompressError, did_you_mean
from compressor.core.machine import cpu_flags

if TYPE_CHECKING:
    from compressor.distill.recipe import DeployConfig, TargetChoice
    from compressor.distill.report.model import EngineReport

TOLERANCE = 1e-9  # a drop of exactly the budget is within it
RULES = ("fastest",)
NAMED_KEYS = ("target", "precision", "quantizer")

# ``when:`` conditions a target entry may carry -> why an entry is skipped on a machine without it
CAPABILITIES: dict[str, str] = {"bf16": "the CPU reports no bf16 (neither avx512_bf16 nor AMX)"}
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class SelectionError(CompressError):
    """A ``deploy.select`` that names no engine the run builds, or a malformed selection record."""


# ---------------------------------------------------------------- what the machine offers
def cpu_reports_bf16() -> bool:
    """True when the CPU reports bf16: OpenVINO's ``OPTIMIZATION_CAPABILITIES`` holds ``BF16`` (the runtime
    that builds bf16 engines), or, without OpenVINO, ``/proc/cpuinfo`` lists avx512_bf16 or amx_bf16."""
    try:
        from compressor.targets.openvino.cpu import cpu_supports_bf16
    except ImportError:
        return bool(set(BF16_CPU_FLAGS) & cpu_flags())
    try:
        return cpu_supports_bf16()
    except (ImportError, RuntimeError):
        return bool(set(BF16_CPU_FLAGS) & cpu_flags())


def machine_capabilities() -> frozenset[str]:
    """The ``when:`` conditions this machine meets (see :data:`CAPABILITIES`), from what the CPU reports."""
    return frozenset({"bf16"} if cpu_reports_bf16() else ())


@dataclass(frozen=True)
class TargetPlan:
    """The student's target entries a run builds here, and one line for each it skips (``when:`` unmet)."""

    built: tuple[TargetChoice, ...]
    skipped: tuple[str, ...] = ()


def plan_targets(deploy: DeployConfig, capabilities: frozenset[str] | None = None) -> TargetPlan:
    """``deploy.targets`` without the entries whose ``when:`` this machine does not meet (``capabilities``:
    :func:`machine_capabilities` unless given)."""
    if any(choice.when for choice in deploy.targets) and capabilities is None:
        capabilities = machine_capabilities()
    built, skipped = [], []
    for choice in deploy.targets:
        if choice.when is None or choice.when in (capabilities or ()):
            built.append(choice)
        else:
            why = CAPABILITIES.get(choice.when, "this machine does not meet it")
            skipped.append(f"{engine_label(choice.target, choice.precision, _quantizer_of(choice))} "
                           f"(when: {choice.when}): {why}")
    return TargetPlan(tuple(built), tuple(skipped))


def _quantizer_of(choice: TargetChoice) -> str | None:
    return choice.quantizer if choice.precision == "int8" else None


# ---------------------------------------------------------------- the rule
@dataclass(frozen=True)
class NamedEngine:
    """An engine named in ``deploy.select``: ``quantizer`` None matches any (it tells INT8 engines apart)."""

    target: str
    precision: str = "fp32"
    quantizer: str | None = None

    def matches(self, target: str, precision: str, quantizer: str | None) -> bool:
        """Whether an engine of ``target``/``precision``/``quantizer`` is this one."""
        return (self.target, self.precision) == (target, precision) and self.quantizer in (None, quantizer)

    @property
    def label(self) -> str:
        return engine_label(self.target, self.precision, self.quantizer)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "precision": self.precision, "quantizer": self.quantizer}


@dataclass(frozen=True)
class SelectRule:
    """``deploy.select``: ``fastest`` within the accuracy budget, or the ``named`` engine."""

    rule: str = "fastest"
    named: NamedEngine | None = None

    @classmethod
    def parse(cls, value: Any, where: str = "deploy.select") -> SelectRule:
        """``"fastest"`` or ``{target, precision, quantizer}``; a one-line SelectionError (a CompressError)
        for anything else."""
        from compressor.distill.config import ConfigError

        if isinstance(value, SelectRule):
            return value
        if isinstance(value, str):
            if value not in RULES:
                raise ConfigError(f"{where}: '{value}' is not a rule{did_you_mean(value, RULES)}; use fastest or "
                                  f"name an engine: {{target: openvino, precision: int8, quantizer: nncf}}")
            return cls(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected fastest or a mapping {{target, precision, quantizer}}, got "
                              f"{type(value).__name__}")
        for key in value:
            if key not in NAMED_KEYS:
                raise ConfigError(f"{where}.{key}: unknown key{did_you_mean(str(key), NAMED_KEYS)}; known keys: "
                                  f"{', '.join(NAMED_KEYS)}")
        if "target" not in value:
            raise ConfigError(f"{where}.target: missing required key (the engine to bundle)")
        for key in NAMED_KEYS:
            if key in value and not (isinstance(value[key], str) or key == "quantizer" and value[key] is None):
                raise ConfigError(f"{where}.{key}: expected text, got {type(value[key]).__name__}")
        return cls("named", NamedEngine(value["target"], value.get("precision", "fp32"), value.get("quantizer")))

    def describe(self) -> str:
        return f"named: {self.named.label}" if self.named else self.rule

    def to_dict(self) -> dict[str, Any] | str:
        return self.named.to_dict() if self.named else self.rule


# ---------------------------------------------------------------- candidates and the choice
def engine_label(target: str, precision: str, quantizer: str | None = None) -> str:
    """An engine's name: ``openvino int8 (nncf)``."""
    return f"{target} {precision}" + (f" ({quantizer})" if quantizer else "")


@dataclass(frozen=True)
class Candidate:
    """One student engine the selection weighed. ``metric_drop``: the FP32 student's headline metric minus
    this engine's (higher is better, so a positive drop is a loss); ``engine``: its file name in the run's
    ``engines/``; ``reference``: the FP32 reference engine the drop is measured against."""

    target: str
    precision: str
    quantizer: str | None
    engine: str
    metric_value: float
    metric_drop: float
    latency_median_ms: float
    latency_p99_ms: float
    size_bytes: int
    parity_passed: bool
    reference: bool = False

    @property
    def label(self) -> str:
        return engine_label(self.target, self.precision, self.quantizer)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "precision": self.precision, "quantizer": self.quantizer,
                "engine": self.engine, "metric_value": self.metric_value, "metric_drop": self.metric_drop,
                "latency_median_ms": self.latency_median_ms, "latency_p99_ms": self.latency_p99_ms,
                "size_bytes": self.size_bytes, "parity_passed": self.parity_passed, "reference": self.reference}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(target=str(data["target"]), precision=str(data["precision"]), quantizer=data.get("quantizer"),
                   engine=str(data["engine"]), metric_value=float(data["metric_value"]),
                   metric_drop=float(data["metric_drop"]), latency_median_ms=float(data["latency_median_ms"]),
                   latency_p99_ms=float(data["latency_p99_ms"]), size_bytes=int(data["size_bytes"]),
                   parity_passed=bool(data["parity_passed"]), reference=bool(data.get("reference", False)))


@dataclass(frozen=True)
class Weighed:
    """A candidate and what the rule made of it: ``eligible`` (within budget and matching PyTorch) and a note."""

    candidate: Candidate
    eligible: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.candidate.to_dict(), "eligible": self.eligible, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Weighed:
        return cls(Candidate.from_dict(data), bool(data["eligible"]), str(data["note"]))


@dataclass(frozen=True)
class SelectionRecord:
    """What the run bundles and why: the ``rule``, the accuracy ``budget`` on ``metric`` (drop against the
    FP32 student), every candidate weighed, the ``chosen`` one, one-sentence ``reason``; ``fallback``: no
    engine but the FP32 reference qualified; ``skipped``: entries not built on this machine (``when:``)."""

    rule: SelectRule
    metric: str
    budget: float
    chosen: Candidate
    reason: str
    candidates: tuple[Weighed, ...]
    fallback: bool = False
    skipped: tuple[str, ...] = ()

    # the chosen engine's identity at the top level (what the report's verdict reads)
    @property
    def target(self) -> str:
        return self.chosen.target

    @property
    def precision(self) -> str:
        return self.chosen.precision

    @property
    def quantizer(self) -> str | None:
        return self.chosen.quantizer

    @property
    def label(self) -> str:
        return self.chosen.label

    def to_dict(self) -> dict[str, Any]:
        """The ``selection`` section of ``report.json`` (and the bundle's ``selection.json``)."""
        return {"rule": self.rule.to_dict(), "metric": self.metric, "budget": self.budget,
                "target": self.target, "precision": self.precision, "quantizer": self.quantizer,
                "engine": self.chosen.engine, "metric_drop": self.chosen.metric_drop, "reason": self.reason,
                "fallback": self.fallback, "candidates": [w.to_dict() for w in self.candidates],
                "skipped": list(self.skipped)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "selection") -> SelectionRecord:
        """The record behind :meth:`to_dict`'s dict; a one-line SelectionError naming ``source`` otherwise."""
        try:
            weighed = tuple(Weighed.from_dict(w) for w in data["candidates"])
            chosen = next(w.candidate for w in weighed if w.candidate.engine == data["engine"])
            return cls(rule=SelectRule.parse(data["rule"], f"{source}.rule"), metric=str(data["metric"]),
                       budget=float(data["budget"]), chosen=chosen, reason=str(data["reason"]),
                       candidates=weighed, fallback=bool(data.get("fallback", False)),
                       skipped=tuple(str(s) for s in data.get("skipped", ())))
        except StopIteration:
            raise SelectionError(f"{source}: the chosen engine is not among its candidates") from None
        except (KeyError, TypeError, ValueError, AttributeError, CompressError) as exc:
            raise SelectionError(f"{source} is not a selection record ({type(exc).__name__}: {exc})") from None


def select_engine(candidates: Sequence[Candidate], rule: SelectRule, budget: float, metric: str,
                  skipped: Sequence[str] = ()) -> SelectionRecord:
    """Apply ``rule`` to ``candidates`` (exactly one of them the FP32 ``reference``) with the accuracy
    ``budget`` (largest allowed ``metric_drop``)."""
    references = [c for c in candidates if c.reference]
    if len(references) != 1:
        raise ValueError(f"select_engine needs exactly one reference candidate, got {len(references)}")
    reference = references[0]
    verdicts = {c: _problem(c, budget) for c in candidates}
    if rule.named is not None:
        return _select_named(candidates, verdicts, rule, budget, metric, tuple(skipped))
    eligible = [c for c in candidates if verdicts[c] is None]
    others = [c for c in eligible if not c.reference]
    if others:
        chosen, fallback = _fastest(eligible), False
        faster = [c for c in candidates if verdicts[c] and c.latency_median_ms < chosen.latency_median_ms]
        reason = (f"the fastest student engine within the accuracy budget ({metric} drop {chosen.metric_drop:.4g} "
                  f"<= {budget:g} against FP32) that matches PyTorch: {chosen.latency_median_ms:.4g} ms median"
                  + ("; faster but left out: " + "; ".join(f"{c.label} {c.latency_median_ms:.4g} ms "
                                                            f"({verdicts[c]})" for c in faster) if faster else ""))
    else:
        chosen, fallback = reference, True
        left = [c for c in candidates if not c.reference]
        reason = (f"no student engine but the FP32 reference is within the accuracy budget ({metric} drop <= "
                  f"{budget:g}) and matches PyTorch"
                  + (" (" + "; ".join(f"{c.label}: {verdicts[c]}" for c in left) + ")" if left else "")
                  + f": the FP32 reference {reference.label} is selected"
                  + (f" although {verdicts[reference]}" if verdicts[reference] else ""))
    return SelectionRecord(rule, metric, budget, chosen, reason, _weighed(candidates, verdicts, chosen),
                           fallback, tuple(skipped))


def _select_named(candidates: Sequence[Candidate], verdicts: Mapping[Candidate, str | None], rule: SelectRule,
                  budget: float, metric: str, skipped: tuple[str, ...]) -> SelectionRecord:
    named = rule.named
    matching = [c for c in candidates if named.matches(c.target, c.precision, c.quantizer)]
    if not matching:
        built = ", ".join(c.label for c in candidates)
        raise SelectionError(f"deploy.select names {named.label}, which this run did not build (built: {built})")
    chosen = _fastest(matching)
    problem = verdicts[chosen]
    reason = (f"named in deploy.select ({named.label}): {chosen.latency_median_ms:.4g} ms median, {metric} drop "
              f"{chosen.metric_drop:.4g} against FP32"
              + (f"; selected although {problem}" if problem else f" (within the budget of {budget:g})"))
    return SelectionRecord(rule, metric, budget, chosen, reason, _weighed(candidates, verdicts, chosen),
                           False, skipped)


def _problem(candidate: Candidate, budget: float) -> str | None:
    """Why ``candidate`` may not be chosen by the ``fastest`` rule, or None."""
    if not math.isfinite(candidate.metric_drop):
        return "its metric is not a finite number"
    if not candidate.parity_passed:
        return "it does not match PyTorch (parity failed)"
    if candidate.metric_drop > budget + TOLERANCE:
        return f"drop {candidate.metric_drop:.4g} > budget {budget:g}"
    return None


def _fastest(candidates: Sequence[Candidate]) -> Candidate:
    """The lowest median latency (then p99, then size; the first listed on a full tie)."""
    return min(candidates, key=lambda c: (c.latency_median_ms, c.latency_p99_ms, c.size_bytes))


def _weighed(candidates: Sequence[Candidate], verdicts: Mapping[Candidate, str | None],
             chosen: Candidate) -> tuple[Weighed, ...]:
    out = []
    for c in candidates:
        problem = verdicts[c]
        note = "chosen" if c is chosen else problem or (
            f"within budget, slower ({c.latency_median_ms:.4g} ms)")
        if c is chosen and problem:
            note = f"chosen although {problem}"
        out.append(Weighed(c, problem is None, note))
    return tuple(out)


# ---------------------------------------------------------------- from a run's engines
def candidates_from_engines(engines: Iterable[EngineReport], reference: TargetChoice,
                            metric: str) -> list[Candidate]:
    """The student's engines as candidates, their drop measured against the student's engine on the
    ``reference`` target and precision (the FP32 student, as the report's summary measures it)."""
    students = [e for e in engines if e.role == "student"]
    ref = next((e for e in students if (e.target, e.precision) == (reference.target, reference.precision)), None)
    if ref is None:
        raise SelectionError(f"the run built no student engine on the reference target {reference.target} "
                             f"{reference.precision}: add it to deploy.targets")
    base = _metric_of(ref, metric)
    return [Candidate(target=e.target, precision=e.precision,
                      quantizer=e.int8.quantizer if e.int8 is not None else None, engine=Path(e.path).name,
                      metric_value=_metric_of(e, metric), metric_drop=base - _metric_of(e, metric),
                      latency_median_ms=e.latency.median, latency_p99_ms=e.latency.p99, size_bytes=e.size_bytes,
                      parity_passed=e.parity.passed, reference=e is ref) for e in students]


def _metric_of(engine: EngineReport, metric: str) -> float:
    value = engine.metric.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def select_for_run(engines: Iterable[EngineReport], deploy: DeployConfig, metric: str,
                   skipped: Sequence[str] = ()) -> SelectionRecord:
    """The run's selection: ``deploy.select`` over the student's engines, with the accuracy budget
    ``deploy.select_budget`` (or ``deploy.int8_budget``) on ``metric``."""
    candidates = candidates_from_engines(engines, deploy.reference_target, metric)
    return select_engine(candidates, deploy.select, selection_budget(deploy), metric, skipped)


def selection_budget(deploy: DeployConfig) -> float:
    """The headline-metric drop against FP32 that ``select: fastest`` allows."""
    return deploy.select_budget if deploy.select_budget is not None else deploy.int8_budget


# ---------------------------------------------------------------- Markdown
def render_selection(record: SelectionRecord, mb: Callable[[int], str] | None = None) -> list[str]:
    """The report's "Selected engine" section (the engine the bundle holds) as Markdown lines: the choice, the
    rule and the reason, and every candidate with its drop against FP32, latency, size and what the rule made of
    it (``mb``: how a size in bytes is shown; default megabytes)."""
    size = mb or (lambda n: f"{n / 1e6:.3g}")
    rule = ("fastest within the accuracy budget" if record.rule.named is None
            else f"the engine named in deploy.select ({record.rule.named.label})")
    lines = ["## Selected engine", "",
             f"**{record.label}** (`{record.chosen.engine}`), rule: {rule}; budget: {record.metric} drop <= "
             f"{record.budget:g} against the FP32 student.", "", f"Why: {record.reason}.", "",
             f"| engine | {record.metric} | drop vs FP32 | median ms | p99 ms | size MB | matches PyTorch | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for w in record.candidates:
        c = w.candidate
        name = f"**{c.label}**" if c is record.chosen else c.label
        lines.append(f"| {name}{' (FP32 reference)' if c.reference else ''} | {c.metric_value:.4g} | "
                     f"{c.metric_drop:+.4g} | {c.latency_median_ms:.3f} | {c.latency_p99_ms:.3f} | "
                     f"{size(c.size_bytes)} | {'yes' if c.parity_passed else 'no'} | {w.note} |")
    if record.skipped:
        lines += ["", "Not built on this machine: " + "; ".join(record.skipped) + "."]
    return lines + [""]
