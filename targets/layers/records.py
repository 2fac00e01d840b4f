"""Per-layer timing and executed precision of one engine, as typed records; grouping by PyTorch module; the
precision audit (what each layer ran in against what the artifact asked for)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from compressor.targets.layers.scopes import is_compute

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8", "int4")
FLOAT = ("fp32", "fp16", "bf16")
_PRECISION_WORDS = (  # searched in order in a lowered dtype / kernel / precision name
    ("bfloat16", "bf16"), ("bf16", "bf16"), ("float16", "fp16"), ("fp16", "fp16"), ("half", "fp16"),
    ("f16", "fp16"), ("fp8", "fp8"), ("int4", "int4"), ("uint8", "int8"), ("int8", "int8"), ("u8", "int8"),
    ("i8", "int8"), ("float32", "fp32"), ("fp32", "fp32"), ("f32", "fp32"), ("float", "fp32"))


def precision_name(text: str) -> str:
    """``"float16"``, ``"u8"``, ``"brgconv_avx512_I8"``, ``"Row major linear FP16"`` -> ``fp16`` / ``int8`` /
    ...; ``""`` when the text names no precision."""
    lowered = text.lower()
    for word, name in _PRECISION_WORDS:
        if re.search(rf"(^|[^a-z0-9]){word}($|[^a-z0-9])", lowered):
            return name
    return ""


@dataclass(frozen=True)
class LayerTime:
    """One executed engine layer: its name and type in the engine, the ONNX node it ran (``""`` when none
    matches: a layout or cast node the runtime inserted) and that node's module path, its median time per
    inference, the precision it executed in and the kernel the runtime chose."""

    layer: str
    op_type: str
    onnx_node: str
    module: str
    time_ms: float
    precision: str
    kernel: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "op_type": self.op_type, "onnx_node": self.onnx_node, "module": self.module,
                "time_ms": self.time_ms, "precision": self.precision, "kernel": self.kernel}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerTime:
        return cls(**{k: data[k] for k in ("layer", "op_type", "onnx_node", "module", "time_ms", "precision")},
                   kernel=data.get("kernel", ""))


@dataclass(frozen=True)
class LayerProfile:
    """Every layer of one engine with its time and precision. ``precision`` is what the artifact asked for;
    ``float_layers`` the precision an INT8 engine's float layers were asked to run in; ``kept_in_float`` the
    ONNX nodes the accuracy gate kept out of INT8; ``runs`` the timed inferences; ``total_ms`` the median time
    of a whole inference as the runtime's profiler saw it (the layers' sum is a little less)."""

    target: str
    precision: str
    artifact: str
    layers: tuple[LayerTime, ...]
    runs: int
    total_ms: float
    float_layers: str = "fp32"
    kept_in_float: tuple[str, ...] = ()
    quantizer: str = ""
    notes: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        """``target precision`` (and the quantizer of an INT8 engine), as tables label an engine."""
        quantizer = f" ({self.quantizer})" if self.quantizer and self.precision == "int8" else ""
        return f"{self.target} {self.precision}{quantizer}"

    @property
    def layers_ms(self) -> float:
        """Sum of the layers' median times."""
        return sum(layer.time_ms for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "precision": self.precision, "artifact": self.artifact,
                "quantizer": self.quantizer, "float_layers": self.float_layers,
                "kept_in_float": list(self.kept_in_float), "runs": self.runs, "total_ms": self.total_ms,
                "layers": [layer.to_dict() for layer in self.layers], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerProfile:
        return cls(target=data["target"], precision=data["precision"], artifact=data.get("artifact", ""),
                   layers=tuple(LayerTime.from_dict(d) for d in data["layers"]), runs=int(data["runs"]),
                   total_ms=float(data["total_ms"]), float_layers=data.get("float_layers", "fp32"),
                   kept_in_float=tuple(data.get("kept_in_float", ())), quantizer=data.get("quantizer", ""),
                   notes=tuple(data.get("notes", ())))


@dataclass(frozen=True)
class ModuleTime:
    """The time of one module (its layers together) in one engine and its share of the engine's layer time."""

    module: str
    time_ms: float
    share: float
    layers: int
    precisions: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "time_ms": self.time_ms, "share": self.share, "layers": self.layers,
                "precisions": list(self.precisions)}


def module_at_depth(module: str, depth: int | None) -> str:
    """``module`` cut to its first ``depth`` names (``heavy.0`` at depth 1 is ``heavy``; None keeps it whole).
    Names in parentheses (layers no ONNX node matches) are kept as they are."""
    if depth is None or module.startswith("("):
        return module
    return ".".join(module.split(".")[:depth])


def module_times(profile: LayerProfile, depth: int | None = None) -> tuple[ModuleTime, ...]:
    """The engine's time per module (at ``depth``; None: the innermost module of each layer), slowest first."""
    total = profile.layers_ms or 1.0
    grouped: dict[str, list[LayerTime]] = {}
    for layer in profile.layers:
        grouped.setdefault(module_at_depth(layer.module, depth), []).append(layer)
    rows = [ModuleTime(module=name, time_ms=sum(x.time_ms for x in members),
                       share=sum(x.time_ms for x in members) / total, layers=len(members),
                       precisions=tuple(sorted({x.precision for x in members if x.precision})))
            for name, members in grouped.items()]
    return tuple(sorted(rows, key=lambda row: (-row.time_ms, row.module)))


def module_table(profiles: Sequence[LayerProfile], depth: int | None = None,
                 top: int | None = None) -> tuple[tuple[str, ...], list[tuple[str, list[ModuleTime | None]]]]:
    """The same modules compared across engines: ``(engine labels, [(module, [its ModuleTime per engine or
    None])])``, modules ordered by their largest share in any engine; ``top`` keeps the first ones."""
    per_engine = [{row.module: row for row in module_times(p, depth)} for p in profiles]
    names = {name for rows in per_engine for name in rows}
    ordered = sorted(names, key=lambda n: (-max((rows[n].share for rows in per_engine if n in rows), default=0), n))
    table = [(name, [rows.get(name) for rows in per_engine]) for name in ordered[:top]]
    return tuple(p.engine for p in profiles), table


@dataclass(frozen=True)
class AuditedLayer:
    """A compute layer's executed precision against the one it was expected to run in."""

    layer: str
    module: str
    onnx_node: str
    executed: str
    expected: str
    kept_in_float: bool = False

    @property
    def matches(self) -> bool:
        return not self.executed or self.executed == self.expected

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "module": self.module, "onnx_node": self.onnx_node, "executed": self.executed,
                "expected": self.expected, "kept_in_float": self.kept_in_float, "matches": self.matches}


@dataclass(frozen=True)
class PrecisionAudit:
    """One engine's precision audit: the precision asked for, every compute layer (convolutions, products,
    attention) with the precision it executed, and a warning per kind of mismatch."""

    engine: str
    target: str
    precision: str
    layers: tuple[AuditedLayer, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def executed(self) -> dict[str, int]:
        """How many compute layers executed in each precision."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.executed or "?"] = counts.get(layer.executed or "?", 0) + 1
        return dict(sorted(counts.items()))

    @property
    def float_modules(self) -> tuple[str, ...]:
        """Modules whose compute layers ran in a float precision."""
        return tuple(dict.fromkeys(x.module for x in self.layers if x.executed in FLOAT))

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "target": self.target, "precision": self.precision,
                "executed": self.executed, "float_modules": list(self.float_modules),
                "layers": [x.to_dict() for x in self.layers], "warnings": list(self.warnings)}


def _expected(profile: LayerProfile, node: str) -> tuple[str, bool]:
    """The precision a compute layer should execute in, and whether the gate kept its node in float."""
    if profile.precision != "int8":
        return profile.precision, False
    kept = bool(node) and any(node == name or node.startswith(f"{name}_part") for name in profile.kept_in_float)
    return (profile.float_layers if kept else "int8"), kept


def audit_precision(profile: LayerProfile) -> PrecisionAudit:
    """Compare what each compute layer executed with what ``profile``'s artifact asked for: an INT8 engine's
    layers run int8 except those the gate kept in float (its ``float_layers`` precision); an fp32, fp16 or
    bf16 engine's layers run that precision. One warning per (expected, executed) pair, naming the modules."""
    audited = []
    for layer in profile.layers:
        if not is_compute(layer.op_type):
            continue
        expected, kept = _expected(profile, layer.onnx_node)
        audited.append(AuditedLayer(layer=layer.layer, module=layer.module, onnx_node=layer.onnx_node,
                                    executed=layer.precision, expected=expected, kept_in_float=kept))
    mismatched: dict[tuple[str, str], list[str]] = {}
    for layer in audited:
        if not layer.matches:
            mismatched.setdefault((layer.expected, layer.executed), []).append(layer.module or "(model)")
    warnings = tuple(f"{profile.engine}: {len(modules)} layer(s) asked for {expected} ran {executed}: "
                     f"{_listed(list(dict.fromkeys(modules)))}"
                     for (expected, executed), modules in sorted(mismatched.items()))
    return PrecisionAudit(engine=profile.engine, target=profile.target, precision=profile.precision,
                          layers=tuple(audited), warnings=warnings)


def _listed(names: Iterable[str], most: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")
