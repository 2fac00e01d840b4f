"""The model registry: tiny factory functions registered by name, as timm does."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from compressor.core.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model")
register_model = MODELS.register


def create_model(name: str, *, weights: str | Path | None = None, **kwargs: Any):
    """Build the registered model ``name``; ``weights`` (a checkpoint) is loaded into it.

    A factory that takes ``weights`` itself loads them (it may adapt the checkpoint, e.g. SPAN's fused form);
    any other model is built first, then loaded strictly with :func:`compressor.models._weights.load_weights`.

    >>> model = create_model("tiny_convnet")
    >>> student = create_model("lsfidm_bilstm", weights="runs/ids/checkpoints/student.pt")  # doctest: +SKIP
    """
    factory = MODELS.get(name)
    if weights is None:
        return factory(**kwargs)
    if "weights" in inspect.signature(factory).parameters:
        return factory(weights=weights, **kwargs)
    from compressor.models._weights import load_weights

    return load_weights(factory(**kwargs), weights, name=name)


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered models matching ``pattern`` (shell wildcards)."""
    return MODELS.names(pattern)
