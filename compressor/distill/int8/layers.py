"""What INT8 fake quantization touches in a PyTorch model (its convolutions and linear layers, a split
Concat -> Conv as its parts) and how the INT8 stage runs a model on numpy feeds."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from compressor.core.feeds import Feed

QUANTIZED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

InputGroups = dict[str, Sequence[int]]
"""Module name -> channel sizes of the parts the exporter splits a Concat -> Conv layer's input into."""


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers the Q/DQ exporter turns into INT8 (convolutions and linear layers), by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZED_MODULES)}


def part_convs(layer: nn.Module, parts: Sequence[torch.Tensor],
               weight_fn: Callable[[torch.Tensor], torch.Tensor] = lambda w: w) -> list[torch.Tensor]:
    """The conv of each concatenated part with its slice of ``layer.weight`` (bias on the first), as the
    exporter's split computes them: ``layer(cat(parts)) == sum(outputs)``."""
    outputs, offset = [], 0
    for i, part in enumerate(parts):
        weight = weight_fn(layer.weight[:, offset:offset + part.shape[1]])
        offset += part.shape[1]
        outputs.append(layer._conv_forward(part, weight, layer.bias if i == 0 else None))
    return outputs


def call_model(model: nn.Module, feed: dict[str, torch.Tensor], names: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """``model``'s outputs (always a sequence) on ``feed``, its inputs passed in the order of ``names``."""
    out = model(*(feed[n] for n in names))
    return out if isinstance(out, (tuple, list)) else (out,)


def stack_feeds(feeds: Sequence[Feed], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The ``names`` inputs of ``feeds`` concatenated along the batch axis, as tensors."""
    return {n: torch.from_numpy(np.concatenate([f[n] for f in feeds])) for n in names}
