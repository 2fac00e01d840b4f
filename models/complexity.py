"""Model size: parameter count and multiply-accumulates (conv and linear layers, as fvcore counts them)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or frozen (as the NTIRE ESR challenge counts them)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, specs: Sequence) -> int:
    """Multiply-accumulates of conv, linear and LSTM layers for one forward pass at ``specs``.

    ``specs`` are TensorSpecs with concrete shapes (batch 1). Counted with forward hooks, so the figure
    is for the graph actually run.
    """
    from compressor.core.feeds import random_feed

    feed = random_feed(list(specs), batch=1, rng=np.random.default_rng(0))
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel = int(np.prod(module.kernel_size)) * (module.in_channels // module.groups)
        total += output.numel() * kernel

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    def lstm_hook(module: nn.LSTM, inputs, _output) -> None:
        nonlocal total
        total += lstm_macs(module, inputs[0].shape)

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, nn.LSTM):
            handles.append(module.register_forward_hook(lstm_hook))
    try:
        with torch.inference_mode():
            model.eval()(*[torch.from_numpy(feed[s.name]) for s in specs])
    finally:
        for handle in handles:
            handle.remove()
    return int(total)


def lstm_macs(module: nn.LSTM, input_shape: Sequence[int]) -> int:
    """Gate matmuls of an ``nn.LSTM`` over an input of ``input_shape``: ``4 H (in + H)`` per step, direction
    and layer (element-wise gate arithmetic not counted, as for other layers' activations)."""
    steps, batch = (input_shape[1], input_shape[0]) if module.batch_first else (input_shape[0], input_shape[1])
    if len(input_shape) == 2:  # unbatched
        steps, batch = input_shape[0], 1
    directions = 2 if module.bidirectional else 1
    hidden = module.proj_size or module.hidden_size
    per_step = 0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else hidden * directions
        per_step += 4 * module.hidden_size * (width + hidden) * directions
    return int(batch * steps * per_step)
