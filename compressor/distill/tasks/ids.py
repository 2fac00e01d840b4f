"""CAN intrusion detection (LSF-IDM): a BERT-style teacher, the 2-layer BiLSTM student distilled with
cross-entropy + temperature-scaled KL (and optional semantic-feature fusion), and the same BiLSTM trained
without KD as the baseline. The headline metric is the fuzzy class's F1: DoS and spoofing are nearly trivial.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.config import ConfigError
from compressor.distill.data.can import CLASSES, WindowSet
from compressor.distill.distillers.logit_kd import (
    FeaturePair,
    LogitKDistiller,
    LogitKDWeights,
    teacher_outputs,
)
from compressor.distill.losses.kd import FeatureFusionLoss
from compressor.distill.metrics.ids import flat_metrics, ids_report
from compressor.distill.tasks.base import (
    TASKS,
    BundleExtras,
    Evaluation,
    RoleModel,
    RunContext,
    Task,
    training_summary,
)
from compressor.distill.trainer import TrainSchedule, seed_everything, train
from compressor.runtime.can_tokens import VOCAB, sequence_length
from compressor.targets.base import Runner

log = logging.getLogger(__name__)
TABLE_METRICS = ("fuzzy_f1", "fuzzy_precision", "fuzzy_recall", "fuzzy_fnr", "fuzzy_fpr", "dos_f1", "gear_f1",
                 "rpm_f1", "attack_f1", "attack_fnr", "attack_fpr", "error_rate")


@dataclass(frozen=True)
class IdsTrain:
    """Adam with cosine decay (compressor.distill.trainer); ``select_every`` > 0 validates that often and
    keeps the weights with the best validation fuzzy F1 (macro F1 when the data has no fuzzy frames)."""

    iterations: int = 2000
    lr: float = 1e-3
    batch: int = 256
    grad_clip: float | None = 1.0
    select_every: int = 0
    threads: int | None = None  # torch threads while training (a small RNN trains fastest on one)


@dataclass(frozen=True)
class IdsModel:
    """A registered model; ``weights`` (a state-dict checkpoint) replaces the teacher's training, or starts
    the student and the baseline from the same point."""

    model: str
    weights: str | None = None
    dropout: float | None = None
    train: IdsTrain = field(default_factory=IdsTrain)


@dataclass(frozen=True)
class IdsGenerate:
    """Generated captures, one per attack kind (``normal`` for attack-free), in seconds of bus traffic."""

    seconds: dict[str, float] = field(default_factory=lambda: {"dos": 60.0, "fuzzy": 120.0, "gear": 60.0,
                                                               "rpm": 60.0})
    injected_fraction: float = 0.14


@dataclass(frozen=True)
class IdsData:
    """``source``: ``generate`` or a Car-Hacking file / folder (``--data`` overrides it)."""

    source: str = "generate"
    generate: IdsGenerate = field(default_factory=IdsGenerate)
    attack: str = "auto"  # the class of T rows: auto (from the file name), dos, fuzzy, gear, rpm or normal
    skip_malformed: bool = False
    max_frames_per_file: int | None = None
    window: int = 4
    context: Literal["ids", "full"] = "ids"
    id_min_share: float | None = 0.0002  # IDs rarer than this in training share one UNK token (None: none do)
    split: tuple[float, ...] = (0.6, 0.2, 0.2)
    gap: int = 64
    max_train_windows: int | None = None
    max_val_windows: int | None = None
    max_test_windows: int | None = None
    eval_batch: int = 2048


@dataclass(frozen=True)
class IdsDistill:
    """``label * CE + soft * T^2 KL + feature * MSE(W f_student, f_teacher)`` (``feature_pair``: module paths)."""

    label: float = 0.5
    soft: float = 0.5
    feature: float = 0.0
    temperature: float = 2.0
    feature_pair: tuple[str, ...] = ("features", "pooler")


@dataclass(frozen=True)
class IdsSettings:
    teacher: IdsModel
    student: IdsModel
    data: IdsData = field(default_factory=IdsData)
    distill: IdsDistill = field(default_factory=IdsDistill)
    profile_batch: int = 1


class CanIntrusionTask(Task):
    name = "can-intrusion"
    settings_cls = IdsSettings
    metric = "fuzzy_f1"

    def __init__(self, settings: IdsSettings, context: RunContext) -> None:
        super().__init__(settings, context)
        self.seq_len = sequence_length(settings.data.window, settings.data.context)
        self._windows: dict[str, WindowSet] | None = None
        self.id_vocab: list[int] | None = None
        self._data_summary: dict[str, Any] = {}

    # ------------------------------------------------------------ data
    def check_data(self) -> None:
        if len(self.settings.distill.feature_pair) != 2:
            raise ConfigError("distill.feature_pair: give [student_module_path, teacher_module_path]")
        self.windows()

    def windows(self) -> dict[str, WindowSet]:
        """Train / val / test windows (built once: captures are generated or read, then split in time)."""
        if self._windows is None:
            from compressor.distill.data.can import (
                build_windows,
                generated_captures,
                load_captures,
            )

            d = self.settings.data
            source = self.data_source(d.source)
            if source == "generate":
                captures = generated_captures(d.generate.seconds, seed=self.context.seed,
                                              injected_fraction=d.generate.injected_fraction)
            else:
                captures = load_captures(source, attack=d.attack, skip_malformed=d.skip_malformed,
                                         max_frames=d.max_frames_per_file)
            limits = {"train": d.max_train_windows, "val": d.max_val_windows, "test": d.max_test_windows}
            self._windows, self.id_vocab = build_windows(captures, window=d.window, context=d.context,
                                                         fractions=d.split, gap=max(d.gap, d.window),
                                                         max_windows=limits, id_min_share=d.id_min_share)
            self._data_summary = {
                "source": source, "window": d.window, "context": d.context, "tokens_per_window": self.seq_len,
                "id_vocabulary": None if self.id_vocab is None else [f"{i:03x}" for i in self.id_vocab],
                "captures": [{"name": c.name, "attack": c.attack, "frames": len(c.frames),
                              "injected": int((c.frames.flag == 1).sum()), "malformed_skipped": c.malformed,
                              "seconds": float(c.frames.ts[-1] - c.frames.ts[0])} for c in captures],
                "splits": {name: w.class_counts() for name, w in self._windows.items()}}
            log.info("CAN windows: %s", self._data_summary["splits"])
        return self._windows

    def _batches(self, windows: WindowSet, stage: IdsTrain, seed: int,
                 teacher: tuple[np.ndarray, np.ndarray | None] | None = None) -> Iterator[list]:
        """Shuffled mini-batches, reproducible from ``seed`` (the same for the student and the baseline)."""
        rng = np.random.default_rng(seed)
        batch = min(stage.batch, len(windows))
        while True:
            order = rng.permutation(len(windows))
            for start in range(0, len(order) - batch + 1, batch):
                index = order[start:start + batch]
                tokens, labels = windows.batch(index)
                item = [torch.from_numpy(tokens), torch.from_numpy(labels)]
                if teacher is not None:
                    item += [torch.from_numpy(teacher[0][index]),
                             None if teacher[1] is None else torch.from_numpy(teacher[1][index])]
                yield item

    def _chunks(self, windows: WindowSet) -> Iterator[np.ndarray]:
        size = self.settings.data.eval_batch
        for start in range(0, len(windows), size):
            yield windows.tokens[start:start + size].astype(np.int64)

    # ------------------------------------------------------------ training
    def train(self) -> dict[str, RoleModel]:
        teacher = self._teacher()
        student = self._student(teacher, kd=True)
        baseline = self._student(teacher, kd=False)
        return {"teacher": teacher, "student": student, "baseline": baseline}

    def _create(self, spec: IdsModel, weights: str | None):
        """``spec``'s model for this data's windows, with ``weights`` loaded when given."""
        from compressor.models import create_model

        kwargs = {"seq_len": self.seq_len, "vocab": VOCAB, "classes": len(CLASSES)}
        if spec.dropout is not None:
            kwargs["dropout"] = spec.dropout
        return create_model(spec.model, weights=weights, **kwargs)

    def _teacher(self) -> RoleModel:
        spec, weights = self.settings.teacher, self.role_weights("teacher")
        seed_everything(self.context.seed)
        if weights:
            self.context.stage(f"teacher: loading {spec.model} weights {weights}")
            return RoleModel(self._create(spec, weights).eval(), ["logits"], origin=f"weights {weights}")
        model = self._create(spec, None)
        self.context.stage(f"teacher: training {spec.model} for {spec.train.iterations} iterations (cross-entropy)")
        distiller = LogitKDistiller(model.train(), LogitKDWeights(label=1.0, soft=0.0))
        result, chosen = self._fit(distiller, model, spec.train, self.context.seed, None, "teacher")
        return RoleModel(model.eval(), ["logits"], origin=f"trained {spec.train.iterations} it",
                         training=_summary(result, chosen))

    def _student(self, teacher: RoleModel, *, kd: bool) -> RoleModel:
        spec, d = self.settings.student, self.settings.distill
        role = "student" if kd else "baseline"
        weights = LogitKDWeights(d.label, d.soft, d.feature) if kd else LogitKDWeights(label=1.0, soft=0.0)
        terms = f"{d.label} CE + {d.soft} KL(T={d.temperature})" + (f" + {d.feature} feature fusion" if
                                                                    d.feature else "")
        self.context.stage(f"{role}: training {spec.model} for {spec.train.iterations} iterations "
                           f"({terms if kd else 'cross-entropy only, no KD'})")
        seed_everything(self.context.seed + 1)  # the student and the baseline start from the same weights
        model = self._create(spec, self.role_weights("student"))
        pair = FeaturePair(*d.feature_pair)
        targets, fusion = None, None
        if weights.uses_teacher:
            targets = teacher_outputs(teacher.model, self._chunks(self.windows()["train"]),
                                      feature_path=pair.teacher if weights.feature > 0 else None)
            if weights.feature > 0:
                fusion = FeatureFusionLoss(_feature_width(model, pair.student, self.seq_len), targets[1].shape[1])
        distiller = LogitKDistiller(model.train(), weights, temperature=d.temperature, pair=pair, fusion=fusion)
        result, chosen = self._fit(distiller, model, spec.train, self.context.seed + 1, targets, role)
        origin = f"trained {spec.train.iterations} it " + ("with KD" if kd else "without KD")
        return RoleModel(model.eval(), ["logits"], origin=origin, training=_summary(result, chosen))

    def _fit(self, distiller: LogitKDistiller, model, stage: IdsTrain, seed: int, targets, role: str):
        """Train; with ``select_every``, keep the weights that score best on the validation windows."""
        best = _BestWeights(model, stage, self._selection_score)
        batches = self._batches(self.windows()["train"], stage, seed, targets)
        schedule = TrainSchedule(iterations=stage.iterations, lr=stage.lr, grad_clip=stage.grad_clip)
        with _torch_threads(stage.threads):
            result = train(lambda batch: distiller(*batch), distiller.parameters(), batches, schedule, desc=role,
                           on_step=best, state=[distiller])
        if best.state is not None:
            model.load_state_dict(best.state)
        return result, {"iteration": best.iteration, "val_score": best.score} if best.state else None

    @torch.inference_mode()
    def _selection_score(self, model) -> float:
        model.eval()
        val = self.windows()["val"]
        device = next(model.parameters()).device  # the training's device (a GPU with --device cuda)
        logits = np.concatenate([model(torch.from_numpy(t).to(device)).float().cpu().numpy()
                                 for t in self._chunks(val)])
        report = ids_report(val.labels, logits.argmax(axis=1), CLASSES)
        fuzzy = report["classes"]["fuzzy"]["f1"]
        return float(fuzzy if fuzzy == fuzzy else report["macro_f1"])

    # ------------------------------------------------------------ deployment
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec.parse(f"tokens:Nx{self.seq_len}:int64:0..{VOCAB}")]

    def profile_feed_specs(self) -> list[TensorSpec]:
        return [TensorSpec.parse(f"tokens:{self.settings.profile_batch}x{self.seq_len}:int64:0..{VOCAB}")]

    def calibration_feeds(self, count: int) -> list[dict]:
        """``count`` batches of training windows drawn across the whole split (attack bursts included),
        256 windows at most per batch."""
        train = self.windows()["train"]
        rng = np.random.default_rng(self.context.seed + 99)
        size = max(1, min(256, len(train) // max(count, 1)))
        order = rng.permutation(len(train))[:size * count]
        name = self.input_specs()[0].name
        return [{name: train.tokens[np.sort(order[i:i + size])].astype(np.int64)} for i in range(0, len(order), size)]

    def evaluate(self, runner: Runner) -> dict[str, float]:
        return self.evaluate_with_findings(runner).metrics

    def evaluate_with_findings(self, runner: Runner) -> Evaluation:
        """The table metrics of ``runner`` on the test windows; findings: its full detection report (per class,
        confusion matrix, per capture)."""
        test = self.windows()["test"]
        name = runner.input_specs[0].name
        logits = np.concatenate([next(iter(runner.infer({name: tokens}).values())) for tokens in self._chunks(test)])
        predicted = logits.argmax(axis=1)
        report = ids_report(test.labels, predicted, CLASSES)
        report["per_capture"] = _per_capture(test, predicted, self.data_summary()["captures"])
        flat = flat_metrics(report)
        return Evaluation(runner.name, {key: flat[key] for key in TABLE_METRICS}, report)

    def data_summary(self) -> dict[str, Any]:
        """Source, windowing, captures and per-split class counts of the data (loaded once)."""
        self.windows()
        return self._data_summary

    def bundle_extras(self) -> BundleExtras:
        """``detect.py`` (the streaming detector, numpy-only) and ``ids_config.json``, the tokeniser settings
        it reads (the ID vocabulary comes from the training data)."""
        from compressor.runtime import files_for as runtime_files

        d = self.settings.data
        self.windows()
        config = {"window": d.window, "context": d.context, "classes": list(CLASSES), "input": "tokens",
                  "output": "logits", "tokens_per_window": self.seq_len, "vocab": VOCAB,
                  "id_vocab": self.id_vocab}
        return {**runtime_files("can-detector"), "ids_config.json": (json.dumps(config, indent=2) + "\n").encode()}

    def report_details(self, evaluations: Sequence[Evaluation] = ()) -> dict[str, Any]:
        return {"data": self.data_summary(), "engines": _engine_reports(evaluations)}

    def report_markdown(self, evaluations: Sequence[Evaluation] = ()) -> str:
        from compressor.distill.tasks.ids_report import render_details

        return render_details(self.data_summary(), _engine_reports(evaluations))


def _engine_reports(evaluations: Sequence[Evaluation]) -> dict[str, dict[str, Any]]:
    """``{engine: detection report}`` of each evaluated engine (the last evaluation of an engine counts)."""
    return {e.engine: e.findings for e in evaluations if e.findings}


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _feature_width(model, path: str, seq_len: int) -> int:
    from compressor.distill.hooks import FeatureHooks

    with FeatureHooks(model, [path]) as hooks, torch.no_grad():
        model.eval()(torch.zeros(2, seq_len, dtype=torch.int64))
        width = hooks.features()[0].shape[-1]
    model.train()
    return int(width)


def _per_capture(windows: WindowSet, predicted: np.ndarray, captures: list[dict]) -> dict[str, dict[str, float]]:
    """Attack-vs-normal scores inside each capture (the papers score each Car-Hacking file on its own)."""
    from compressor.distill.metrics.ids import attack_scores, confusion_matrix

    out = {}
    for c, info in enumerate(captures):
        mask = windows.sources == c
        if mask.any():
            cm = confusion_matrix(windows.labels[mask], predicted[mask], len(CLASSES))
            scores = attack_scores(cm)
            out[info["name"]] = {k: scores[k] for k in ("f1", "precision", "recall", "fnr", "fpr", "support")}
    return out


def _summary(result, chosen) -> dict:
    return training_summary(result, **({"selected": chosen} if chosen else {}))


TASKS.register("can-intrusion")(CanIntrusionTask)


class _BestWeights:
    """``on_step`` for training with ``select_every``: validates every so often and keeps the best-scoring
    weights (ties: the later, longer-trained ones). Checkpointed with the training, so a resumed run keeps the
    best weights seen before it was killed."""

    def __init__(self, model, stage: IdsTrain, score: Callable[[Any], float]) -> None:
        self.model, self.stage, self._score = model, stage, score
        self.score, self.iteration, self.state = -1.0, None, None

    def __call__(self, iteration: int) -> None:
        every = self.stage.select_every
        if not every or (iteration % every and iteration != self.stage.iterations):
            return
        score = self._score(self.model)
        self.model.train()
        if score >= self.score:
            self.score, self.iteration = score, iteration
            self.state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"score": self.score, "iteration": self.iteration, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.score, self.iteration, self.state = saved["score"], saved["iteration"], saved["state"]
