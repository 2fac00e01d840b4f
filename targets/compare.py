"""Parity: compare an artifact's outputs with a reference's, per output, against a tolerance."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import numpy as np

from compressor.core.errors import CompressError
from compressor.targets.base import Runner

# Default tolerances per precision: |got - ref| <= atol + rtol * max|ref| (rtol is relative to the
# output's largest magnitude: activations that cancel to ~0 carry the rounding error of their large terms).
# INT8 is judged on the mean error (as Polygraphy's --check-error-stat mean): a few elements near a
# quantization step boundary differ by a whole step by design; the metric gate judges accuracy.
DEFAULT_TOLERANCES: dict[str, tuple[float, float, str]] = {
    "fp32": (1e-4, 1e-3, "elementwise"),
    "fp16": (1e-2, 1e-2, "elementwise"),
    "bf16": (5e-2, 5e-2, "elementwise"),
    "int8": (0.0, 2e-2, "mean"),
}


@dataclass(frozen=True)
class Tolerance:
    """Bound ``|got - ref| <= atol + rtol * max|ref|`` (max over the output), checked on every element
    (``stat="elementwise"``) or on the mean absolute error (``stat="mean"``)."""

    atol: float
    rtol: float
    stat: str = "elementwise"

    @classmethod
    def for_precision(cls, precision: str, atol: float | None = None, rtol: float | None = None) -> "Tolerance":
        """The default for ``precision`` with optional overrides."""
        d_atol, d_rtol, stat = DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])
        return cls(d_atol if atol is None else atol, d_rtol if rtol is None else rtol, stat)


@dataclass
class OutputParity:
    """Error statistics of one output, accumulated over all compared feeds."""

    name: str
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    mean_rel: float = 0.0
    nonfinite: int = 0
    violations: int = 0
    elements: int = 0
    ref_max: float = 0.0
    stat: str = "elementwise"
    mean_bound: float = 0.0

    @property
    def passed(self) -> bool:
        within = self.violations == 0 if self.stat == "elementwise" else self.mean_abs <= self.mean_bound
        return self.nonfinite == 0 and within and self.elements > 0


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
                "tolerance": asdict(self.tolerance),
                "outputs": [{**asdict(o), "passed": o.passed} for o in self.outputs]}


def _accumulate(stat: OutputParity, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> None:
    ref64 = np.asarray(ref, dtype=np.float64)
    got64 = np.asarray(got, dtype=np.float64)
    finite = np.isfinite(got64)
    stat.nonfinite += int(got64.size - finite.sum())
    diff = np.abs(np.where(finite, got64, 0.0) - ref64)
    scale = float(np.abs(ref64).max(initial=0.0))
    rel = diff / max(scale, 1e-12)
    n_before, n = stat.elements, diff.size
    stat.elements += n
    stat.max_abs = max(stat.max_abs, float(diff.max(initial=0.0)))
    stat.max_rel = max(stat.max_rel, float(rel.max(initial=0.0)))
    stat.mean_abs = (stat.mean_abs * n_before + float(diff.sum())) / max(stat.elements, 1)
    stat.mean_rel = (stat.mean_rel * n_before + float(rel.sum())) / max(stat.elements, 1)
    stat.violations += int((diff > tol.atol + tol.rtol * scale).sum())
    stat.ref_max, stat.stat = max(stat.ref_max, scale), tol.stat
    stat.mean_bound = tol.atol + tol.rtol * stat.ref_max


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
                raise CompressError(f"output '{name}': reference shape {list(np.shape(r))} != artifact shape {list(np.shape(g))}")
            _accumulate(stats.setdefault(name, OutputParity(name)), r, g, tolerance)
    return ParityReport(tolerance, feeds, list(stats.values()))


def compare_runners(reference: Runner, candidate: Runner, feeds: Iterable[Mapping[str, np.ndarray]],
                    tolerance: Tolerance) -> ParityReport:
    """Run both (active) runners on every feed and compare their outputs."""
    return compare_outputs(((reference.infer(f), candidate.infer(f)) for f in feeds), tolerance)
