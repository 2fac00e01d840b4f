"""Activation ranges for INT8 fake quantization: one typed range (symmetric or asymmetric), the ranges of one
layer, the two estimators that mirror an exporter's calibration, and min-max calibration of a PyTorch model.

The Q/DQ exporter (ONNX Runtime, TensorRT, OpenVINO reading the Q/DQ model) quantizes every quantized layer's
input and output per tensor with a symmetric int8 range: :class:`SymmetricAbsMax`. NNCF for OpenVINO quantizes
conv inputs only, asymmetric, with the mean over samples of the per-sample minimum and maximum:
:class:`NncfMeanMinMax`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from compressor.core.feeds import Feed
from compressor.distill.int8.layers import (
    InputGroups,
    call_model,
    part_convs,
    quantized_layers,
    stack_feeds,
)


@dataclass(frozen=True)
class ActivationRange:
    """A per-tensor INT8 activation range. Symmetric (the Q/DQ exporter's): ``high`` is the largest |value|,
    quantized to the 255 levels -127..127 of step ``high / 127``. Asymmetric (OpenVINO's FakeQuantize as NNCF
    sets it): 256 levels from ``low`` to ``high``, no zero-point rounding."""

    low: float
    high: float
    symmetric: bool = False

    def __post_init__(self) -> None:
        if self.symmetric and self.low != -self.high:
            raise ValueError(f"a symmetric range is -absmax..absmax, not {self.low}..{self.high}")

    @classmethod
    def absmax(cls, value: float) -> ActivationRange:
        """The symmetric range -value..value."""
        return cls(-value, value, symmetric=True)

    @classmethod
    def between(cls, low: float, high: float) -> ActivationRange:
        """The asymmetric range low..high."""
        return cls(low, high)

    @property
    def is_zero(self) -> bool:
        """A symmetric range of no width: the tensor was never seen non-zero."""
        return self.symmetric and self.high <= 0


@dataclass(frozen=True)
class LayerRanges:
    """The activation ranges of one quantized layer: of its input and its output, or, for a layer the exporter
    splits (a Concat -> Conv), of each part's input and each part conv's output. None: left in float."""

    inputs: tuple[ActivationRange | None, ...]
    outputs: tuple[ActivationRange | None, ...]


class RangeEstimator(abc.ABC):
    """How an exporter calibrates activation ranges over feeds: symmetric or not, and whether it quantizes
    layer outputs too."""

    symmetric: ClassVar[bool] = True
    quantize_outputs: ClassVar[bool] = True

    @abc.abstractmethod
    def widen(self, seen: Any, tensor: torch.Tensor) -> Any:
        """The running statistic ``seen`` (None at first) updated with one feed's ``tensor``."""

    @abc.abstractmethod
    def finish(self, seen: Any, feeds: int) -> ActivationRange | None:
        """The range from the statistic over ``feeds`` feeds (None: the tensor was never seen)."""


@dataclass(frozen=True)
class SymmetricAbsMax(RangeEstimator):
    """The Q/DQ exporter's min-max calibration: the largest |value| over all feeds, a symmetric range, at every
    quantized layer's input and output."""

    symmetric: ClassVar[bool] = True
    quantize_outputs: ClassVar[bool] = True

    def widen(self, seen: float | None, tensor: torch.Tensor) -> float:
        return max(seen or 0.0, float(tensor.abs().max()))

    def finish(self, seen: float | None, feeds: int) -> ActivationRange | None:
        return None if seen is None else ActivationRange.absmax(seen)


@dataclass(frozen=True)
class NncfMeanMinMax(RangeEstimator):
    """NNCF's placement and estimator for OpenVINO: conv inputs only (outputs stay float), the mean over feeds
    of the per-feed minimum and maximum, widened as NNCF does (zero included, on the grid)."""

    symmetric: ClassVar[bool] = False
    quantize_outputs: ClassVar[bool] = False

    def widen(self, seen: tuple[float, float] | None, tensor: torch.Tensor) -> tuple[float, float]:
        low, high = float(tensor.min()), float(tensor.max())
        return (low, high) if seen is None else (seen[0] + low, seen[1] + high)

    def finish(self, seen: tuple[float, float] | None, feeds: int) -> ActivationRange | None:
        return None if seen is None else nncf_asymmetric_range(seen[0] / feeds, seen[1] / feeds)


SYMMETRIC_ABSMAX = SymmetricAbsMax()
NNCF_MEAN_MIN_MAX = NncfMeanMinMax()


def nncf_asymmetric_range(low: float, high: float) -> ActivationRange:
    """``low..high`` widened as NNCF does for an 8-bit asymmetric quantizer: zero included and exactly on the
    grid (NNCF's own function, so the simulation and the deployed model agree)."""
    from nncf.common.quantization.structs import QuantizationScheme, QuantizerConfig
    from nncf.quantization.fake_quantize import asymmetric_range
    from nncf.tensor import Tensor

    config = QuantizerConfig(num_bits=8, mode=QuantizationScheme.ASYMMETRIC, per_channel=False)
    tuned = asymmetric_range(Tensor(np.array(low, np.float32)), Tensor(np.array(high, np.float32)), config)
    return ActivationRange.between(float(tuned[0].data), float(tuned[1].data))


@torch.no_grad()
def activation_ranges(model: nn.Module, feeds: Sequence[Feed], names: Sequence[str],
                      input_groups: InputGroups | None = None,
                      estimator: RangeEstimator = SYMMETRIC_ABSMAX) -> dict[str, LayerRanges]:
    """Min-max calibration of every quantized layer's activations over ``feeds`` (one at a time), by module
    name, with ``estimator``'s statistic; a layer in ``input_groups`` gets one range per channel group."""
    seen: dict[str, tuple[list, list]] = {}
    groups = input_groups or {}

    def record(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        sizes = groups.get(name)
        if sizes:  # per part: inputs and the part convs' outputs
            inputs, outputs = seen.setdefault(name, ([None] * len(sizes), [None] * len(sizes)))
            parts = torch.split(args[0], list(sizes), dim=1)
            inputs[:] = [estimator.widen(old, part) for old, part in zip(inputs, parts)]
            if estimator.quantize_outputs:
                outputs[:] = [estimator.widen(old, out) for old, out in zip(outputs, part_convs(module, parts))]
            return
        inputs, outputs = seen.setdefault(name, ([None], [None]))
        if args and torch.is_floating_point(args[0]):
            inputs[0] = estimator.widen(inputs[0], args[0])
        if estimator.quantize_outputs:
            outputs[0] = estimator.widen(outputs[0], output)

    handles = [layer.register_forward_hook(lambda module, args, output, name=name: record(name, module, args, output))
               for name, layer in quantized_layers(model).items()]
    try:
        for feed in feeds:
            call_model(model, stack_feeds([feed], names), names)
    finally:
        for handle in handles:
            handle.remove()
    return {name: LayerRanges(tuple(estimator.finish(s, len(feeds)) for s in inputs),
                              tuple(estimator.finish(s, len(feeds)) for s in outputs))
            for name, (inputs, outputs) in seen.items()}


def ranges_from_exporter(scales: dict[str, dict[str, float]], fallback: dict[str, LayerRanges],
                         input_groups: InputGroups | None = None) -> dict[str, LayerRanges]:
    """The activation ranges the Q/DQ exporter chose (:func:`compressor.targets.quantize.qdq_layer_scales`,
    keyed by weight name, a part's as ``name.weight_partN``) as symmetric ranges; ``fallback`` (min-max) where
    the exporter has none, so training sees the exporter's clipping too (percentile or entropy calibration)."""

    def chosen(found: dict[str, float], key: str, other: ActivationRange | None) -> ActivationRange | None:
        return ActivationRange.absmax(found[key] * 127) if key in found else other

    ranges = {}
    for name, layer in fallback.items():
        sizes = (input_groups or {}).get(name)
        keys = [f"{name}.weight_part{i}" for i in range(len(sizes))] if sizes else [f"{name}.weight"]
        found = [scales.get(key, {}) for key in keys]
        ranges[name] = LayerRanges(tuple(chosen(f, "input", r) for f, r in zip(found, layer.inputs)),
                                   tuple(chosen(f, "output", r) for f, r in zip(found, layer.outputs)))
    return ranges
