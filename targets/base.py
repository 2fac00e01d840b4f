"""The contract every target honours: a Target builds an Artifact; an Artifact loads a Runner."""
from __future__ import annotations

import abc
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compressor.core.errors import (
    ArtifactError,
    InputSpecError,
    UnsupportedPrecisionError,
)
from compressor.core.feeds import Feed
from compressor.core.files import write_json
from compressor.core.tensor_spec import TensorSpec
from compressor.targets.options import TargetOptions

SIDECAR_SUFFIX = ".artifact.json"


@dataclass(frozen=True)
class Artifact:
    """A built model on disk plus everything later commands need (so they take no flags).

    ``path`` is the primary file (``.onnx``, ``.xml``); ``files`` lists every file of the
    artifact relative to its folder; ``options`` holds runtime settings fixed at build time.
    """

    target: str
    precision: str
    path: Path
    files: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def sidecar(self) -> Path:
        """The sidecar JSON beside the primary file."""
        return self.path.with_name(self.path.name + SIDECAR_SUFFIX)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the sidecar (paths relative to the artifact's folder)."""
        return {
            "target": self.target, "precision": self.precision, "path": self.path.name,
            "files": list(self.files), "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs], "options": dict(self.options),
            "source": self.source, "metadata": dict(self.metadata), "created": self.created,
        }

    def save(self) -> Path:
        """Write the sidecar atomically and return its path."""
        return write_json(self.sidecar, self.to_dict())

    def with_options(self, **options: Any) -> "Artifact":
        """A copy with runtime options overridden (e.g. ``provider``)."""
        return replace(self, options={**self.options, **options})

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """Load from the artifact's file or its sidecar JSON."""
        path = Path(path)
        sidecar = path if path.name.endswith(SIDECAR_SUFFIX) else path.with_name(path.name + SIDECAR_SUFFIX)
        if not path.exists():
            raise ArtifactError(f"artifact {path} does not exist")
        if not sidecar.exists():
            raise ArtifactError(f"{path} has no sidecar {sidecar.name}; build it with 'compress build' first")
        try:
            data = json.loads(sidecar.read_text())
            for rel in (data["path"], *data["files"]):
                _check_sidecar_path(rel, sidecar)
            artifact = cls(
                target=data["target"], precision=data["precision"], path=sidecar.parent / data["path"],
                files=tuple(data["files"]), inputs=tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
                outputs=tuple(TensorSpec.from_dict(s) for s in data["outputs"]), options=data.get("options", {}),
                source=data.get("source"), metadata=data.get("metadata", {}), created=data.get("created", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"sidecar {sidecar} is not a valid artifact description ({exc})") from None
        missing = [f for f in artifact.files if not (artifact.folder / f).exists()]
        if missing:
            raise ArtifactError(f"artifact {artifact.path.name} is missing file(s): {', '.join(missing)}")
        return artifact


def _check_sidecar_path(rel: Any, sidecar: Path) -> None:
    """A path read from a sidecar names a file in the sidecar's own folder: relative, no ``..``, not a folder."""
    if not isinstance(rel, str) or not rel:
        raise ArtifactError(f"sidecar {sidecar} names a file that is not a relative path: {str(rel)[:80]!r}")
    parts = rel.replace("\\", "/").split("/")
    if (Path(rel).is_absolute() or rel.startswith(("/", "\\")) or "\0" in rel or ":" in parts[0]
            or any(part in ("", ".", "..") for part in parts)
            or not (sidecar.parent / rel).resolve().is_relative_to(sidecar.parent.resolve())):
        raise ArtifactError(f"sidecar {sidecar} names a file outside its folder: {rel[:120]}")


class Runner(abc.ABC):
    """Runs an artifact. Use as a context manager; ``infer`` validates inputs, then runs.

    Subclasses implement ``_activate``, ``_infer_impl`` and ``_bind_impl``.
    """

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *, name: str) -> None:
        self.input_specs = tuple(inputs)
        self.output_specs = tuple(outputs)
        self.name = name
        self.is_active = False

    def __enter__(self) -> "Runner":
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def validate(self, feed: Feed) -> None:
        """Raise InputSpecError unless ``feed`` has exactly the declared names, dtypes and shapes."""
        expected = {s.name: s for s in self.input_specs}
        missing = sorted(set(expected) - set(feed))
        extra = sorted(set(feed) - set(expected))
        if missing or extra:
            want = ", ".join(expected)
            what = f"unknown input(s) {', '.join(extra)}" if extra else f"missing input(s) {', '.join(missing)}"
            raise InputSpecError(f"{self.name}: {what}; the model takes: {want}")
        sizes: dict[str, int] = {}
        for spec in self.input_specs:
            problem = spec.check(feed[spec.name])
            if problem is None:
                problem = _symbol_mismatch(spec, feed[spec.name].shape, sizes)
            if problem:
                raise InputSpecError(f"{self.name}: {problem}")

    def infer(self, feed: Feed) -> dict[str, np.ndarray]:
        """Validate ``feed`` and run once; returns outputs by name (numpy arrays)."""
        if not self.is_active:
            raise ArtifactError(f"{self.name}: runner used outside its 'with' block")
        self.validate(feed)
        return self._infer_impl(feed)

    def bind(self, feed: Feed) -> Callable[[], None]:
        """Validate and bind ``feed`` once; return a no-argument call that runs inference on it (for timing)."""
        self.validate(feed)
        return self._bind_impl(feed)

    @abc.abstractmethod
    def _activate(self) -> None: ...

    def _deactivate(self) -> None:
        """Release runtime objects; default does nothing."""

    @abc.abstractmethod
    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]: ...

    def _bind_impl(self, feed: Feed) -> Callable[[], None]:
        """Default binding: call ``_infer_impl`` with the same arrays each time."""
        frozen = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        return lambda: self._infer_impl(frozen)


def _symbol_mismatch(spec: TensorSpec, shape: tuple[int, ...], sizes: dict[str, int]) -> str | None:
    """Symbols shared across inputs (e.g. batch N) must take one size in a feed."""
    for dim, got in zip(spec.shape, shape):
        if isinstance(dim, str):
            if sizes.setdefault(dim, got) != got:
                return f"input '{spec.name}' has {dim}={got} but another input has {dim}={sizes[dim]}"
    return None


class Target(abc.ABC):
    """A runtime we build for. ``precisions`` is the full list it offers; others raise.

    ``options_class`` is the target's typed build options (the same class its format-table row names).
    """

    name: str = ""
    precisions: tuple[str, ...] = ()
    options_class: type[TargetOptions] = TargetOptions

    def read_options(self, options: TargetOptions | Mapping[str, Any] | None, precision: str) -> TargetOptions:
        """``options`` validated as this target's options class and checked against ``precision``."""
        typed = self.options_class.coerce(options)
        typed.check_precision(precision)
        return typed

    def check_precision(self, precision: str) -> None:
        """Raise UnsupportedPrecisionError for a precision this target does not build."""
        if precision not in self.precisions:
            raise UnsupportedPrecisionError(
                f"target '{self.name}' does not support precision '{precision}'; "
                f"it supports: {', '.join(self.precisions)}")

    @abc.abstractmethod
    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: TargetOptions | Mapping[str, Any] | None = None,
              calibration: Sequence[Feed] | None = None, int8: Any = None) -> Artifact:
        """Build an artifact from an ONNX model into ``out_dir`` (atomically) and write its sidecar.

        ``options`` are the target's options (its ``options_class``, or a mapping it validates; see
        :meth:`read_options`). INT8 needs ``calibration`` (a list of feed dicts) and takes ``int8`` (``Int8Options``).
        """

    def require_calibration(self, precision: str, calibration: Sequence[Feed] | None) -> None:
        """INT8 without calibration data is an error, never a silent fallback."""
        if precision == "int8" and not calibration:
            raise UnsupportedPrecisionError(f"target '{self.name}' needs calibration data for int8 (--calibration)")

    @abc.abstractmethod
    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        """Return a (not yet active) runner for ``artifact``."""


def default_name(onnx_path: Path, precision: str) -> str:
    """Default artifact stem: ``<onnx stem>_<precision>``."""
    return f"{onnx_path.stem}_{precision}"


def require_feed_specs(specs: Sequence[TensorSpec], feed: Feed) -> None:
    """Raise if the feed lacks a declared input (used by tools that build feeds)."""
    missing = [s.name for s in specs if s.name not in feed]
    if missing:
        raise InputSpecError(f"missing input(s): {', '.join(missing)}")
