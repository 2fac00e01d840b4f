"""Capture intermediate features by module path with forward hooks (no model changes for KD's sake)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from compressor.core.errors import did_you_mean
from compressor.distill.config import ConfigError


class FeatureHooks:
    """Record the outputs of the modules at ``paths`` during a forward pass.

    A module returning a tuple contributes its element ``index`` (SPAN blocks return ``(out, a1)``).

    >>> with FeatureHooks(model, ["block_1", "block_6"]) as hooks:
    ...     model(x)
    ...     feats = hooks.features()
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], *, index: int = 0) -> None:
        modules = dict(model.named_modules())
        for path in paths:
            if path not in modules:
                raise ConfigError(f"no module '{path}' in {type(model).__name__}{did_you_mean(path, modules)}")
        self._targets = [(path, modules[path]) for path in paths]
        self.index = index
        self._captured: dict[str, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "FeatureHooks":
        for path, module in self._targets:
            self._handles.append(module.register_forward_hook(self._make_hook(path)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captured.clear()

    def _make_hook(self, path: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            self._captured[path] = output[self.index] if isinstance(output, (tuple, list)) else output

        return hook

    def features(self) -> list[Tensor]:
        """The captured features in ``paths`` order (from the latest forward pass)."""
        return [self._captured[path] for path, _ in self._targets]
