"""Typed errors. The CLI turns any :class:`CompressError` into one line and exit code 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class CompressError(Exception):
    """Base of every error a user can cause; its message is one line naming the problem."""


class UnknownNameError(CompressError, KeyError):
    """A name (model, target, precision, recipe) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelSpecError(CompressError):
    """A MODEL_SPEC that cannot be resolved to an ``nn.Module``."""


class InputSpecError(CompressError):
    """An input declaration (``name:SHAPE[:DTYPE]``) or an input array that does not fit it."""


class ExportError(CompressError):
    """ONNX export or its verification failed."""


class ModelFileError(CompressError):
    """A model file that is missing, not ONNX, or truncated."""


class BuildError(CompressError):
    """A target could not build an artifact."""


class UnsupportedPrecisionError(BuildError):
    """A precision the target does not offer; never swapped for another silently."""


class MissingDependencyError(CompressError):
    """An optional package (a runtime) is not installed."""


class ArtifactError(CompressError):
    """An artifact or its sidecar JSON is missing or inconsistent."""


class BundleError(CompressError):
    """A bundle that is tampered with, unsafe to extract, or fails its self-test."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    >>> did_you_mean("onnxrt", ["onnxruntime", "openvino"])
    " (did you mean 'onnxruntime'?)"
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the error for an unknown ``kind`` named ``name``, listing the choices."""
    choices = sorted(choices)
    return UnknownNameError(
        f"unknown {kind} '{name}'{did_you_mean(name, choices)}; choose from: {', '.join(choices)}"
    )
