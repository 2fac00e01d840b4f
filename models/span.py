"""SPAN (Swift Parameter-free Attention Network, NTIRE 2024 ESR winner) and the DSCLoRA student.

Forward, for ``x`` RGB in [0, 1] (NCHW): ``x = (x - mean) * 255``; ``f0 = conv_1(x)``; six SPABs;
``y = conv_cat(cat[f0, conv_2(out_6), out_1, silu(block_6.c1(out_5))])``; 3x3 conv + PixelShuffle.
There is no global residual and no clamp. State-dict keys of the fused form match the published
checkpoints (``conv_1.eval_conv.weight``, ``block_1.c1_r.eval_conv.weight``, ..., ``conv_cat.weight``,
``upsampler.0.weight``), so those load with ``strict=True``.

>>> model = span_tiny()                       # fused (inference) form, random weights
>>> model(torch.rand(1, 3, 16, 16)).shape
torch.Size([1, 3, 64, 64])
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from compressor.core.errors import ModelSpecError
from compressor.models._registry import register_model
from compressor.models._weights import load_weights, read_state_dict
from compressor.models.layers.conv3xc import Conv3XC
from compressor.models.layers.conv_lora import apply_conv_lora, mark_only_lora_trainable

RGB_MEAN = (0.4488, 0.4371, 0.4040)
NUM_BLOCKS = 6


class SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XC, SiLU between, ``(h3 + x) * (sigmoid(h3) - 0.5)``.

    Returns ``(out, a1)`` where ``a1 = SiLU(c1_r(x))``: upstream applies SiLU in place, so the
    first-conv feature it hands to SPAN's concat is the *activated* one.
    """

    def __init__(self, channels: int, *, fused: bool = False) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels, gain=2, fused=fused)
        self.c2_r = Conv3XC(channels, channels, gain=2, fused=fused)
        self.c3_r = Conv3XC(channels, channels, gain=2, fused=fused)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a1 = self.act(self.c1_r(x))
        h3 = self.c3_r(self.act(self.c2_r(a1)))
        attention = torch.sigmoid(h3) - 0.5
        return (h3 + x) * attention, a1


class SPAN(nn.Module):
    """SPAN with ``feature_channels`` width and ``upscale`` factor, in training or fused form.

    Training form (``fused=False``) carries Conv3XC branches; :meth:`fuse` turns it into the
    inference form in place. KD features: hook ``block_i`` and take element 0 of its output tuple.
    """

    def __init__(self, *, feature_channels: int = 48, upscale: int = 4, in_channels: int = 3,
                 out_channels: int = 3, fused: bool = False) -> None:
        super().__init__()
        c = feature_channels
        self.feature_channels, self.upscale = c, upscale
        mean = RGB_MEAN if in_channels == 3 else (0.0,) * in_channels
        # Not in any published checkpoint, so a non-persistent buffer keeps state dicts compatible.
        self.register_buffer("mean", torch.tensor(mean).view(1, in_channels, 1, 1), persistent=False)
        self.img_range = 255.0
        self.conv_1 = Conv3XC(in_channels, c, gain=2, fused=fused)
        for i in range(1, NUM_BLOCKS + 1):
            setattr(self, f"block_{i}", SPAB(c, fused=fused))
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.conv_2 = Conv3XC(c, c, gain=2, fused=fused)
        self.upsampler = nn.Sequential(nn.Conv2d(c, out_channels * upscale**2, 3, padding=1),
                                       nn.PixelShuffle(upscale))
        self.input_specs = [f"image:Nx{in_channels}xH=64xW=64:float32:0..1"]
        self.output_names = ["sr"]
        self.preprocessing = (f"RGB in [0,1], NCHW; mean subtraction and x255 are inside the graph; output is the "
                              f"x{upscale} image, not clamped (clamp to [0,1] and round to 8 bits)")

    def blocks(self) -> list[SPAB]:
        """The six SPABs in order."""
        return [getattr(self, f"block_{i}") for i in range(1, NUM_BLOCKS + 1)]

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.mean) * self.img_range
        f0 = self.conv_1(x)
        first, *middle, last = self.blocks()
        out_b1, _ = first(f0)
        out = out_b1
        for block in middle:
            out, _ = block(out)
        out_b6, a1_b6 = last(out)
        y = self.conv_cat(torch.cat([f0, self.conv_2(out_b6), out_b1, a1_b6], dim=1))
        return self.upsampler(y)

    @property
    def fused(self) -> bool:
        """True when every Conv3XC is in its single-conv inference form."""
        return all(m.fused for m in self.modules() if isinstance(m, Conv3XC))

    def fuse(self) -> "SPAN":
        """Fuse every Conv3XC into its 3x3 ``eval_conv`` in place (exact); returns ``self``."""
        for module in self.modules():
            if isinstance(module, Conv3XC):
                module.fuse()
        return self


def _training_form_state(state: Mapping[str, Tensor], path: str | Path, name: str) -> dict[str, Tensor]:
    """Keep a checkpoint's training branches; drop the (derived) ``eval_conv`` copies upstream saves too."""
    if not any(".sk." in k for k in state):
        raise ModelSpecError(f"weights {Path(path).name} hold only fused convs; build '{name}' with fused=True")
    return {k: v for k, v in state.items() if ".eval_conv." not in k}


def _create_span(name: str, channels: int, *, weights: str | Path | None, fused: bool, upscale: int) -> SPAN:
    model = SPAN(feature_channels=channels, upscale=upscale, fused=fused)
    if weights is not None:
        state = read_state_dict(weights)
        if not fused:
            state = _training_form_state(state, weights, name)
        load_weights(model, weights, name=name, state=state)
    return model


@register_model()
def span_tiny(*, weights: str | Path | None = None, fused: bool = True, upscale: int = 4) -> SPAN:
    """SPAN-Tiny, 26 channels: 130,828 inference parameters at x4 (NTIRE 2024 team39; DSCLoRA's base).

    >>> span_tiny(weights="shared/reference/span/spantiny26.pth")  # doctest: +SKIP
    """
    return _create_span("span_tiny", 26, weights=weights, fused=fused, upscale=upscale)


@register_model()
def span_28(*, weights: str | Path | None = None, fused: bool = True, upscale: int = 4) -> SPAN:
    """SPAN with 28 channels: 150,688 inference parameters at x4 (NTIRE 2024 ESR winning entry)."""
    return _create_span("span_28", 28, weights=weights, fused=fused, upscale=upscale)


@register_model()
def span_48(*, weights: str | Path | None = None, fused: bool = True, upscale: int = 4) -> SPAN:
    """SPAN with 48 channels (the upstream default): 426,288 inference parameters at x4."""
    return _create_span("span_48", 48, weights=weights, fused=fused, upscale=upscale)


# Where DSCLoRA puts ConvLoRA: every SPAB conv, plus the pixel-shuffle conv and the conv before it.
DSCLORA_BLOCK_TARGET = "block_*.c*_r.eval_conv"
DSCLORA_HEAD_TARGETS = ("conv_2.eval_conv", "upsampler.0")


@register_model()
def dsclora_tiny(*, weights: str | Path | None = None, upscale: int = 4, block_rank: int = 2,
                 block_alpha: float = 4.0, head_rank: int = 8, head_alpha: float = 16.0) -> SPAN:
    """DSCLoRA student: fused SPAN-Tiny with ConvLoRA on 20 convs; only LoRA ``A``/``B`` train.

    ``weights`` is a fused SPAN-Tiny checkpoint (the frozen base) or a checkpoint of this student
    (with ``lora_A``/``lora_B`` keys). Defaults (rank, alpha) follow the upstream ``lora_config``.
    After :func:`compressor.models.layers.merge_conv_lora` the model is exactly ``span_tiny`` (130,828 params).

    >>> from compressor.models.layers import merge_conv_lora
    >>> student = dsclora_tiny()
    >>> sum(p.numel() for p in merge_conv_lora(student).parameters())
    130828
    """
    state = read_state_dict(weights) if weights is not None else None
    has_lora = state is not None and any("lora_" in key for key in state)
    model = SPAN(feature_channels=26, upscale=upscale, fused=True)
    if state is not None and not has_lora:
        load_weights(model, weights, name="dsclora_tiny", state=state)
    apply_conv_lora(model, rank=block_rank, alpha=block_alpha, target=DSCLORA_BLOCK_TARGET)
    apply_conv_lora(model, rank=head_rank, alpha=head_alpha, target=DSCLORA_HEAD_TARGETS)
    mark_only_lora_trainable(model)
    if has_lora:
        load_weights(model, weights, name="dsclora_tiny", state=state)
    return model
