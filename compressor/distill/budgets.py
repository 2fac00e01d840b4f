"""Budgets that gate CI: ``--budget p99_ms=5,metric_drop=0.1,size_mb=4`` on ``compress run``, ``compress
profile`` and ``compress bundle verify``.

A budget is a ceiling on what was measured: latency in milliseconds (``median_ms``, ``p90_ms``, ``p99_ms``),
the headline metric's drop against the FP32 student (``metric_drop``, in the metric's own units; higher is
better, so the drop is FP32 minus the engine), and the engine's size on disk (``size_mb``, 10^6 bytes). A
malformed budget is a :class:`BudgetError` (one line, exit 2); a measurement over its ceiling is a broken
budget, which the command reports in one line naming each one and exits 1 (a check failed). A budget the
subject cannot answer (``metric_drop`` of a bare profile) is bad input, never silently passed.
"""
from __future__ import annotations

import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Mapping

from compressor.core.errors import CompressError, did_you_mean

if TYPE_CHECKING:
    from compressor.distill.report.model import RunReport
    from compressor.distill.select import SelectionRecord

# key -> what it limits (for help texts and messages)
BUDGET_KEYS: dict[str, str] = {
    "median_ms": "median latency (ms)",
    "p90_ms": "90th-percentile latency (ms)",
    "p99_ms": "99th-percentile latency (ms)",
    "metric_drop": "headline metric drop against the FP32 student",
    "size_mb": "engine size on disk (MB, 10^6 bytes)",
}
BUDGET_HELP = ("Ceilings that gate CI, e.g. p99_ms=5,metric_drop=0.1,size_mb=4 (keys: " + ", ".join(BUDGET_KEYS)
               + "); a broken budget exits 1 and names it.")
PROFILE_KEYS = ("median_ms", "p90_ms", "p99_ms", "size_mb")  # what a plain profile can answer
MAX_SMALL_FILE = 16 << 20  # profile.json / selection.json / manifest.json read from a bundle


class BudgetError(CompressError):
    """A malformed ``--budget`` or one the subject cannot be checked against (exit 2)."""


@dataclass(frozen=True)
class Budget:
    """Parsed ``--budget``: ceilings by key, in the order given."""

    limits: tuple[tuple[str, float], ...]

    def __bool__(self) -> bool:
        return bool(self.limits)

    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.limits)


def require_keys(budget: Budget, allowed: tuple[str, ...], subject: str) -> Budget:
    """``budget`` when ``subject`` can answer each of its keys; else a one-line BudgetError (checked before any
    measuring, so a budget that could never be checked costs nothing)."""
    extra = [key for key in budget.keys() if key not in allowed]
    if extra:
        raise BudgetError(f"--budget: {', '.join(extra)} cannot be checked on {subject} (it can check: "
                          f"{', '.join(allowed)})")
    return budget


def parse_budget(text: str | None) -> Budget:
    """``KEY=NUMBER[,KEY=NUMBER...]`` into a :class:`Budget` (empty for None); one-line BudgetError for an
    unknown or repeated key, a missing ``=``, or a value that is not a finite number >= 0."""
    if text is None:
        return Budget(())
    limits: dict[str, float] = {}
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise BudgetError(f"--budget: empty; give KEY=NUMBER pairs, e.g. p99_ms=5,metric_drop=0.1 (keys: "
                          f"{', '.join(BUDGET_KEYS)})")
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        shown = part if part.isprintable() else repr(part)
        if not sep:
            raise BudgetError(f"--budget: '{shown[:60]}' is not KEY=NUMBER (keys: {', '.join(BUDGET_KEYS)})")
        if key not in BUDGET_KEYS:
            raise BudgetError(f"--budget: unknown key '{(key if key.isprintable() else repr(key)[1:-1])[:60]}'"
                              f"{did_you_mean(key, BUDGET_KEYS)}; keys: {', '.join(BUDGET_KEYS)}")
        if key in limits:
            raise BudgetError(f"--budget: {key} is given twice")
        try:
            number = float(value.strip())
        except ValueError:
            raise BudgetError(f"--budget: {key}={value.strip()[:60]!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise BudgetError(f"--budget: {key} must be a finite number >= 0, got {value.strip()[:60]}")
        limits[key] = number
    return Budget(tuple(limits.items()))


@dataclass(frozen=True)
class Measured:
    """What a subject measured, by budget key (None where it does not say), and what it is (for messages)."""

    subject: str
    values: Mapping[str, float | None]


@dataclass(frozen=True)
class BudgetCheck:
    """One budget against its measurement."""

    key: str
    limit: float
    value: float

    @property
    def held(self) -> bool:
        return self.value <= self.limit + 1e-12 * max(1.0, abs(self.limit))

    def describe(self) -> str:
        return f"{self.key} {self.value:.4g} {'<=' if self.held else '>'} {self.limit:g}"


@dataclass(frozen=True)
class BudgetResult:
    """Every budget checked on ``subject``."""

    subject: str
    checks: tuple[BudgetCheck, ...]

    @property
    def broken(self) -> tuple[BudgetCheck, ...]:
        return tuple(c for c in self.checks if not c.held)

    @property
    def passed(self) -> bool:
        return not self.broken

    def line(self) -> str:
        """One line: the broken budgets (or that all held), naming the subject."""
        if self.broken:
            return f"budget broken on {self.subject}: " + ", ".join(c.describe() for c in self.broken)
        return f"budget held on {self.subject}: " + ", ".join(c.describe() for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "passed": self.passed,
                "checks": [{"key": c.key, "limit": c.limit, "value": c.value, "held": c.held} for c in self.checks]}


def check_budget(budget: Budget, measured: Measured) -> BudgetResult:
    """Each of ``budget``'s ceilings against ``measured``; a key the subject cannot answer is a BudgetError."""
    missing = [key for key in budget.keys() if measured.values.get(key) is None]
    if missing:
        raise BudgetError(f"--budget: {', '.join(missing)} cannot be checked on {measured.subject} "
                          f"(it does not record {', '.join(BUDGET_KEYS[k] for k in missing)})")
    return BudgetResult(measured.subject, tuple(BudgetCheck(key, limit, float(measured.values[key]))
                                                for key, limit in budget.limits))


def _latency_values(latency: Any) -> dict[str, float | None]:
    latency = latency if isinstance(latency, Mapping) else {}

    def number(key: str) -> float | None:
        value = latency.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) else None

    return {"median_ms": number("median"), "p90_ms": number("p90"), "p99_ms": number("p99")}


# ---------------------------------------------------------------- subjects
def measured_in_profile(result: Mapping[str, Any], size_bytes: int | None = None) -> Measured:
    """A ``compress profile --json`` result (``size_bytes``: the profiled artifact's files, when known)."""
    subject = f"the profile of {result.get('target', '?')} {result.get('precision', '?')}"
    return Measured(subject, {**_latency_values(result.get("latency_ms")), "metric_drop": None,
                              "size_mb": size_bytes / 1e6 if size_bytes is not None else None})


def check_profile(budget: Budget, result: Mapping[str, Any], size_bytes: int | None = None) -> BudgetResult:
    """``budget`` against a profile result (latency; size when ``size_bytes`` is given)."""
    return check_budget(budget, measured_in_profile(result, size_bytes))


def measured_in_run(report: RunReport, selection: SelectionRecord) -> Measured:
    """The engine a run selected (and bundled): its latency, size, and metric drop against the FP32 student."""
    engine = next(e for e in report.engines if e.role == "student" and Path(e.path).name == selection.chosen.engine)
    return Measured(f"the selected engine {selection.label}",
                    {**_latency_values(engine.latency.to_dict()), "metric_drop": selection.chosen.metric_drop,
                     "size_mb": engine.size_bytes / 1e6})


def check_run(budget: Budget, report: RunReport, selection: SelectionRecord) -> BudgetResult:
    """``budget`` against the engine ``compress run`` selected."""
    return check_budget(budget, measured_in_run(report, selection))


def measured_in_bundle(path: str | Path) -> Measured:
    """A bundle (folder or ``.tar.gz``, already verified): latency from its ``profile.json`` (measured when it
    was made), size of its model files from the manifest, metric drop from ``selection.json`` (bundles made by
    ``compress run``)."""
    files = _bundle_files(Path(path), ("manifest.json", "profile.json", "selection.json"))
    manifest = _json(files.get("manifest.json"), path, "manifest.json") or {}
    profile = _json(files.get("profile.json"), path, "profile.json") or {}
    selection = _json(files.get("selection.json"), path, "selection.json")
    sizes = manifest.get("sizes") if isinstance(manifest.get("sizes"), dict) else {}
    model = [v for rel, v in sizes.items() if PurePosixPath(rel).parts[:1] == ("model",)]
    size = sum(model) if model and all(isinstance(v, int) for v in model) else None
    drop = selection.get("metric_drop") if isinstance(selection, dict) else None
    drop = float(drop) if isinstance(drop, (int, float)) and not isinstance(drop, bool) else None
    subject = f"bundle {manifest.get('name', Path(path).name)} ({manifest.get('target', '?')} " \
              f"{manifest.get('precision', '?')})"
    return Measured(subject, {**_latency_values(profile.get("latency_ms")), "metric_drop": drop,
                              "size_mb": size / 1e6 if size is not None else None})


def check_bundle(budget: Budget, path: str | Path) -> BudgetResult:
    """``budget`` against a verified bundle."""
    return check_budget(budget, measured_in_bundle(path))


def _bundle_files(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The top-level ``names`` of a bundle folder, or of the single folder a bundle archive holds."""
    found: dict[str, bytes] = {}
    if path.is_dir():
        for name in names:
            file = path / name
            if file.is_file() and not file.is_symlink() and file.stat().st_size <= MAX_SMALL_FILE:
                found[name] = file.read_bytes()
        return found
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if member.isfile() and len(parts) == 2 and parts[1] in names and member.size <= MAX_SMALL_FILE:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        found[parts[1]] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BudgetError(f"cannot read bundle {path} for --budget: {exc}") from None
    return found


def _json(raw: bytes | None, bundle: str | Path, name: str) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BudgetError(f"bundle {bundle}: {name} is not valid JSON") from None
