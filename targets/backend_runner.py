"""A Runner over one of the standalone bundle backends, so the toolchain and the bundle run the same code."""
from __future__ import annotations

from typing import Callable

import numpy as np

from compressor.core.errors import BuildError
from compressor.targets.base import Artifact, Feed, Runner


class BackendRunner(Runner):
    """Validates inputs (the Runner contract), then delegates to ``compressor.runtime.backends.BACKENDS[target]``."""

    def __init__(self, artifact: Artifact, *, threads: int | None = None) -> None:
        super().__init__(artifact.inputs, artifact.outputs, name=f"{artifact.target}:{artifact.path.name}")
        self.artifact = artifact
        self.threads = threads
        self.backend = None

    def _activate(self) -> None:
        from compressor.runtime.backends import BACKENDS

        try:
            self.backend = BACKENDS[self.artifact.target](self.artifact.path, dict(self.artifact.options), self.threads)
        except ValueError as exc:
            raise BuildError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - runtimes raise their own types (InvalidProtobuf, Fail,
            # RuntimeError) for files they cannot load: a corrupt or foreign model file, not a bug of ours
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise BuildError(f"cannot load {self.artifact.path}: {lines[0]}") from None

    def _deactivate(self) -> None:
        self.backend = None

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        return self.backend.run(feed)

    def _bind_impl(self, feed: Feed) -> Callable[[], None]:
        return self.backend.bind(feed)

    @property
    def runtime_version(self) -> str:
        return self.backend.version if self.backend else ""
