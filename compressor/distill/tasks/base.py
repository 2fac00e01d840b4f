"""The contract between the generic pipeline and a task (super-resolution, tracking, intrusion detection)."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import nn

from compressor.core.registry import Registry
from compressor.core.tensor_spec import TensorSpec
from compressor.targets.base import Runner

TASKS: Registry[type["Task"]] = Registry("task")

ROLES = ("teacher", "student", "baseline")


@dataclass
class RoleModel:
    """A trained model in its exportable (inference) form, with how it was obtained."""

    model: nn.Module
    output_names: list[str]
    origin: str
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What the command line adds to a recipe."""

    out_dir: Path
    seed: int
    quick: bool
    data: Path | None = None
    weights: Mapping[str, str] = field(default_factory=dict)  # role -> checkpoint
    stage: Callable[[str], None] = print


class Task(abc.ABC):
    """Trains teacher, student and baseline; declares input specs; evaluates any runner on held-out data."""

    name: str = ""
    settings_cls: type = object
    metric: str = ""  # the headline metric, higher is better

    def __init__(self, settings: Any, context: RunContext) -> None:
        self.settings, self.context = settings, context

    @abc.abstractmethod
    def check_inputs(self) -> None:
        """Fail early, with one line, on data or weight files that do not exist or are empty."""

    @abc.abstractmethod
    def train(self) -> dict[str, RoleModel]:
        """Return ``{"teacher", "student", "baseline"}`` models, trained or loaded."""

    @abc.abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        """Inputs to export with (dynamic axes as symbols)."""

    @abc.abstractmethod
    def profile_feed_specs(self) -> list[TensorSpec]:
        """Fixed-shape inputs for latency profiling."""

    @abc.abstractmethod
    def evaluate(self, runner: Runner) -> dict[str, float]:
        """The task's metrics of ``runner`` on the validation data (the headline metric included)."""

    def calibration_feeds(self, count: int) -> list[dict]:
        """``count`` representative input feeds from the training data, for INT8 calibration."""
        from compressor.core.errors import CompressError

        raise CompressError(f"task '{self.name}' provides no calibration data: remove its int8 targets")

    def bundle_extras(self) -> dict[str, Path]:
        """Extra files for the student's bundle (``{name in bundle: source path}``), e.g. a numpy-only
        task runtime that imports the bundle's ``run.py`` for its backends. Default: none."""
        return {}

    def report_details(self) -> dict[str, Any]:
        """Task-specific findings for ``report.json`` under ``details`` (JSON-able). Default: none."""
        return {}

    def report_markdown(self) -> str:
        """Task-specific Markdown appended to ``report.md``. Default: none."""
        return ""

    def complexity(self, model: nn.Module) -> dict[str, Any]:
        """Parameters and multiply-accumulates of ``model`` at the profile input size."""
        from compressor.models.complexity import count_macs, count_params

        return {"params": count_params(model), "macs": count_macs(model, self.profile_feed_specs())}
