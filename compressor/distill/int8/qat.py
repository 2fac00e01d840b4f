"""Quantization-aware fine-tuning by self-distillation, matched to the exporter that will quantize.

Post-training INT8 of small image-to-image networks (SPAN-Tiny loses ~1.6 dB PSNR) spreads its error over
every layer, so keeping layers in float gives the speed back. Instead, the FP32 model is fine-tuned while
seeing the quantizer the exporter will apply (a :class:`QatMirror`, which
:meth:`compressor.distill.int8.schemes.QuantScheme.qat_mirror` derives from the exported ONNX). The Q/DQ
exporter's: per-output-channel symmetric INT8 weights, per-tensor symmetric INT8 activations at every
quantized layer's input and output, the exporter's own scales. NNCF's for OpenVINO: the same weights,
asymmetric per-tensor activations at conv inputs only, with NNCF's range estimator (on a VNNI CPU the
simulation equals what OpenVINO computes). The loss is L1 between the fake-quantized model and the frozen
FP32 model on the same inputs (no labels needed), so any recipe can use it. The activation ranges stay fixed
while the weights adapt to them. The fine-tuned float weights are then quantized by the usual path with
``ranges_from`` the FP32 model: the ranges the scheme trained with, not a re-estimate on the moved weights,
which is not what they were trained for (published SPAN-Tiny after 1000 steps: 31.19 dB with the trained
ranges, 30.68 without).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from compressor.core.feeds import Feed
from compressor.distill.int8.fake_quant import fake_quantized
from compressor.distill.int8.layers import (
    InputGroups,
    call_model,
    quantized_layers,
    stack_feeds,
)
from compressor.distill.int8.ranges import (
    SYMMETRIC_ABSMAX,
    RangeEstimator,
    activation_ranges,
    ranges_from_exporter,
)
from compressor.distill.int8.record import QatRecord
from compressor.distill.trainer import TrainSchedule, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QatOptions:
    """Fine-tuning length and step size; ``batch`` feeds are concatenated per step."""

    iterations: int = 300
    lr: float = 2e-5
    batch: int = 4
    seed: int = 0
    float_anchor: float = 0.0  # > 0: also keep the un-quantized model close to FP32 (limits weight drift)


@dataclass(frozen=True)
class QatMirror:
    """What fake quantization copies from the exporter for one model: how it places and calibrates activation
    quantizers, the split Concat -> Conv layers (module name -> channel sizes), the exporter's own activation
    scales (Q/DQ: :func:`compressor.targets.quantize.qdq_layer_scales` of a Q/DQ model of it; they replace
    min-max ranges) and the layers whose weights it quantizes with half the range (NNCF)."""

    activations: RangeEstimator = SYMMETRIC_ABSMAX
    input_groups: InputGroups = field(default_factory=dict)
    exporter_scales: dict[str, dict[str, float]] | None = None
    half_range: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.exporter_scales and not self.activations.symmetric:
            raise ValueError("exporter scales are the Q/DQ exporter's: they apply to its symmetric activations only")


@dataclass(frozen=True)
class QatResult:
    """A fine-tuned copy of the model and what the fine-tuning did: the relative L1 gap to FP32 under INT8
    before and after, the last loss, wall time."""

    model: nn.Module
    iterations: int
    lr: float
    samples: int
    seconds: float
    layers: int
    relative_l1_before: float
    relative_l1_after: float
    final_loss: float

    def to_record(self, scheme: str) -> QatRecord:
        """The run report's record of this fine-tuning for scheme ``scheme`` (not yet used by any engine)."""
        return QatRecord(iterations=self.iterations, scheme=scheme, seconds=self.seconds,
                         relative_l1_before=self.relative_l1_before, relative_l1_after=self.relative_l1_after,
                         details={"lr": self.lr, "samples": self.samples, "layers": self.layers,
                                  "final_loss": self.final_loss})


def _relative_l1(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over outputs of mean |output - target| relative to mean |target|."""
    return sum((o - t).abs().mean() / t.abs().mean().clamp_min(1e-12) for o, t in zip(outputs, targets))


def quantization_aware_finetune(model: nn.Module, feeds: Sequence[Feed], input_names: Sequence[str],
                                options: QatOptions = QatOptions(), mirror: QatMirror = QatMirror(), *,
                                desc: str = "qat") -> QatResult:
    """A copy of ``model`` fine-tuned to match the FP32 ``model`` while fake-quantized as the exporter
    ``mirror`` describes will quantize it (``model`` itself is left alone)."""
    if not feeds:
        raise ValueError("quantization-aware fine-tuning needs calibration feeds")
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    student = copy.deepcopy(model).eval()  # eval: batch-norm statistics and dropout stay as deployed
    for p in student.parameters():
        p.requires_grad_(torch.is_floating_point(p))
    names = list(input_names)
    ranges = activation_ranges(reference, feeds, names, mirror.input_groups, mirror.activations)
    if mirror.exporter_scales:
        ranges = ranges_from_exporter(mirror.exporter_scales, ranges, mirror.input_groups)
    gen = np.random.default_rng(options.seed)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            order = gen.permutation(len(feeds))
            for start in range(0, len(order), options.batch):
                yield stack_feeds([feeds[i] for i in order[start:start + options.batch]], names)

    @torch.no_grad()
    def gap() -> float:
        total = 0.0
        for feed in feeds:
            x = stack_feeds([feed], names)
            total += float(_relative_l1(call_model(student, x, names), call_model(reference, x, names)))
        return total / len(feeds)

    torch.manual_seed(options.seed)
    start = time.perf_counter()
    with fake_quantized(student, ranges, mirror.input_groups, mirror.half_range) as quantizers:
        def loss(batch: dict[str, torch.Tensor]):
            with torch.no_grad():
                targets = call_model(reference, batch, names)
            value = _relative_l1(call_model(student, batch, names), targets)
            if options.float_anchor > 0:
                with quantizers.off():
                    value = value + options.float_anchor * _relative_l1(call_model(student, batch, names), targets)
            return value, {}

        before = gap()
        result = train(loss, student.parameters(), batches(), TrainSchedule(iterations=options.iterations,
                                                                             lr=options.lr), desc=desc)
        after = gap()
    student.requires_grad_(False)
    log.info("QAT: relative L1 to FP32 under INT8 %.4f -> %.4f", before, after)
    return QatResult(model=student.eval(), iterations=options.iterations, lr=options.lr, samples=len(feeds),
                     seconds=round(time.perf_counter() - start, 2), layers=len(quantized_layers(student)),
                     relative_l1_before=before, relative_l1_after=after, final_loss=result.final_loss)
