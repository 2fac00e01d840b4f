"""ConvLoRA: a low-rank trainable delta on a frozen ``nn.Conv2d`` (loralib's layout), and merging.

The delta is ``(B @ A).view(weight.shape) * alpha / rank`` with ``A`` of shape
``(rank*k, c_in*k)`` (kaiming-uniform, a=sqrt(5)) and ``B`` of shape ``(c_out/groups*k, rank*k)``
(zeros), so a freshly wrapped conv computes exactly what the base conv computes. Note the view
makes the delta's rank up to ``rank * k``, not ``rank``. Merging folds the delta into a plain
``nn.Conv2d`` so the exported graph and parameter count equal the base network's.
"""
from __future__ import annotations

import fnmatch
import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvLoRA(nn.Module):
    """Wrap ``conv`` (frozen, bias included unless ``freeze_bias=False``) with a LoRA delta.

    >>> lora = ConvLoRA(nn.Conv2d(4, 6, 3, padding=1), rank=2, alpha=4.0)
    >>> x = torch.rand(1, 4, 5, 5)
    >>> bool(torch.equal(lora(x), lora.conv(x)))
    True
    """

    def __init__(self, conv: nn.Conv2d, *, rank: int, alpha: float, freeze_bias: bool = True) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"ConvLoRA rank must be >= 1, got {rank}")
        k_h, k_w = conv.kernel_size
        if k_h != k_w:
            raise ValueError(f"ConvLoRA needs a square kernel, got {conv.kernel_size}")
        self.conv, self.rank, self.alpha = conv, rank, float(alpha)
        self.scaling = self.alpha / rank
        weight = conv.weight
        factory = dict(device=weight.device, dtype=weight.dtype)
        self.lora_A = nn.Parameter(torch.zeros(rank * k_h, conv.in_channels * k_h, **factory))
        self.lora_B = nn.Parameter(torch.zeros(conv.out_channels // conv.groups * k_h, rank * k_h, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        conv.weight.requires_grad_(False)
        if conv.bias is not None and freeze_bias:
            conv.bias.requires_grad_(False)

    def delta_weight(self) -> Tensor:
        """The low-rank weight delta, shaped like the base conv's weight."""
        return (self.lora_B @ self.lora_A).view(self.conv.weight.shape) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        weight = c.weight + self.delta_weight()
        if c.padding_mode != "zeros":
            x = F.pad(x, c._reversed_padding_repeated_twice, mode=c.padding_mode)
            return F.conv2d(x, weight, c.bias, c.stride, 0, c.dilation, c.groups)
        return F.conv2d(x, weight, c.bias, c.stride, c.padding, c.dilation, c.groups)

    @torch.no_grad()
    def merge(self) -> nn.Conv2d:
        """A new plain ``nn.Conv2d`` whose weight is base + delta (trainable, detached from this module)."""
        c = self.conv
        merged = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
                           dilation=c.dilation, groups=c.groups, bias=c.bias is not None,
                           padding_mode=c.padding_mode).to(c.weight.device, c.weight.dtype)
        merged.weight.copy_(c.weight + self.delta_weight())
        if c.bias is not None:
            merged.bias.copy_(c.bias)
        return merged

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def apply_conv_lora(model: nn.Module, *, rank: int, alpha: float,
                    target: str | Iterable[str] = "*", freeze_bias: bool = True) -> list[str]:
    """Wrap every ``nn.Conv2d`` whose module path matches ``target`` (shell patterns) in a ConvLoRA.

    Works in place and returns the wrapped paths. Convs already inside a ConvLoRA are skipped;
    a pattern that matches no conv raises ``ValueError`` (a misspelt target is never silent).

    >>> from compressor.models.span import span_tiny
    >>> apply_conv_lora(span_tiny(), rank=8, alpha=16.0, target="upsampler.0")
    ['upsampler.0']
    """
    patterns = [target] if isinstance(target, str) else list(target)
    wrapped_bases = {id(m.conv) for m in model.modules() if isinstance(m, ConvLoRA)}
    convs = [(path, m) for path, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and id(m) not in wrapped_bases]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(path, pattern) for path, _ in convs):
            raise ValueError(f"LoRA target '{pattern}' matches no nn.Conv2d in {type(model).__name__}")
    chosen = [(p, m) for p, m in convs if any(fnmatch.fnmatchcase(p, pat) for pat in patterns)]
    for path, conv in chosen:
        _set_submodule(model, path, ConvLoRA(conv, rank=rank, alpha=alpha, freeze_bias=freeze_bias))
    return [path for path, _ in chosen]


def merge_conv_lora(model: nn.Module) -> nn.Module:
    """Replace every ConvLoRA in ``model`` by its merged plain conv, in place; returns ``model``."""
    paths = [path for path, m in model.named_modules() if isinstance(m, ConvLoRA)]
    for path in paths:
        if not path:  # the model itself is a ConvLoRA
            return model.merge()
        _set_submodule(model, path, model.get_submodule(path).merge())
    return model


def mark_only_lora_trainable(model: nn.Module) -> int:
    """Freeze every parameter except LoRA ``A``/``B``; returns the number of trainable values."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.rsplit(".", 1)[-1] in ("lora_A", "lora_B"))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
