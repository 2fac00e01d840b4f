"""The model registry: tiny factory functions registered by name, as timm does."""
from __future__ import annotations

from typing import Any, Callable

from compressor.core.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model")
register_model = MODELS.register


def create_model(name: str, **kwargs: Any):
    """Build the registered model ``name``.

    >>> model = create_model("tiny_convnet")
    """
    return MODELS.get(name)(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered models matching ``pattern`` (shell wildcards)."""
    return MODELS.names(pattern)
