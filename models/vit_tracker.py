"""ORTrack-style single-stream ViT tracker (CVPR 2025) and its depth-halved student ORTrack-D.

One shared patch embedding turns the template (``T x T``) and the search region (``S x S``) into tokens;
each set gets its own zero-initialised position embedding; ``cat([template, search])`` (template first,
no CLS token) runs through pre-norm ViT blocks and a final LayerNorm. The last ``(S/p)**2`` tokens go to
the OSTrack center head: three conv branches (``C -> C/2 -> C/4 -> C/8`` with BN + ReLU, then 1x1) give
the score map (sigmoid, clamped), the size map (sigmoid; w, h normalised to the search crop) and the
offset map (raw; sub-cell offset in cell units), each on the ``S/p x S/p`` grid.

The network is static: no masking, no token elimination. ORR's masked pass is a training-time second
call of :attr:`VitTracker.backbone` (see ``compressor.distill.losses.orr``). KD features: hook ``backbone.norm``
(B x tokens x dim, post-LayerNorm, template tokens first). State-dict keys of the backbone follow timm's
ViT (``backbone.patch_embed.proj``, ``backbone.blocks.0.attn.qkv``, ...), so DeiT weights map directly.

>>> model = ortrack_d_cpu().eval()
>>> score, size, offset = model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 128, 128))
>>> tuple(score.shape), tuple(size.shape), tuple(offset.shape)
((1, 1, 8, 8), (1, 2, 8, 8), (1, 2, 8, 8))
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressor.models._registry import register_model
from compressor.models._weights import load_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_NAMES = ["score_map", "size_map", "offset_map"]


class Attention(nn.Module):
    """Multi-head self-attention; ``fused`` uses ``scaled_dot_product_attention`` (training speed), the
    explicit softmax(QK^T)V form is used for export (runtimes dislike fused attention kernels)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.fused = True

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, GELU MLP), as DeiT's."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VitBackbone(nn.Module):
    """Shared patch embedding, separate zero-initialised position embeddings, blocks, final LayerNorm."""

    def __init__(self, *, template_size: int, search_size: int, patch: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_template_tokens = (template_size // patch) ** 2
        self.num_search_tokens = (search_size // patch) ** 2
        self.patch_embed = PatchEmbed(patch, dim)
        self.pos_embed_z = nn.Parameter(torch.zeros(1, self.num_template_tokens, dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, self.num_search_tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(_init_vit)

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        z = self.patch_embed(template) + self.pos_embed_z
        x = self.patch_embed(search) + self.pos_embed_x
        tokens = torch.cat([z, x], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


def _init_vit(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _branch(in_dim: int, channels: int, out: int) -> nn.Sequential:
    widths = [in_dim, channels, channels // 2, channels // 4, channels // 8]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], out, 1))


class CenterHead(nn.Module):
    """OSTrack's center predictor: score (1), size (2) and offset (2) maps from the search tokens."""

    def __init__(self, in_dim: int, channels: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.score, self.size, self.offset = _branch(in_dim, channels, 1), _branch(in_dim, channels, 2), \
            _branch(in_dim, channels, 2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, search_tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, c = search_tokens.shape
        fmap = search_tokens.transpose(1, 2).reshape(b, c, self.grid, self.grid)  # token t -> (t // g, t % g)
        score = torch.clamp(torch.sigmoid(self.score(fmap)), 1e-4, 1 - 1e-4)
        return score, torch.sigmoid(self.size(fmap)), self.offset(fmap)


class VitTracker(nn.Module):
    """Backbone + center head; ``forward(template, search) -> (score_map, size_map, offset_map)``.

    Inputs are ImageNet-normalised RGB crops (NCHW float32); see ``compressor.runtime.tracker``.
    """

    output_names = OUTPUT_NAMES

    def __init__(self, *, template_size: int = 128, search_size: int = 256, patch: int = 16, dim: int = 192,
                 depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0, head_channels: int = 256) -> None:
        super().__init__()
        if template_size % patch or search_size % patch:
            raise ValueError(f"template {template_size} and search {search_size} must be multiples of patch {patch}")
        self.template_size, self.search_size, self.patch = template_size, search_size, patch
        self.grid = search_size // patch
        self.backbone = VitBackbone(template_size=template_size, search_size=search_size, patch=patch, dim=dim,
                                    depth=depth, heads=heads, mlp_ratio=mlp_ratio)
        self.box_head = CenterHead(dim, head_channels, self.grid)
        t, s = template_size, search_size
        self.input_specs = [f"template:Nx3x{t}x{t}:float32:-3..3", f"search:Nx3x{s}x{s}:float32:-3..3"]
        self.preprocessing = (f"template: crop of 2x the target side resized to {t}x{t}; search: crop of 4x the "
                              f"target side resized to {s}x{s}; RGB/255, ImageNet mean/std normalised, NCHW; "
                              f"outputs on a {self.grid}x{self.grid} grid (Hann window + argmax outside the graph)")

    def forward_head(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The head on the search tokens of backbone output ``tokens``."""
        return self.box_head(tokens[:, self.backbone.num_template_tokens:])

    def forward(self, template: Tensor, search: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.forward_head(self.backbone(template, search))

    def set_exportable(self, exportable: bool = True) -> "VitTracker":
        """Use explicit attention (no fused kernel) when ``exportable``; returns ``self``."""
        for module in self.modules():
            if isinstance(module, Attention):
                module.fused = not exportable
        return self


def _create(name: str, weights: str | Path | None, **kwargs) -> VitTracker:
    model = VitTracker(**kwargs)
    if weights is not None:
        load_weights(model, weights, name=name)
    return model


@register_model()
def ortrack_deit_tiny(*, weights: str | Path | None = None) -> VitTracker:
    """ORTrack-DeiT teacher: DeiT-Tiny (dim 192, depth 12, 3 heads), template 128, search 256: 8,040,645 params."""
    return _create("ortrack_deit_tiny", weights, dim=192, depth=12, heads=3)


@register_model()
def ortrack_d(*, weights: str | Path | None = None) -> VitTracker:
    """ORTrack-D-DeiT student: the same network with depth 6: 5,371,461 params."""
    return _create("ortrack_d", weights, dim=192, depth=6, heads=3)


@register_model()
def ortrack_cpu(*, weights: str | Path | None = None) -> VitTracker:
    """CPU quick-run teacher: template 64, search 128 (8x8 grid), dim 128, depth 4, head width 64."""
    return _create("ortrack_cpu", weights, template_size=64, search_size=128, dim=128, depth=4, heads=4,
                   head_channels=64)


@register_model()
def ortrack_d_cpu(*, weights: str | Path | None = None) -> VitTracker:
    """CPU quick-run student: :func:`ortrack_cpu` with half the depth (2 blocks)."""
    return _create("ortrack_d_cpu", weights, template_size=64, search_size=128, dim=128, depth=2, heads=4,
                   head_channels=64)
