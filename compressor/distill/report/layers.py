"""The report's per-layer sections: where the time goes (slowest PyTorch modules per engine, the same modules
compared across engines and precisions) and the precision audit, as typed records and Markdown lines."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from compressor.targets.layers.records import (
    LayerProfile,
    ModuleTime,
    PrecisionAudit,
    audit_precision,
    module_table,
    module_times,
)
from compressor.targets.layers.scopes import ModuleIndex

ROOT_LABEL = "(model)"


@dataclass(frozen=True)
class EngineModules:
    """One engine's slowest modules with their share of its layer time."""

    engine: str
    total_ms: float
    modules: tuple[ModuleTime, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "total_ms": self.total_ms, "modules": [m.to_dict() for m in self.modules]}


@dataclass(frozen=True)
class ModuleRow:
    """One module's time in each engine (None where the engine has no layer of it)."""

    module: str
    times_ms: tuple[float | None, ...]
    shares: tuple[float | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "time_ms": list(self.times_ms), "share": list(self.shares)}


@dataclass(frozen=True)
class LayerReport:
    """The per-layer part of a run report: ``slowest`` per engine, ``comparison`` of modules across
    ``engines``, ``audits`` per engine, and ``depth`` (module names cut to that many parts; None: innermost)."""

    engines: tuple[str, ...]
    slowest: tuple[EngineModules, ...]
    comparison: tuple[ModuleRow, ...]
    audits: tuple[PrecisionAudit, ...]
    depth: int | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every audit warning (layers that executed another precision than asked)."""
        return tuple(w for audit in self.audits for w in audit.warnings)

    def to_dict(self) -> dict[str, Any]:
        return {"engines": list(self.engines), "depth": self.depth,
                "slowest": [e.to_dict() for e in self.slowest],
                "comparison": [row.to_dict() for row in self.comparison],
                "precision_audit": [a.to_dict() for a in self.audits], "warnings": list(self.warnings)}


def layer_section(profiles: Sequence[LayerProfile], *, top: int = 5, depth: int | None = None) -> LayerReport:
    """The report data of the engines' layer profiles: the ``top`` slowest modules of each, the modules compared
    across engines (the ``top`` * 2 with the largest share anywhere), and each engine's precision audit."""
    slowest = tuple(EngineModules(engine=p.engine, total_ms=p.total_ms, modules=module_times(p, depth)[:top])
                    for p in profiles)
    engines, table = module_table(profiles, depth, top=top * 2)
    comparison = tuple(ModuleRow(module=name, times_ms=tuple(c.time_ms if c else None for c in cells),
                                 shares=tuple(c.share if c else None for c in cells)) for name, cells in table)
    return LayerReport(engines=engines, slowest=slowest, comparison=comparison,
                       audits=tuple(audit_precision(p) for p in profiles), depth=depth)


def module_label(module: str) -> str:
    """A module path as a table shows it (the top-level ``forward`` is ``(model)``)."""
    return module or ROOT_LABEL


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _time(time_ms: float | None, share: float | None) -> str:
    return "-" if time_ms is None else f"{time_ms:.3f} ({share:.0%})"


def render_layer_section(report: LayerReport) -> list[str]:
    """Markdown lines: ``## Where the time goes`` (slowest modules per engine, then modules x engines) and
    ``## Precision audit`` (the precisions each engine's compute layers executed, and warnings)."""
    if not report.slowest:
        return []
    lines = ["## Where the time goes", "",
             "Per-layer time from each runtime's own profiler, attributed to the PyTorch module that the exporter "
             "recorded for each ONNX node (median per inference; share of the engine's layer time).", ""]
    for engine in report.slowest:
        lines += [f"**{_cell(engine.engine)}** ({engine.total_ms:.3f} ms per inference)", "",
                  "| module | ms | share | layers | precision |", "|---|---:|---:|---:|---|"]
        lines += [f"| {_cell(module_label(m.module))} | {m.time_ms:.3f} | {m.share:.0%} | {m.layers} | "
                  f"{', '.join(m.precisions) or '?'} |" for m in engine.modules]
        lines.append("")
    if len(report.engines) > 1:
        lines += ["| module | " + " | ".join(_cell(e) for e in report.engines) + " |",
                  "|---|" + "---:|" * len(report.engines)]
        lines += [f"| {_cell(module_label(row.module))} | " + " | ".join(_time(t, s) for t, s in zip(row.times_ms,
                                                                                                    row.shares)) + " |"
                  for row in report.comparison]
        lines.append("")
    lines += ["## Precision audit", "", "| engine | asked | compute layers executed | kept in float |",
              "|---|---|---|---|"]
    for audit in report.audits:
        executed = ", ".join(f"{count} {name}" for name, count in audit.executed.items()) or "-"
        kept = ", ".join(dict.fromkeys(module_label(x.module) for x in audit.layers if x.kept_in_float)) or "-"
        lines.append(f"| {_cell(audit.engine)} | {audit.precision} | {executed} | {_cell(kept)} |")
    lines.append("")
    lines += [f"- warning: {_cell(w)}" for w in report.warnings] or ["Every compute layer ran the precision asked."]
    return lines + [""]


def float_layer_modules(kept_in_float: Iterable[str], onnx_paths: Iterable[str | Path | None]) -> tuple[str, ...]:
    """The layers the accuracy gate kept in float (ONNX node names, as the gate records them) named by PyTorch
    module path, read from the exported ONNX (``onnx_paths``; a node no file knows keeps its name):
    ``("heavy.0 (node_conv2d_1)", ...)``."""
    index = ModuleIndex.from_paths(onnx_paths)
    named = []
    for node in kept_in_float:
        module = index.module_of(node) if node in index.op_types else node
        named.append(f"{module_label(module)} ({node})" if module != node else node)
    return tuple(named)
