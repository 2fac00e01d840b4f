"""The contract between the generic pipeline and a task (super-resolution, tracking, intrusion detection),
and what every task shares: role weights, data sources, training summaries."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from compressor.core.registry import Registry
from compressor.core.tensor_spec import TensorSpec
from compressor.distill.config import ConfigError
from compressor.distill.trainer import TrainResult
from compressor.targets.base import Runner

TASKS: Registry[type["Task"]] = Registry("task")

ROLES = ("teacher", "student", "baseline")
WEIGHTED_ROLES = ("teacher", "student")  # the roles a recipe (or --weights) may give a checkpoint

BundleExtras = Mapping[str, Path | bytes]
"""Extra bundle files: ``{name in bundle: source file, or the file's content}``."""


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
    device: str = "cpu"  # training device: cpu, cuda, cuda:N, auto
    train_precision: str = "fp32"  # fp32, bf16, fp16 (autocast), auto
    resume: bool = False  # continue killed trainings from their checkpoints
    fresh: bool = False  # reuse nothing from earlier runs
    checkpoint_every: int = 0  # iterations between training checkpoints (0: about twenty per training)


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one engine measured: its metrics (a report row's ``metric``) and task-specific
    findings for :meth:`Task.report_details` (JSON-able; empty for most tasks)."""

    engine: str
    metrics: dict[str, float]
    findings: dict[str, Any] = field(default_factory=dict)


class Task(abc.ABC):
    """Trains teacher, student and baseline; declares input specs; evaluates any runner on held-out data."""

    name: str = ""
    settings_cls: type = object
    metric: str = ""  # the headline metric, higher is better
    user_models: bool = False  # teacher/student are any MODEL_SPEC (so --teacher/--student may replace them)

    def __init__(self, settings: Any, context: RunContext) -> None:
        self.settings, self.context = settings, context

    # ------------------------------------------------------------ shared by every task
    @classmethod
    def check_settings(cls, settings: Any) -> None:
        """Fail with one line on settings that cannot work together, when the recipe loads (nothing is read or
        built yet; ranges of single numbers are :mod:`compressor.distill.recipe_bounds`'). Default: none."""

    def role_weights(self, role: str) -> str | None:
        """The checkpoint for ``role`` (teacher or student): ``--weights``, else the recipe's ``weights``."""
        return self.context.weights.get(role) or getattr(self.settings, role).weights

    def check_inputs(self) -> None:
        """The preflight the pipeline runs before the first training step: the settings again, weight files
        (each one read, so a truncated or foreign checkpoint is named now), then the task's data (every file
        read or decoded). Fails with one line; nothing is written."""
        type(self).check_settings(self.settings)
        for role in WEIGHTED_ROLES:
            path = self.role_weights(role)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{role} weights file not found: {path}")
            if path is not None:
                from compressor.models._weights import check_checkpoint

                check_checkpoint(path)
        self.check_data()

    def data_source(self, recipe_source: str) -> str:
        """Where the data comes from: ``--data`` when given, else the recipe's ``recipe_source``."""
        return recipe_source if self.context.data is None else str(self.context.data)

    def data_sources(self, train: str, val: str, *, val_beside_folder: str | None) -> tuple[str, str]:
        """(train, val) sources: the recipe's ``train`` and ``val``, unless ``--data`` names a folder; then its
        ``train/`` and ``val/`` when it has both, else the folder to train on and ``val_beside_folder`` to
        validate on (None: the folder too, for the task to split)."""
        if self.context.data is None:
            return train, val
        root = Path(self.context.data)
        if (root / "train").is_dir() and (root / "val").is_dir():
            return str(root / "train"), str(root / "val")
        return str(root), str(root) if val_beside_folder is None else val_beside_folder

    # ------------------------------------------------------------ what each task provides
    @abc.abstractmethod
    def check_data(self) -> None:
        """Fail early, with one line, on data that does not exist or is empty, or settings that cannot work."""

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
        """The task's metrics of ``runner`` on the validation data (the headline metric included). Pure: it
        stores nothing on the task."""

    def evaluate_with_findings(self, runner: Runner) -> Evaluation:
        """:meth:`evaluate` with the task-specific findings :meth:`report_details` reports per engine. A task
        with findings overrides this and derives :meth:`evaluate` from it (one pass over the data)."""
        return Evaluation(runner.name, self.evaluate(runner))

    def calibration_feeds(self, count: int) -> list[dict]:
        """``count`` representative input feeds from the training data, for INT8 calibration."""
        from compressor.core.errors import CompressError

        raise CompressError(f"task '{self.name}' provides no calibration data: remove its int8 targets")

    def bundle_extras(self) -> BundleExtras:
        """Extra files for the student's bundle, declared (the bundle writer writes them): ``{name in bundle:
        source path or content bytes}``, e.g. a numpy-only task runtime that imports the bundle's ``run.py``
        for its backends. Default: none."""
        return {}

    def report_details(self, evaluations: Sequence[Evaluation] = ()) -> dict[str, Any]:
        """Task-specific findings for ``report.json`` under ``details`` (JSON-able), from the run's
        ``evaluations`` of its engines. Default: none."""
        return {}

    def report_markdown(self, evaluations: Sequence[Evaluation] = ()) -> str:
        """Task-specific Markdown appended to ``report.md``, from the run's ``evaluations``. Default: none."""
        return ""

    def complexity(self, model: nn.Module) -> dict[str, Any]:
        """Parameters and multiply-accumulates of ``model`` at the profile input size."""
        from compressor.models.complexity import count_macs, count_params

        return {"params": count_params(model), "macs": count_macs(model, self.profile_feed_specs())}


def training_summary(result: TrainResult, **extra: Any) -> dict[str, Any]:
    """A role's training for the report: iterations, seconds, final loss, the loss curve, then ``extra``."""
    how = {"setup": result.setup} if result.setup else {}
    if result.reused:
        how["reused"] = True
    if result.resumed_at is not None:
        how["resumed_at"] = result.resumed_at
    return {"iterations": result.iterations, "seconds": round(result.seconds, 2), "final_loss": result.final_loss,
            "loss_curve": [round(v, 5) for v in result.losses], **how, **extra}
