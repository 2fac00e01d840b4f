"""Bring ONNX files written by older tools (ONNX Model Zoo style: IR version 3, opset 9, every initializer also
listed as a graph input) to the form the quantizers and runtimes expect, before anything is built from them.

Three changes, names kept: initializers are taken out of the graph inputs (from IR version 4 on they are
constants; listed as inputs, ONNX Runtime's quantizer and OpenVINO treat a shape initializer as an input
the feed must supply), an opset below :data:`MIN_OPSET` is converted to :data:`TARGET_OPSET` with
``onnx.version_converter`` (per-channel Q/DQ needs opset 13), and the IR version is raised to the one that
opset needs (the converter leaves it at 3). Models already in that form are used as they are.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper

from compressor.core.errors import ModelFileError

log = logging.getLogger(__name__)
MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear (per-channel INT8 weights)
TARGET_OPSET = 17


@dataclass(frozen=True)
class Normalization:
    """What :func:`normalize_model` changed (empty ``changes`` when nothing)."""

    opset: tuple[int, int]
    ir_version: tuple[int, int]
    initializer_inputs: int

    @property
    def changes(self) -> list[str]:
        """Each change in words, e.g. ``opset 9 -> 17``."""
        done = []
        if self.initializer_inputs:
            done.append(f"{self.initializer_inputs} initializer(s) taken out of the graph inputs")
        if self.opset[0] != self.opset[1]:
            done.append(f"opset {self.opset[0]} -> {self.opset[1]}")
        if self.ir_version[0] != self.ir_version[1]:
            done.append(f"IR version {self.ir_version[0]} -> {self.ir_version[1]}")
        return done

    def to_dict(self) -> dict:
        """JSON form for an artifact's metadata."""
        return {"opset": list(self.opset), "ir_version": list(self.ir_version),
                "initializer_inputs": self.initializer_inputs}


def default_opset(model: onnx.ModelProto) -> int:
    """The model's ``ai.onnx`` opset version (0 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def needs_normalizing(model: onnx.ModelProto) -> bool:
    """True for an old-style graph: an opset below :data:`MIN_OPSET` or initializers listed as graph inputs."""
    initializers = {init.name for init in model.graph.initializer}
    return default_opset(model) < MIN_OPSET or any(i.name in initializers for i in model.graph.input)


def normalize_model(model: onnx.ModelProto, *, source: str = "model") -> tuple[onnx.ModelProto, Normalization]:
    """``model`` with initializers out of the graph inputs, a current opset and a matching IR version
    (a copy; the argument is not changed). ``source`` names the model in errors."""
    opset, ir_version = default_opset(model), model.ir_version
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if opset < MIN_OPSET:  # first: at IR 3 the converter needs the initializers listed as inputs
        try:
            model = onnx.version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:  # the converter raises RuntimeError/ValueError/its own types per op adapter
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"cannot convert {source} from opset {opset} to {TARGET_OPSET}: {first}") from None
    initializers = {init.name for init in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in initializers]
    removed = len(model.graph.input) - len(kept)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import), True), 4)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{source} does not pass the ONNX checker after conversion to opset "
                             f"{default_opset(model)}: {first}") from None
    return model, Normalization((opset, default_opset(model)), (ir_version, model.ir_version), removed)


def normalized_onnx(onnx_path: str | Path, folder: str | Path) -> tuple[Path, Normalization | None]:
    """``onnx_path`` itself when it needs no normalizing, else a normalized copy written into ``folder``
    (a scratch folder the caller owns) and what changed."""
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    if not needs_normalizing(model):
        return onnx_path, None
    model = onnx.load(str(onnx_path))
    model, done = normalize_model(model, source=str(onnx_path))
    log.info("normalized %s for building: %s", onnx_path.name, "; ".join(done.changes))
    out = Path(folder) / f"{onnx_path.stem}.normalized.onnx"
    onnx.save(model, str(out))
    return out, done
