"""Single-object tracking task (ORTrack-D): a ViT tracker teacher trained with ORR, a depth-halved student
distilled with AFKD and ORR, and a baseline student trained with the same steps and data but no KD.
Evaluation is one-pass tracking of held-out sequences through any engine with the numpy tracker runtime."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.config import ConfigError
from compressor.distill.losses.tracking import TrackingLossWeights
from compressor.distill.tasks.base import (
    TASKS,
    BundleExtras,
    RoleModel,
    RunContext,
    Task,
    training_summary,
)
from compressor.distill.trainer import TrainSchedule
from compressor.runtime import files_for as runtime_files
from compressor.targets.base import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackTrain:
    """One training run: iterations, learning rate (cosine decay), batch of pairs, gradient-norm clip."""

    iterations: int = 2000
    lr: float = 4e-4
    batch: int = 32
    grad_clip: float | None = 1.0


@dataclass(frozen=True)
class TrackModel:
    """A model by registered name; ``weights`` replaces training (teacher) or initialises (student)."""

    model: str
    weights: str | None = None
    train: TrackTrain = field(default_factory=TrackTrain)


@dataclass(frozen=True)
class TrackORR:
    """Cox-process template masking and the template-token invariance loss (training only)."""

    enabled: bool = True
    weight: float = 2e-4
    ratio: float = 0.3
    block: int = 16
    stop_gradient: Literal["masked", "clean", "none"] = "masked"


@dataclass(frozen=True)
class TrackAFKD:
    """AFKD: ``weight * (tau0 + rho * (difficulty - mean))`` times the per-sample feature MSE."""

    weight: float = 2e-5
    tau0: float = 10.0
    rho: float = 10.0
    pairs: tuple[tuple[str, ...], ...] = (("backbone.norm", "backbone.norm"),)


@dataclass(frozen=True)
class TrackDistill:
    """How the student (with KD) and the baseline (without) start: from scratch, or the teacher's first blocks."""

    afkd: TrackAFKD = field(default_factory=TrackAFKD)
    init: Literal["scratch", "teacher"] = "scratch"


@dataclass(frozen=True)
class TrackData:
    """``train``/``val``: ``builtin`` (semi-synthetic aerial sequences) or a folder of sequences."""

    train: str = "builtin"
    val: str = "builtin"
    seed: int = 0
    train_sequences: int = 32
    val_sequences: int = 12
    length: int = 100
    val_length: int | None = None  # default: ``length``
    width: int = 256
    height: int = 192
    max_interval: int = 50
    center_jitter: float = 3.0
    scale_jitter: float = 0.25
    target_side: tuple[float, ...] = (14.0, 30.0)
    occluded_threshold: float = 0.3
    val_max_sequences: int | None = None
    max_memory_mb: int = 2048  # larger built-in data sets are written under the run folder and read lazily


@dataclass(frozen=True)
class TrackSettings:
    teacher: TrackModel
    student: TrackModel
    data: TrackData = field(default_factory=TrackData)
    loss: TrackingLossWeights = field(default_factory=TrackingLossWeights)
    orr: TrackORR = field(default_factory=TrackORR)
    distill: TrackDistill = field(default_factory=TrackDistill)


class TrackingTask(Task):
    name = "tracking"
    settings_cls = TrackSettings
    metric = "auc"

    def __init__(self, settings: TrackSettings, context: RunContext) -> None:
        super().__init__(settings, context)
        self._train_seqs: list | None = None
        self._val_seqs: list | None = None
        self._sizes: tuple[int, int] | None = None

    # ------------------------------------------------------------ data
    def _load(self, source: str, split: str) -> list:
        from compressor.distill.data.aerial import AerialConfig, aerial_sequences
        from compressor.distill.data.tracking import load_sequences

        d = self.settings.data
        if source == "builtin":
            count = d.train_sequences if split == "train" else d.val_sequences
            length = d.length if split == "train" or d.val_length is None else d.val_length
            if len(d.target_side) != 2 or not 0 < d.target_side[0] <= d.target_side[1]:
                raise ConfigError("data.target_side: expected [smallest, largest] target side in pixels")
            config = AerialConfig(width=d.width, height=d.height, length=length,
                                  target_side=(d.target_side[0], d.target_side[1]))
            in_memory = count * length * d.width * d.height * 3 <= d.max_memory_mb * 2**20
            cache = None if in_memory else self.context.out_dir / "data"
            return aerial_sequences(split, count=count, length=length, seed=d.seed, config=config, cache_dir=cache)
        return load_sequences(source)

    def sequences(self) -> tuple[list, list]:
        """(training, held-out) sequences; one folder for both is split: every 4th sequence is held out."""
        if self._train_seqs is None:
            d = self.settings.data
            train_src, val_src = self.data_sources(d.train, d.val, val_beside_folder=None)
            train = self._load(train_src, "train")
            shared = val_src == train_src and train_src != "builtin"  # built-in data has its own val split
            val = train if shared else self._load(val_src, "val")
            if shared:
                if len(train) < 2:
                    raise ConfigError(f"{train_src}: needs at least 2 sequences (one to train on, one held out), "
                                      f"or train/ and val/ folders")
                val, train = train[3::4] or train[-1:], [s for i, s in enumerate(train) if i % 4 != 3] or train[:-1]
            limit = self.settings.data.val_max_sequences
            self._train_seqs, self._val_seqs = train, val[:limit] if limit else val
        return self._train_seqs, self._val_seqs

    def check_data(self) -> None:
        self._model_sizes()
        self.sequences()

    def _model_sizes(self) -> tuple[int, int]:
        """(template, search) sizes shared by teacher and student."""
        if self._sizes is None:
            from compressor.models import create_model

            sizes = {}
            for role in ("teacher", "student"):
                model = create_model(getattr(self.settings, role).model)
                if not hasattr(model, "template_size"):
                    raise ConfigError(f"{role}.model: '{getattr(self.settings, role).model}' is not a tracker")
                sizes[role] = (model.template_size, model.search_size)
            if sizes["teacher"] != sizes["student"]:
                raise ConfigError(f"teacher crops {sizes['teacher']} and student crops {sizes['student']} differ")
            self._sizes = sizes["teacher"]
        return self._sizes

    def _batches(self, run: TrackTrain, seed: int):
        from compressor.distill.data.pairs import PairConfig, PairSampler

        d = self.settings.data
        template, search = self._model_sizes()
        config = PairConfig(template_size=template, search_size=search, max_interval=d.max_interval,
                            center_jitter=d.center_jitter, scale_jitter=d.scale_jitter)
        return PairSampler(self.sequences()[0], config).batches(run.batch, seed)

    # ------------------------------------------------------------ training
    def train(self) -> dict[str, RoleModel]:
        teacher = self._teacher()
        student = self._student(teacher, kd=True)
        baseline = self._student(teacher, kd=False)
        return {"teacher": teacher, "student": student, "baseline": baseline}

    def _objective(self, model, seed: int):
        from compressor.distill.tasks.tracking_train import make_objective

        o = self.settings.orr
        return make_objective(model, self.settings.loss, orr=o.enabled, orr_weight=o.weight, ratio=o.ratio,
                              block=o.block, stop_gradient=o.stop_gradient, seed=seed)

    def _teacher(self) -> RoleModel:
        from compressor.distill.tasks.tracking_train import train_tracker
        from compressor.distill.trainer import seed_everything
        from compressor.models import create_model

        spec, weights = self.settings.teacher, self.role_weights("teacher")
        if weights:
            self.context.stage(f"teacher: loading {spec.model} weights {weights}")
            return RoleModel(_exportable(create_model(spec.model, weights=weights)), _outputs(), f"weights {weights}")
        orr = "with ORR" if self.settings.orr.enabled else "without ORR"
        self.context.stage(f"teacher: training {spec.model} {orr} for {spec.train.iterations} iterations")
        seed_everything(self.context.seed)
        model = create_model(spec.model)
        result = train_tracker(model, self._objective(model, self.context.seed), self._batches(spec.train,
                               self.context.seed), _schedule(spec.train), seed=self.context.seed, desc="teacher")
        return RoleModel(_exportable(model), _outputs(), f"trained {spec.train.iterations} it {orr}",
                         training=_summary(result))

    def _student(self, teacher: RoleModel, *, kd: bool) -> RoleModel:
        from compressor.distill.distillers.afkd import AFKDWeights
        from compressor.distill.tasks.tracking_train import (
            distil_tracker,
            frozen_copy,
            init_from_teacher,
            train_tracker,
        )
        from compressor.distill.trainer import seed_everything
        from compressor.models import create_model

        spec, role, seed = self.settings.student, "student" if kd else "baseline", self.context.seed + 1
        a, init = self.settings.distill.afkd, self.settings.distill.init
        seed_everything(seed)  # same initial weights for student and baseline
        weights = self.role_weights("student")
        model = create_model(spec.model, weights=weights)
        origin = f"weights {weights}" if weights else ("teacher's first blocks" if init == "teacher" else "scratch")
        if init == "teacher" and not weights:
            init_from_teacher(model, teacher.model)
        what = "AFKD + ORR" if kd else "no KD"
        self.context.stage(f"{role}: training {spec.model} from {origin} with {what} for "
                           f"{spec.train.iterations} iterations")
        objective = self._objective(model, seed)
        batches = self._batches(spec.train, seed)  # identical pairs for student and baseline
        if kd:
            result = distil_tracker(model, frozen_copy(teacher.model), objective, batches, _schedule(spec.train),
                                    pairs=[tuple(p) for p in a.pairs], weights=AFKDWeights(a.weight, a.tau0, a.rho),
                                    seed=seed, desc=role)
        else:
            result = train_tracker(model, objective, batches, _schedule(spec.train), seed=seed, desc=role)
        return RoleModel(_exportable(model), _outputs(), f"{origin} + {spec.train.iterations} it {what}",
                         training=_summary(result))

    # ------------------------------------------------------------ deployment
    def input_specs(self) -> list[TensorSpec]:
        template, search = self._model_sizes()
        return [TensorSpec.parse(f"template:Nx3x{template}x{template}:float32:-3..3"),
                TensorSpec.parse(f"search:Nx3x{search}x{search}:float32:-3..3")]

    def profile_feed_specs(self) -> list[TensorSpec]:
        return [spec.with_batch(1) for spec in self.input_specs()]

    def calibration_feeds(self, count: int) -> list[dict]:
        """``count`` template/search pairs from the training sequences, cropped and normalised as the
        tracker runtime does (with the training jitter: the search target is not always centred)."""
        template, search = (spec.name for spec in self.input_specs())
        batches = self._batches(TrackTrain(batch=1), self.context.seed + 99)
        return [{template: t.numpy().astype(np.float32), search: s.numpy().astype(np.float32)}
                for t, s, _ in (next(batches) for _ in range(count))]

    def tracker_config(self):
        from compressor.runtime.tracker import TrackerConfig

        template, search = self._model_sizes()
        return TrackerConfig(template_size=template, search_size=search)

    def evaluate(self, runner: Runner) -> dict:
        """One-pass tracking of every held-out sequence through ``runner``; OPE metrics."""
        from compressor.distill.metrics.tracking import evaluate_sequence, summarize
        from compressor.runtime.tracker import track_sequence

        results, frames, start = [], 0, time.perf_counter()
        config = self.tracker_config()
        for seq in self.sequences()[1]:
            frames_iter = (seq.frame(i) for i in range(len(seq)))
            pred = track_sequence(runner, frames_iter, seq.boxes[0], config)
            results.append(evaluate_sequence(seq.name, pred, seq.boxes, absent=seq.absent, occlusion=seq.occlusion))
            frames += len(seq)
        metrics = summarize(results, occluded_threshold=self.settings.data.occluded_threshold)
        metrics["tracker_fps"] = frames / (time.perf_counter() - start)
        return metrics

    def bundle_extras(self) -> BundleExtras:
        """``tracker.py``: the numpy-only tracker that runs the bundle's engine on frames."""
        return runtime_files("tracker")


def _exportable(model):
    model.set_exportable(True)
    return model.eval()


def _outputs() -> list[str]:
    from compressor.models.vit_tracker import OUTPUT_NAMES

    return list(OUTPUT_NAMES)


def _schedule(run: TrackTrain) -> TrainSchedule:
    return TrainSchedule(iterations=run.iterations, lr=run.lr, grad_clip=run.grad_clip)


def _summary(result) -> dict:
    return training_summary(result, parts=result.parts[-1] if result.parts else {})


TASKS.register("tracking")(TrackingTask)
