"""Your own teacher and student: tasks ``classification`` and ``embedding``.

Teacher and student are MODEL_SPECs (registered names, ``file.py:factory``, ``package.module:factory``), each
with optional ``weights`` (safetensors or a weights-only state dict). A teacher without weights is trained on
the labelled data with cross-entropy first (``teacher.train.iterations: 0`` uses it as its factory built it);
the student is distilled with ``distill.losses`` (``ce`` plus registered losses); the **baseline** is the same
student, steps, data and seed with the label term only (no teacher term), or the untrained student when the
data has no labels. Data: :mod:`compressor.distill.data.user`. Metrics: top-1, top-5 and agreement with the
teacher (classification), cosine and nearest-neighbour agreement with the teacher (embedding), or the user's
``metrics.function(runner, data) -> dict`` with its ``metrics.headline``.
"""
from __future__ import annotations

import abc
import copy
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compressor.core.tensor_spec import TensorSpec
from compressor.core.user_code import resolve_beside
from compressor.distill.config import ConfigError
from compressor.distill.data.user import (
    ArraySet,
    ImageLayout,
    UserData,
    image_size_of,
    load_user_data,
)
from compressor.distill.tasks.base import (
    TASKS,
    BundleExtras,
    Evaluation,
    RoleModel,
    RunContext,
    Task,
    training_summary,
)
from compressor.distill.tasks.generic_losses import (
    LossEntry,
    Objective,
    check_entries,
    primary_output,
)
from compressor.distill.trainer import TrainSchedule, seed_everything, train
from compressor.targets.base import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageTrain:
    """Adam with cosine decay (:mod:`compressor.distill.trainer`) over ``iterations`` mini-batches."""

    iterations: int = 500
    lr: float = 1e-3
    batch: int = 64
    grad_clip: float | None = None


@dataclass(frozen=True)
class UserModel:
    """A MODEL_SPEC, its factory's keyword ``args`` and optional ``weights``. For the teacher, ``train`` is its
    training when it has no weights (``iterations: 0``: use it as its factory built it)."""

    model: str
    weights: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    train: StageTrain = field(default_factory=StageTrain)


@dataclass(frozen=True)
class UserDataSettings:
    """``source``: an image folder, an ``.npz`` or ``module:function`` (``--data`` overrides it).
    Image inputs take the student's declared input size and channels, else ``image_size`` / ``channels``."""

    source: str = ""
    val_fraction: float = 0.2  # held out (seeded) when the data gives no validation split
    image_size: tuple[int, ...] | None = None  # [height, width] or [size]
    channels: int | None = None
    max_train: int | None = None
    max_val: int | None = None
    eval_batch: int = 256


@dataclass(frozen=True)
class GenericDistill:
    """The student's loss terms and its training (the baseline's too)."""

    losses: tuple[LossEntry, ...] = (LossEntry("hinton", 0.9, settings=(("temperature", 4.0),)), LossEntry("ce", 0.1))
    train: StageTrain = field(default_factory=StageTrain)


@dataclass(frozen=True)
class UserMetrics:
    """``function``: ``module:function(runner, data) -> dict`` of extra metrics (higher is better), ``data``
    an :class:`~compressor.distill.data.user.ArraySet` of the validation split; ``headline``: the metric the
    report leads with and the INT8 gate guards."""

    function: str | None = None
    headline: str | None = None


@dataclass(frozen=True)
class GenericSettings:
    teacher: UserModel
    student: UserModel
    data: UserDataSettings = field(default_factory=UserDataSettings)
    distill: GenericDistill = field(default_factory=GenericDistill)
    metrics: UserMetrics = field(default_factory=UserMetrics)
    profile_batch: int = 1


@dataclass(frozen=True)
class _Loaded:
    model: nn.Module
    input_specs: list[str] | None
    output_names: list[str] | None


class GenericTask(Task):
    """The shared implementation; the subclasses name the kind, its default headline and its metrics."""

    settings_cls = GenericSettings
    default_output = "output"
    user_models = True

    def __init__(self, settings: GenericSettings, context: RunContext) -> None:
        super().__init__(settings, context)
        self.metric = settings.metrics.headline or self.metric
        self._student_model: _Loaded | None = None
        self._teacher_model: _Loaded | None = None
        self._specs: list[TensorSpec] | None = None
        self._data: UserData | None = None
        self._teacher_val: np.ndarray | None = None

    # ------------------------------------------------------------ paths in a recipe
    @classmethod
    def resolve_paths(cls, settings: GenericSettings, base: Path) -> GenericSettings:
        """Relative model files, weights and data in a recipe file name paths beside it when they exist there."""

        def near(text: str | None) -> str | None:
            return resolve_beside(text, base) if text else text

        def model(m: UserModel) -> UserModel:
            return dataclasses.replace(m, model=near(m.model) or m.model, weights=near(m.weights))

        metrics = settings.metrics
        return dataclasses.replace(
            settings, teacher=model(settings.teacher), student=model(settings.student),
            data=dataclasses.replace(settings.data, source=near(settings.data.source) or ""),
            metrics=dataclasses.replace(metrics, function=near(metrics.function) if metrics.function else None))

    # ------------------------------------------------------------ data and inputs
    def check_data(self) -> None:
        s = self.settings
        self.student_loaded()  # the models and their weights fail here, before any training
        if self.role_weights("teacher"):
            self._teacher_model = self._load("teacher")
        data = self.data()
        check_entries(s.distill.losses, labelled=data.labelled)
        self.input_specs()
        if not s.distill.losses:
            raise ConfigError("distill.losses: name at least one loss term")
        if not any(e.uses_teacher for e in s.distill.losses):
            raise ConfigError("distill.losses: add a teacher term (e.g. hinton); 'ce' alone is the baseline")
        if self._teacher_needs_training() and not data.labelled:
            raise ConfigError("the data has no labels, so the teacher cannot be trained: give teacher.weights "
                              "(or --teacher-weights), or teacher.train.iterations: 0 if its factory loads trained "
                              "weights")
        self.check_kind(data)

    def check_kind(self, data: UserData) -> None:
        """Kind-specific checks of the data and settings."""

    def _teacher_needs_training(self) -> bool:
        return not self.role_weights("teacher") and self.settings.teacher.train.iterations > 0

    def student_loaded(self) -> _Loaded:
        """The student as its factory builds it (loaded once; weights applied)."""
        if self._student_model is None:
            seed_everything(self.context.seed + 1)  # the same initial student whenever it is loaded
            self._student_model = self._load("student")
        return self._student_model

    def _load(self, role: str) -> _Loaded:
        from compressor.models.spec import load_model_spec

        spec: UserModel = getattr(self.settings, role)
        loaded = load_model_spec(spec.model, **spec.args)
        weights = self.role_weights(role)
        if weights:
            _load_weights(loaded.model, weights, spec.model)
        return _Loaded(loaded.model, loaded.input_specs, loaded.output_names)

    def input_specs(self) -> list[TensorSpec]:
        """The student's declared input (``input_specs``), else one derived from the data's shape."""
        if self._specs is None:
            from compressor.core.tensor_spec import parse_specs

            declared = self.student_loaded().input_specs
            if declared:
                specs = parse_specs(declared)
                if len(specs) != 1:
                    raise ConfigError(f"task '{self.name}' takes models with one input; the student declares "
                                      f"{len(specs)}")
                if specs[0].needs_range:  # an integer input: its range comes from the training data
                    from compressor.core.tensor_spec import fill_value_ranges

                    specs = fill_value_ranges(specs, samples={specs[0].name: self.data().train.inputs},
                                              note=self.context.stage)
                self._specs = specs
            else:
                self._specs = [self._spec_from_data(self.data())]
        return self._specs

    def _spec_from_data(self, data: UserData) -> TensorSpec:
        x = data.train.inputs
        dims = "x".join(str(d) for d in x.shape[1:])
        if self._is_image_source():
            return TensorSpec.parse(f"image:Nx{dims}:float32:0..1")
        low, high = float(x.min()), float(x.max())
        if x.dtype.kind in "iu":
            high += 1
        return TensorSpec.parse(f"input:Nx{dims}:{x.dtype.name}:{low!r}..{high!r}")

    def _is_image_source(self) -> bool:
        return Path(self._source()).is_dir()

    def _source(self) -> str:
        return self.data_source(self.settings.data.source)

    def _layout(self) -> ImageLayout:
        d = self.settings.data
        declared = self.student_loaded().input_specs
        if declared:
            from compressor.core.tensor_spec import parse_specs

            shape = parse_specs(declared)[0].concrete_shape(1)
            if len(shape) == 4 and shape[1] in (1, 3):
                return ImageLayout(channels=shape[1], size=(shape[2], shape[3]))
        size = d.image_size
        if size is not None:
            size = (size[0], size[-1])
        else:
            size = image_size_of(self._source())
        return ImageLayout(channels=d.channels or 3, size=size)

    def data(self) -> UserData:
        """The train and validation splits (read once)."""
        if self._data is None:
            d = self.settings.data
            layout = self._layout() if Path(self._source()).is_dir() else ImageLayout()
            self._data = load_user_data(self._source(), layout=layout, val_fraction=d.val_fraction,
                                        seed=self.context.seed, max_train=d.max_train, max_val=d.max_val)
            log.info("data: %s", self._data.summary()["counts"])
        return self._data

    def _batches(self, split: ArraySet, batch: int, seed: int) -> Iterator[tuple]:
        """Endless shuffled mini-batches, reproducible from ``seed`` (the same for the student and baseline)."""
        rng = np.random.default_rng(seed)
        batch = min(batch, len(split))
        while True:
            order = rng.permutation(len(split))
            for start in range(0, len(order) - batch + 1, batch):
                index = np.sort(order[start:start + batch])
                labels = None if split.labels is None else torch.from_numpy(split.labels[index])
                yield torch.from_numpy(np.ascontiguousarray(split.inputs[index])), labels

    def _chunks(self, inputs: np.ndarray) -> Iterator[np.ndarray]:
        size = self.settings.data.eval_batch
        for start in range(0, len(inputs), size):
            yield np.ascontiguousarray(inputs[start:start + size])

    # ------------------------------------------------------------ training
    def train(self) -> dict[str, RoleModel]:
        teacher = self._teacher()
        seed_everything(self.context.seed + 1)
        initial = self.student_loaded().model
        student = self._student(copy.deepcopy(initial), teacher.model, kd=True)
        baseline = self._student(copy.deepcopy(initial), teacher.model, kd=False)
        with torch.inference_mode():
            self._teacher_val = self._outputs(teacher.model, self.data().val.inputs)
        return {"teacher": teacher, "student": student, "baseline": baseline}

    def _output_names(self, loaded: _Loaded) -> list[str]:
        return list(loaded.output_names or [self.default_output])

    def _teacher(self) -> RoleModel:
        spec, weights = self.settings.teacher, self.role_weights("teacher")
        seed_everything(self.context.seed)
        loaded = self._teacher_model or self._load("teacher")
        self._teacher_model = None
        names = self._output_names(loaded)
        if weights:
            self.context.stage(f"teacher: loading {spec.model} weights {weights}")
            return RoleModel(loaded.model.eval(), names, origin=f"weights {weights}")
        if spec.train.iterations <= 0:
            self.context.stage(f"teacher: {spec.model} as its factory builds it (teacher.train.iterations: 0)")
            return RoleModel(loaded.model.eval(), names, origin="as built by its factory")
        self.context.stage(f"teacher: training {spec.model} for {spec.train.iterations} iterations (cross-entropy)")
        objective = Objective((LossEntry("ce"),), loaded.model.train(), None, spec.train.iterations)
        result = self._fit(objective, spec.train, self.context.seed, "teacher")
        return RoleModel(loaded.model.eval(), names, origin=f"trained {spec.train.iterations} it",
                         training=training_summary(result))

    def _student(self, model: nn.Module, teacher: nn.Module, *, kd: bool) -> RoleModel:
        d, role = self.settings.distill, "student" if kd else "baseline"
        names = self._output_names(self.student_loaded())
        entries = d.losses if kd else self.baseline_losses()
        if not entries:
            self.context.stage("baseline: the untrained student (no label term to train it on without a teacher)")
            return RoleModel(model.eval(), names, origin="untrained (label-free data: no term without a teacher)")
        terms = " + ".join(f"{e.weight:g} {e.name}" for e in entries)
        self.context.stage(f"{role}: training {self.settings.student.model} for {d.train.iterations} iterations "
                           f"({terms}{'' if kd else ', no teacher term'})")
        objective = Objective(entries, model.train(), teacher.eval() if kd else None, d.train.iterations)
        result = self._fit(objective, d.train, self.context.seed + 1, role)
        origin = f"trained {d.train.iterations} it " + ("with KD" if kd else "without KD")
        return RoleModel(model.eval(), names, origin=origin,
                         training=training_summary(result, losses=[e.describe() for e in entries]))

    def baseline_losses(self) -> tuple[LossEntry, ...]:
        """The baseline's terms: cross-entropy on the labels, when there are labels."""
        return (LossEntry("ce"),) if self.data().labelled else ()

    def _fit(self, objective: Objective, stage: StageTrain, seed: int, role: str):
        batches = self._batches(self.data().train, stage.batch, seed)
        schedule = TrainSchedule(iterations=stage.iterations, lr=stage.lr, grad_clip=stage.grad_clip)
        with objective.hooked():
            objective.fit_statistics(self._labelled_chunks(self.data().train))
            first = self._batches(self.data().train, stage.batch, seed)
            objective.prepare(*next(first))
            result = train(lambda batch: objective(*batch), objective.trainable(), batches, schedule, desc=role,
                           state=[objective])
        return result

    def _labelled_chunks(self, split: ArraySet) -> Iterator[tuple]:
        """The split once, in evaluation-sized chunks of (inputs, labels) tensors (labels None without them)."""
        size = self.settings.data.eval_batch
        for start in range(0, len(split), size):
            labels = None if split.labels is None else torch.from_numpy(split.labels[start:start + size])
            yield torch.from_numpy(np.ascontiguousarray(split.inputs[start:start + size])), labels

    def _outputs(self, model: nn.Module, inputs: np.ndarray) -> np.ndarray:
        """``model``'s primary outputs over ``inputs`` (on the device its weights are on), as a CPU array."""
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return np.concatenate([primary_output(model(torch.from_numpy(chunk).to(device))).cpu().numpy()
                               for chunk in self._chunks(inputs)])

    # ------------------------------------------------------------ deployment
    def profile_feed_specs(self) -> list[TensorSpec]:
        return [spec.with_batch(self.settings.profile_batch) for spec in self.input_specs()]

    def calibration_feeds(self, count: int) -> list[dict]:
        """``count`` single-sample feeds spread evenly over the training inputs."""
        inputs = self.data().train.inputs
        step = max(1, len(inputs) // max(count, 1))
        name = self.input_specs()[0].name
        return [{name: np.ascontiguousarray(inputs[(i * step) % len(inputs)][None])} for i in range(count)]

    def runner_outputs(self, runner: Runner) -> np.ndarray:
        """The runner's primary output on every validation input."""
        name = runner.input_specs[0].name
        return np.concatenate([next(iter(runner.infer({name: chunk}).values()))
                               for chunk in self._chunks(self.data().val.inputs)])

    def evaluate(self, runner: Runner) -> dict[str, float]:
        """The kind's metrics of ``runner`` on the validation split, then the user's own."""
        if self._teacher_val is None:
            raise ConfigError("evaluate needs the trained teacher: call train() first")
        metrics = self.kind_metrics(self.runner_outputs(runner), self.data().val, self._teacher_val)
        function = self.settings.metrics.function
        if function:
            metrics.update(_user_metrics(function, runner, self.data().val))
        if self.metric not in metrics:
            raise ConfigError(f"metrics.headline: '{self.metric}' is not among the measured metrics "
                              f"({', '.join(metrics)})")
        return metrics

    @abc.abstractmethod
    def kind_metrics(self, outputs: np.ndarray, val: ArraySet, teacher: np.ndarray) -> dict[str, float]:
        """The kind's metrics of the engine's ``outputs`` on ``val``, against the PyTorch ``teacher``'s outputs."""

    def report_details(self, evaluations: Sequence[Evaluation] = ()) -> dict[str, Any]:
        """The data (source, split, counts), the loss terms and the headline metric."""
        return {"kind": self.name, "data": self.data().summary(), "headline": self.metric,
                "losses": [e.describe() for e in self.settings.distill.losses],
                "baseline_losses": [e.describe() for e in self.baseline_losses()]}

    def report_markdown(self, evaluations: Sequence[Evaluation] = ()) -> str:
        summary = self.data().summary()
        split = summary["split"]
        how = (f"held out {split['fraction']:.0%} (seed {split['seed']})" if split.get("kind") == "held_out"
               else "given")
        terms = " + ".join(f"{e.weight:g} {e.name}" for e in self.settings.distill.losses)
        return (f"## Data and losses\n\n- data: `{summary['source']}`, {summary['counts']['train']} training and "
                f"{summary['counts']['val']} validation samples (validation split {how}), input "
                f"{'x'.join(map(str, summary['input_shape']))}\n- student loss: {terms}; baseline: "
                f"{' + '.join(e.name for e in self.baseline_losses()) or 'untrained'}\n")


class ClassificationTask(GenericTask):
    name = "classification"
    metric = "top1"
    default_output = "logits"

    def check_kind(self, data: UserData) -> None:
        if not data.labelled and self.metric in ("top1", "top5"):
            self.metric = "agreement"  # label-free: agreement with the teacher leads

    def kind_metrics(self, outputs: np.ndarray, val: ArraySet, teacher: np.ndarray) -> dict[str, float]:
        from compressor.distill.metrics.classification import classification_metrics

        return classification_metrics(outputs, val.labels, teacher.argmax(axis=1))

    def bundle_extras(self) -> BundleExtras:
        """``labels.json``: the class names by output index (image folders)."""
        classes = self.data().classes
        return {"labels.json": (json.dumps(list(classes), indent=2) + "\n").encode()} if classes else {}


class EmbeddingTask(GenericTask):
    name = "embedding"
    metric = "cosine"
    default_output = "embedding"

    def check_kind(self, data: UserData) -> None:
        if self._teacher_needs_training():
            raise ConfigError("task 'embedding' cannot train a teacher: give teacher.weights (or "
                              "--teacher-weights), or teacher.train.iterations: 0 if its factory loads trained weights")
        if any(e.name == "ce" for e in self.settings.distill.losses):
            raise ConfigError("distill.losses: 'ce' needs class logits; task 'embedding' distils embeddings")

    def baseline_losses(self) -> tuple[LossEntry, ...]:
        return ()

    def kind_metrics(self, outputs: np.ndarray, val: ArraySet, teacher: np.ndarray) -> dict[str, float]:
        from compressor.distill.metrics.embedding import embedding_metrics

        return embedding_metrics(outputs, teacher)


def _user_metrics(spec: str, runner: Runner, data: ArraySet) -> dict[str, float]:
    from compressor.core.user_code import load_callable

    function = load_callable(spec, error=ConfigError, what="metrics.function")
    try:
        result = function(runner, data)
    except Exception as exc:  # user code can raise anything
        raise ConfigError(f"metrics.function '{spec}' raised {type(exc).__name__}: {exc}") from None
    if not isinstance(result, dict):
        raise ConfigError(f"metrics.function '{spec}' returned {type(result).__name__}, not a dict of numbers")
    return {str(k): float(v) for k, v in result.items()}


def _load_weights(model: nn.Module, path: str, spec: str) -> None:
    """Load a state dict strictly (a whole pickled model is refused in one line saying why)."""
    from compressor.models._weights import load_weights

    load_weights(model, path, name=spec)


TASKS.register("classification")(ClassificationTask)
TASKS.register("embedding")(EmbeddingTask)
