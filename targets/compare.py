"""Parity: compare an artifact's outputs with a reference's, per output, against a tolerance."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import numpy as np

from compressor.core.errors import CompressError
from compressor.targets.base import Runner

# Default tolerances per precision: |got - ref| <= atol + rtol * max|ref| (rtol is relative to the
# output's largest magnitude: activations that cancel to ~0 carry the rounding error of their large terms).
# INT8 is judged on the signal-to-quantization-noise ratio, 10 log10(sum ref^2 / sum (got - ref)^2), as
# PyTorch's quantization numeric suite and AIMET do: quantization noise is spread over every element, so a
# bound on single elements or on the error relative to the largest one says little about whether the
# output's information survived. 20 dB is noise at 1 % of the signal's power (cosine similarity ~0.995);
# the metric gate judges accuracy on the task's own headline metric.
DEFAULT_TOLERANCES: dict[str, tuple[float, float, str]] = {
    "fp32": (1e-4, 1e-3, "elementwise"),
    "fp16": (1e-2, 1e-2, "elementwise"),
    "bf16": (5e-2, 5e-2, "elementwise"),
    "int8": (0.0, 0.0, "sqnr"),
}
DEFAULT_MIN_SQNR_DB = 20.0
STATS = ("elementwise", "mean", "sqnr")


@dataclass(frozen=True)
class Tolerance:
    """Bound ``|got - ref| <= atol + rtol * max|ref|`` (max over the output), checked on every element
    (``stat="elementwise"``) or on the mean absolute error (``stat="mean"``); or, with ``stat="sqnr"``,
    a signal-to-noise ratio of at least ``min_sqnr_db`` over all compared elements of each output."""

    atol: float
    rtol: float
    stat: str = "elementwise"
    min_sqnr_db: float = DEFAULT_MIN_SQNR_DB

    def __post_init__(self):
        if self.stat not in STATS:
            raise CompressError(f"unknown parity statistic '{self.stat}': choose from {', '.join(STATS)}")
        for name, value in (("atol", self.atol), ("rtol", self.rtol), ("min SQNR (dB)", self.min_sqnr_db)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise CompressError(f"tolerance {name} must be a finite number >= 0, not {value!r}")

    @classmethod
    def for_precision(cls, precision: str, atol: float | None = None, rtol: float | None = None,
                      min_sqnr_db: float | None = None) -> "Tolerance":
        """The default for ``precision`` with optional overrides. ``min_sqnr_db`` asks for the SQNR bound on
        any precision; an explicit ``atol`` or ``rtol`` on INT8 asks for the mean-error bound instead."""
        d_atol, d_rtol, stat = DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])
        if min_sqnr_db is not None:
            stat = "sqnr"
        elif stat == "sqnr" and (atol is not None or rtol is not None):
            stat = "mean"
        return cls(d_atol if atol is None else atol, d_rtol if rtol is None else rtol, stat,
                   DEFAULT_MIN_SQNR_DB if min_sqnr_db is None else min_sqnr_db)

    def describe(self) -> str:
        """The bound in words, e.g. ``SQNR >= 20 dB`` or ``atol 1e-4 rtol 1e-3 (mean)``."""
        if self.stat == "sqnr":
            return f"SQNR >= {self.min_sqnr_db:g} dB"
        return f"atol {self.atol:g} rtol {self.rtol:g}{' (mean)' if self.stat == 'mean' else ''}"

    def to_dict(self) -> dict:
        """JSON form (as written into a bundle's manifest)."""
        return asdict(self)


@dataclass
class OutputParity:
    """Error statistics of one output, accumulated over all compared feeds."""

    name: str
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    mean_rel: float = 0.0
    nonfinite: int = 0  # NaN/Inf elements the candidate output
    ref_nonfinite: int = 0  # NaN/Inf elements the reference output (the reference model is broken there)
    violations: int = 0
    elements: int = 0
    ref_max: float = 0.0
    stat: str = "elementwise"
    mean_bound: float = 0.0
    signal_energy: float = 0.0
    noise_energy: float = 0.0
    min_sqnr_db: float = DEFAULT_MIN_SQNR_DB

    @property
    def sqnr_db(self) -> float:
        """Signal-to-noise ratio of the candidate against the reference over all elements (inf if equal)."""
        if self.noise_energy == 0.0:
            return float("inf")
        if self.signal_energy == 0.0:
            return float("-inf")
        return 10.0 * math.log10(self.signal_energy / self.noise_energy)

    @property
    def passed(self) -> bool:
        if self.stat == "elementwise":
            within = self.violations == 0
        elif self.stat == "mean":
            within = self.mean_abs <= self.mean_bound
        else:
            within = self.sqnr_db >= self.min_sqnr_db
        return self.nonfinite == 0 and self.ref_nonfinite == 0 and within and self.elements > 0


@dataclass
class ParityReport:
    """The result of a comparison; ``passed`` only if every output passed."""

    tolerance: Tolerance
    feeds: int
    outputs: list[OutputParity] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=float("nan"))

    def to_dict(self) -> dict:
        """JSON form with ``passed`` and ``max_abs`` at the top level."""
        return {"passed": self.passed, "max_abs": self.max_abs, "feeds": self.feeds,
                "tolerance": self.tolerance.to_dict(),
                "outputs": [{**asdict(o), "sqnr_db": _finite_or_none(o.sqnr_db), "passed": o.passed}
                            for o in self.outputs]}


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an SQNR of identical outputs (or of an all-zero reference) is written as null."""
    return value if math.isfinite(value) else None


def _accumulate(stat: OutputParity, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> None:
    ref64 = np.asarray(ref, dtype=np.float64)
    got64 = np.asarray(got, dtype=np.float64)
    finite_got, finite_ref = np.isfinite(got64), np.isfinite(ref64)
    stat.nonfinite += int(got64.size - finite_got.sum())
    stat.ref_nonfinite += int(ref64.size - finite_ref.sum())
    both = finite_got & finite_ref  # errors are measured where both are numbers; the rest is counted above
    ref64 = np.where(both, ref64, 0.0)
    diff = np.abs(np.where(both, got64, 0.0) - ref64)
    scale = float(np.abs(ref64).max(initial=0.0))
    rel = diff / max(scale, 1e-12)
    n_before, n = stat.elements, diff.size
    stat.elements += n
    stat.max_abs = max(stat.max_abs, float(diff.max(initial=0.0)))
    stat.max_rel = max(stat.max_rel, float(rel.max(initial=0.0)))
    stat.mean_abs = (stat.mean_abs * n_before + float(diff.sum())) / max(stat.elements, 1)
    stat.mean_rel = (stat.mean_rel * n_before + float(rel.sum())) / max(stat.elements, 1)
    stat.violations += int((diff > tol.atol + tol.rtol * scale).sum())
    stat.signal_energy += float(np.square(ref64).sum())
    stat.noise_energy += float(np.square(diff).sum())
    stat.ref_max, stat.stat, stat.min_sqnr_db = max(stat.ref_max, scale), tol.stat, tol.min_sqnr_db
    stat.mean_bound = tol.atol + tol.rtol * stat.ref_max


def nonfinite_summary(report: "ParityReport") -> str | None:
    """``"output 'y': 3 NaN/Inf value(s) in the candidate"``-style words for outputs holding NaN or Inf, or None."""
    parts = []
    for o in report.outputs:
        if o.nonfinite:
            parts.append(f"output '{o.name}': {o.nonfinite} non-finite (NaN/Inf) value(s) in the candidate")
        if o.ref_nonfinite:
            parts.append(f"output '{o.name}': {o.ref_nonfinite} non-finite (NaN/Inf) value(s) in the reference")
    return "; ".join(parts) or None


def compare_outputs(pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                    tolerance: Tolerance) -> ParityReport:
    """Compare ``(reference_outputs, candidate_outputs)`` pairs; outputs are matched by name, else by order."""
    stats: dict[str, OutputParity] = {}
    feeds = 0
    for ref, got in pairs:
        feeds += 1
        ref_items, got_items = list(ref.items()), list(got.items())
        if len(ref_items) != len(got_items):
            raise CompressError(f"reference has {len(ref_items)} output(s), artifact has {len(got_items)}")
        if set(ref) != set(got):  # differently named exports of the same model: pair by position
            got_items = [(r_name, g) for (r_name, _), (_, g) in zip(ref_items, got_items)]
        got_map = dict(got_items)
        for name, r in ref_items:
            g = got_map[name]
            if np.shape(r) != np.shape(g):
                raise CompressError(f"output '{name}': reference shape {list(np.shape(r))} "
                                    f"!= artifact shape {list(np.shape(g))}")
            _accumulate(stats.setdefault(name, OutputParity(name)), r, g, tolerance)
    return ParityReport(tolerance, feeds, list(stats.values()))


def compare_runners(reference: Runner, candidate: Runner, feeds: Iterable[Mapping[str, np.ndarray]],
                    tolerance: Tolerance) -> ParityReport:
    """Run both (active) runners on every feed and compare their outputs."""
    return compare_outputs(((reference.infer(f), candidate.infer(f)) for f in feeds), tolerance)
