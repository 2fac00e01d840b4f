"""INT8 fake quantization of a PyTorch model, as the exporter will quantize it: per-output-channel symmetric
weights, per-tensor activations at the ranges given (straight-through gradients). The quantizers of one
:func:`fake_quantized` block share a :class:`QuantizerSwitch`, so the same model can also run in float."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.distill.int8.layers import InputGroups, part_convs, quantized_layers
from compressor.distill.int8.ranges import ActivationRange, LayerRanges


class QuantizerSwitch:
    """Whether the fake quantizers of one :func:`fake_quantized` block are on (they all read it)."""

    def __init__(self) -> None:
        self.on = True

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        """Within the block, the model runs un-quantized (the float weights, no activation quantizer)."""
        self.on = False
        try:
            yield
        finally:
            self.on = True


def fake_quant_weight(weight: torch.Tensor, half_range: bool = False) -> torch.Tensor:
    """Symmetric per-output-channel INT8 of a weight (straight-through gradient); ``half_range``: NNCF's
    overflow fix (scale = max / 63.5, levels -64..64), which it applies to the first conv of each input."""
    flat = weight.detach().reshape(weight.shape[0], -1).abs().amax(dim=1)
    if half_range:  # as OpenVINO stores it: integers floor(w / scale + 0.5), scale = max / 63.5
        scale = (flat / 63.5).clamp_min(1e-12).view(-1, *([1] * (weight.dim() - 1)))
        quantized = torch.floor(weight / scale + 0.5).clamp(-64, 64) * scale
        return weight + (quantized - weight).detach()
    scale = (flat / 127.0).clamp_min(1e-12).float()
    zero = torch.zeros(weight.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


def fake_quant_activation(x: torch.Tensor, quant_range: ActivationRange | None) -> torch.Tensor:
    """Per-tensor INT8 of ``x`` in ``quant_range`` (None leaves ``x`` in float); straight-through gradient."""
    if quant_range is None:
        return x
    if quant_range.symmetric:
        return torch.fake_quantize_per_tensor_affine(x, max(quant_range.high, 1e-12) / 127.0, 0, -127, 127)
    low, high = quant_range.low, quant_range.high
    step = max(high - low, 1e-12) / 255.0
    clipped = x.clamp(low, high)
    return clipped + (torch.round((clipped - low) / step) * step + low - clipped).detach()


def fake_quant_layer_input(x: torch.Tensor, quant_range: ActivationRange | None) -> torch.Tensor:
    """:func:`fake_quant_activation` for a layer's input, where a zero range (an input never seen non-zero)
    also means "leave in float"."""
    if quant_range is None or quant_range.is_zero:
        return x
    return fake_quant_activation(x, quant_range)


def fake_quant_split(layer: nn.Module, x: torch.Tensor, sizes: Sequence[int], ranges: LayerRanges) -> torch.Tensor:
    """A split Concat -> Conv under INT8: each part's input, weight slice (per channel) and output quantized
    with its own range, then summed in float."""
    parts = [fake_quant_activation(part, r) for part, r in zip(torch.split(x, list(sizes), dim=1), ranges.inputs)]
    outputs = part_convs(layer, parts, fake_quant_weight)
    return sum(fake_quant_activation(out, r) for out, r in zip(outputs, ranges.outputs))


class _PerChannelWeight(nn.Module):
    """:func:`fake_quant_weight` as a parametrization of a layer's ``weight``, while ``switch`` is on."""

    def __init__(self, switch: QuantizerSwitch, half_range: bool = False) -> None:
        super().__init__()
        self.switch, self.half_range = switch, half_range

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(weight, self.half_range) if self.switch.on else weight


@contextlib.contextmanager
def fake_quantized(model: nn.Module, ranges: dict[str, LayerRanges], input_groups: InputGroups | None = None,
                   half_range: Sequence[str] = ()) -> Iterator[QuantizerSwitch]:
    """Within the block, ``model``'s quantized layers see INT8 weights and INT8 activations at ``ranges``
    (a layer without ranges: weights only); inputs of layers in ``input_groups`` get one range per channel
    group; layers named in ``half_range`` get half the weight range (NNCF's overflow fix). Yields the
    switch that turns every quantizer of the block off and on. On exit the trained float weights stay."""
    switch = QuantizerSwitch()
    handles, layers, groups = [], quantized_layers(model), input_groups or {}
    for name, layer in layers.items():
        layer_ranges = ranges.get(name)
        if name in groups and layer_ranges is not None:  # the whole split layer is recomputed from its input
            handles.append(layer.register_forward_hook(
                lambda m, args, out, sizes=groups[name], r=layer_ranges:
                fake_quant_split(m, args[0], sizes, r) if switch.on else out))
            continue
        parametrize.register_parametrization(layer, "weight", _PerChannelWeight(switch, name in half_range))
        if layer_ranges is None:
            continue
        handles.append(layer.register_forward_pre_hook(
            lambda _m, args, r=layer_ranges: (fake_quant_layer_input(args[0], r.inputs[0]) if switch.on else args[0],
                                              *args[1:])))
        handles.append(layer.register_forward_hook(
            lambda _m, _args, out, r=layer_ranges: fake_quant_activation(out, r.outputs[0]) if switch.on else out))
    try:
        yield switch
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers.values():  # keep the trained float weights, drop the quantizer
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
