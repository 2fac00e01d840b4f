"""Small built-in models, one per kind the toolchain must handle: a conv net, a two-input transformer,
an embedding + BiLSTM over int64 tokens. They are the default subjects of the spine's commands and tests."""
from __future__ import annotations

import torch
from torch import nn

from compressor.models._registry import register_model


class TinySRNet(nn.Module):
    """A small x2 super-resolution conv net (conv -> ReLU blocks -> PixelShuffle) with a bicubic skip."""

    input_specs = ["image:Nx3xH=32xW=32:float32:0..1"]
    output_names = ["sr"]
    preprocessing = "RGB in [0,1], NCHW; output is the x2 image in [0,1] (not clamped)"

    def __init__(self, channels: int = 16, blocks: int = 3, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)]
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        base = nn.functional.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base + self.body(image)


class TinyPairTransformer(nn.Module):
    """A single-stream transformer over two images (template and search), as a tracker backbone is."""

    input_specs = ["template:Nx3x32x32:float32:0..1", "search:Nx3x64x64:float32:0..1"]
    output_names = ["score", "box"]
    preprocessing = "RGB in [0,1], NCHW; template 32x32, search 64x64"

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4, patch: int = 8) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.pos_template = nn.Parameter(torch.zeros(1, (32 // patch) ** 2, dim))
        self.pos_search = nn.Parameter(torch.zeros(1, (64 // patch) ** 2, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.score_head = nn.Linear(dim, 1)
        self.box_head = nn.Linear(dim, 4)

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.patch_embed(template).flatten(2).transpose(1, 2) + self.pos_template
        x = self.patch_embed(search).flatten(2).transpose(1, 2) + self.pos_search
        tokens = self.norm(self.encoder(torch.cat([z, x], dim=1)))[:, z.shape[1]:]
        return torch.sigmoid(self.score_head(tokens)).squeeze(-1), torch.sigmoid(self.box_head(tokens.mean(1)))


class TinyTokenBiLSTM(nn.Module):
    """Embedding + 2-layer BiLSTM classifier over windows of int64 tokens (as a CAN intrusion detector is)."""

    input_specs = ["tokens:Nx32:int64:0..256"]
    output_names = ["logits"]
    preprocessing = "int64 token ids in [0, 256), one window per row"

    def __init__(self, vocab: int = 256, embed: int = 16, hidden: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        features, _ = self.lstm(self.embed(tokens))
        return self.head(features[:, -1])


def _seeded(cls, seed: int, **kwargs) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(**kwargs).eval()


@register_model("tiny_convnet")
def tiny_convnet(seed: int = 0, **kwargs) -> nn.Module:
    """A ~7k-parameter x2 SR conv net (deterministic weights from ``seed``)."""
    return _seeded(TinySRNet, seed, **kwargs)


@register_model("tiny_pair_transformer")
def tiny_pair_transformer(seed: int = 0, **kwargs) -> nn.Module:
    """A two-input (template, search) transformer with two outputs."""
    return _seeded(TinyPairTransformer, seed, **kwargs)


@register_model("tiny_token_bilstm")
def tiny_token_bilstm(seed: int = 0, **kwargs) -> nn.Module:
    """An embedding + BiLSTM classifier over int64 token windows."""
    return _seeded(TinyTokenBiLSTM, seed, **kwargs)
