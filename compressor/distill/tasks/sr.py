"""Super-resolution task (DSCLoRA): SPAN teacher, SPAN-Tiny + ConvLoRA student distilled with
spatial-affinity KD, and a no-KD baseline trained with the same steps and data."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.config import ConfigError
from compressor.distill.distillers import AffinityKDWeights, FeatureAffinityDistiller
from compressor.distill.losses import SpatialAffinityLoss
from compressor.distill.tasks.base import (
    TASKS,
    RoleModel,
    RunContext,
    Task,
    training_summary,
)
from compressor.distill.trainer import TrainSchedule, cycle, seed_everything, train
from compressor.targets.base import Runner


@dataclass(frozen=True)
class SRTrain:
    """One training stage: iterations, learning rate, batch of HR patches."""

    iterations: int = 1000
    lr: float = 5e-4
    batch: int = 8
    patch: int = 128
    reparam: bool = False  # train SPAN's Conv3XC branches, then fuse (slower, usually better)


@dataclass(frozen=True)
class SRModel:
    """A model by registered name; ``weights`` (a checkpoint) replaces training."""

    model: str
    weights: str | None = None
    train: SRTrain = field(default_factory=SRTrain)


@dataclass(frozen=True)
class SRLoRA:
    """ConvLoRA ranks and scales: block convs, and the two head convs (conv_2, upsampler)."""

    block_rank: int = 2
    block_alpha: float = 4.0
    head_rank: int = 8
    head_alpha: float = 16.0


@dataclass(frozen=True)
class SRLossWeights:
    reconstruction: float = 1.0
    output: float = 0.5
    affinity: float = 10.0


@dataclass(frozen=True)
class SRDistill:
    """DSCLoRA distillation of the student base against the frozen teacher."""

    train: SRTrain = field(default_factory=lambda: SRTrain(iterations=500, lr=2e-4))
    lora: SRLoRA = field(default_factory=SRLoRA)
    loss: SRLossWeights = field(default_factory=SRLossWeights)
    pairs: tuple[tuple[str, ...], ...] = tuple((f"block_{i}", f"block_{i}") for i in range(1, 7))
    max_positions: int = 1024


@dataclass(frozen=True)
class SRData:
    """``train``/``val``: ``builtin`` (scikit-image photographs) or a folder of HR images."""

    train: str = "builtin"
    val: str = "builtin"
    scale: int = 4
    repeat: int = 16
    val_max_size: int = 512


@dataclass(frozen=True)
class SRSettings:
    teacher: SRModel
    student: SRModel
    data: SRData = field(default_factory=SRData)
    distill: SRDistill = field(default_factory=SRDistill)
    export_input: str = "image:Nx3xH=64xW=64:float32:0..1"
    profile_input: str = "image:1x3x128x128:float32:0..1"


class SuperResolutionTask(Task):
    name = "super-resolution"
    settings_cls = SRSettings
    metric = "psnr_y"

    def __init__(self, settings: SRSettings, context: RunContext) -> None:
        super().__init__(settings, context)
        data = settings.data
        self.train_source, self.val_source = self.data_sources(data.train, data.val, val_beside_folder=data.val)
        self._val_images: list | None = None

    # ------------------------------------------------------------ inputs
    @classmethod
    def check_settings(cls, settings: SRSettings) -> None:
        """The export and profile inputs are one RGB image each (N x 3 x H x W floats); training patches are
        whole multiples of the scale."""
        for key in ("export_input", "profile_input"):
            spec = _image_spec(getattr(settings, key), key)
            if key == "export_input":
                spec.concrete_shape(2)  # every symbolic axis but the batch has an example size
        scale = settings.data.scale
        for where, stage in (("teacher.train", settings.teacher.train), ("student.train", settings.student.train),
                             ("distill.train", settings.distill.train)):
            if stage.patch % scale:
                raise ConfigError(f"{where}.patch: {stage.patch} is not a multiple of data.scale ({scale})")

    def check_data(self) -> None:
        """Every image of both splits is opened and decoded (a corrupt file is named now, not after training),
        and every training image is at least as large as the largest training patch."""
        s = self.settings
        stages = [s.distill.train] + [getattr(s, role).train for role in ("teacher", "student")
                                      if not self.role_weights(role)]
        patch = max((stage.patch for stage in stages if stage.iterations > 0), default=s.data.scale)
        self._dataset(self.train_source, train=True).check_images(min_size=patch, decode=False)
        self._dataset(self.val_source, train=False).check_images(min_size=self.settings.data.scale, decode=True)

    def _dataset(self, source: str, *, train: bool, patch: int | None = None, seed: int = 0):
        from compressor.distill.data import ImageFolderSRDataset, SkimageSRDataset

        scale = self.settings.data.scale
        repeat = self.settings.data.repeat if train else 1
        kwargs = dict(scale=scale, patch_size=patch if train else None, seed=seed, repeat=repeat)
        if source == "builtin":
            return SkimageSRDataset(split="train" if train else "val", augment=train, **kwargs)
        return ImageFolderSRDataset(source, augment=train, **kwargs)

    def _batches(self, stage: SRTrain, seed: int):
        from torch.utils.data import DataLoader

        dataset = self._dataset(self.train_source, train=True, patch=stage.patch, seed=seed)

        def epoch(index: int):
            dataset.set_epoch(index)
            order = torch.Generator().manual_seed(seed * 7919 + index)
            return DataLoader(dataset, batch_size=stage.batch, shuffle=True, generator=order, drop_last=False)

        return ((pair.lr, pair.hr) for pair in cycle(epoch))

    # ------------------------------------------------------------ training
    def train(self) -> dict[str, RoleModel]:
        teacher = self._train_or_load("teacher", self.settings.teacher)
        base = self._train_or_load("student", self.settings.student)
        student = self._distil(base, teacher, kd=True)
        baseline = self._distil(base, teacher, kd=False)
        return {"teacher": teacher, "student": student, "baseline": baseline}

    def _train_or_load(self, role: str, spec: SRModel) -> RoleModel:
        from compressor.models import create_model

        weights = self.role_weights(role)
        if weights:
            self.context.stage(f"{role}: loading {spec.model} weights {weights}")
            model = create_model(spec.model, weights=weights, upscale=self.settings.data.scale)
            return RoleModel(model.eval(), ["sr"], origin=f"weights {weights}")
        self.context.stage(f"{role}: training {spec.model} for {spec.train.iterations} iterations")
        seed_everything(self.context.seed)
        model = create_model(spec.model, fused=not spec.train.reparam, upscale=self.settings.data.scale).train()
        l1 = nn.L1Loss()

        def step(batch):
            lr, hr = batch
            loss = l1(model(lr), hr)
            return loss, {"rec": loss.item()}

        result = train(step, model.parameters(), self._batches(spec.train, self.context.seed),
                       _schedule(spec.train), desc=role, state=[model])
        if spec.train.reparam:
            model.fuse()
        return RoleModel(model.eval(), ["sr"], origin=f"trained {spec.train.iterations} it",
                         training=training_summary(result))

    def _distil(self, base: RoleModel, teacher: RoleModel, *, kd: bool) -> RoleModel:
        from compressor.models.layers.conv_lora import (
            apply_conv_lora,
            mark_only_lora_trainable,
            merge_conv_lora,
        )
        from compressor.models.span import DSCLORA_BLOCK_TARGET, DSCLORA_HEAD_TARGETS

        d = self.settings.distill
        role = "student" if kd else "baseline"
        self.context.stage(f"{role}: ConvLoRA fine-tuning for {d.train.iterations} iterations "
                           f"({'affinity KD + output KD + L1' if kd else 'L1 only, no KD'})")
        seed_everything(self.context.seed + 1)
        model = copy.deepcopy(base.model)
        apply_conv_lora(model, rank=d.lora.block_rank, alpha=d.lora.block_alpha, target=DSCLORA_BLOCK_TARGET)
        apply_conv_lora(model, rank=d.lora.head_rank, alpha=d.lora.head_alpha, target=DSCLORA_HEAD_TARGETS)
        trainable = mark_only_lora_trainable(model)
        w = d.loss
        weights = AffinityKDWeights(w.reconstruction, w.output, w.affinity) if kd else AffinityKDWeights(1.0, 0.0, 0.0)
        pairs = [(p[0], p[1]) for p in d.pairs]
        distiller = FeatureAffinityDistiller(model.train(), teacher.model, pairs, weights,
                                             SpatialAffinityLoss(max_positions=d.max_positions))
        result = train(lambda batch: distiller(*batch), model.parameters(),
                       self._batches(d.train, self.context.seed + 1), _schedule(d.train), desc=role,
                       state=[distiller])
        merged = merge_conv_lora(model).eval()
        return RoleModel(merged, ["sr"], origin=f"{base.origin} + ConvLoRA {d.train.iterations} it"
                         + (" with KD" if kd else " without KD"),
                         training=training_summary(result, trainable_params=trainable))

    # ------------------------------------------------------------ deployment
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec.parse(self.settings.export_input)]

    def profile_feed_specs(self) -> list[TensorSpec]:
        return [TensorSpec.parse(self.settings.profile_input)]

    def calibration_feeds(self, count: int) -> list[dict]:
        """LR patches at the export example size, spread over the training images and crops."""
        spec = self.input_specs()[0]
        lr_size = spec.concrete_shape(1)[-1]
        dataset = self._dataset(self.train_source, train=True, patch=lr_size * self.settings.data.scale,
                                seed=self.context.seed + 99)
        step = max(1, len(dataset) // count)
        return [{spec.name: dataset[i * step % len(dataset)].lr[None].numpy().astype(np.float32)}
                for i in range(count)]

    def _validation(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(LR NCHW float32, HR HWC float64) for each validation image, centre-cropped to ``val_max_size``."""
        if self._val_images is None:
            from compressor.distill.metrics import to_hwc

            images = []
            size, scale = self.settings.data.val_max_size, self.settings.data.scale
            dataset = self._dataset(self.val_source, train=False)
            for pair in (dataset[i] for i in range(len(dataset))):
                lr, hr = _centre_crop(pair.lr, pair.hr, size // scale, scale)
                images.append((lr[None].numpy().astype(np.float32), to_hwc(hr)))
            self._val_images = images
        return self._val_images

    def evaluate(self, runner: Runner) -> dict[str, float]:
        from compressor.distill.metrics import (
            psnr_rgb,
            psnr_y,
            quantize,
            ssim_y,
            to_hwc,
        )

        scale = self.settings.data.scale
        name = runner.input_specs[0].name
        scores = {"psnr_y": [], "ssim_y": [], "psnr_rgb": []}
        for lr, hr in self._validation():
            sr = quantize(to_hwc(next(iter(runner.infer({name: lr}).values()))))
            scores["psnr_y"].append(psnr_y(sr, hr, shave=scale))
            scores["ssim_y"].append(ssim_y(sr, hr, shave=scale))
            scores["psnr_rgb"].append(psnr_rgb(sr, hr, shave=scale))
        return {key: float(np.mean(values)) for key, values in scores.items()} | {"images": len(self._validation())}


def _image_spec(text: str, key: str) -> TensorSpec:
    """``text`` parsed as one RGB image input, or a one-line ConfigError naming ``key``."""
    from compressor.core.errors import InputSpecError

    try:
        spec = TensorSpec.parse(text)
    except InputSpecError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if len(spec.shape) != 4 or spec.shape[1] != 3 or not spec.dtype.startswith("float"):
        raise ConfigError(f"{key}: '{text}' must be one RGB image input NAME:Nx3xHxW of floats "
                          f"(e.g. image:Nx3xH=64xW=64:float32:0..1)")
    return spec


def _centre_crop(lr: torch.Tensor, hr: torch.Tensor, lr_size: int, scale: int):
    height, width = lr.shape[1:]
    top, left = max(0, (height - lr_size) // 2), max(0, (width - lr_size) // 2)
    lr = lr[:, top: top + lr_size, left: left + lr_size]
    hr = hr[:, top * scale: (top + lr.shape[1]) * scale, left * scale: (left + lr.shape[2]) * scale]
    return lr, hr


def _schedule(stage: SRTrain) -> TrainSchedule:
    return TrainSchedule(iterations=stage.iterations, lr=stage.lr)


TASKS.register("super-resolution")(SuperResolutionTask)
