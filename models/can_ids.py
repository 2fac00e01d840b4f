"""CAN intrusion detectors over token windows (LSF-IDM): a BERT-style teacher and the BiLSTM student.

Both read the same int64 windows (context frame IDs, then the target frame's ID, DLC and 8 byte tokens; see
``compressor.runtime.can_tokens``) and return class logits for the target frame. The teacher is BERT written in
plain torch (post-LayerNorm encoder, GELU, tanh pooler over a [CLS] token the model prepends itself), with
attention as explicit matmuls so it exports to any runtime. The student is LSF-IDM's 2-layer BiLSTM (hidden
64) whose forward and backward final states are concatenated into the classifier.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from compressor.models._registry import register_model

VOCAB = 2328  # compressor.runtime.can_tokens.VOCAB (models/ does not import training code)
CLS = 1
SEQ_LEN = 13  # a window of 4 frames: 3 context IDs + 10 tokens of the target frame
CLASSES = 5   # normal, dos, fuzzy, gear, rpm
PREPROCESSING = ("int64 tokens from compressor.runtime.can_tokens.window_tokens (bundle: detect.py): context "
                 "frame IDs then the target frame's ID, DLC and 8 bytes; logits over normal/dos/fuzzy/gear/rpm")


def _spec(seq_len: int, vocab: int) -> list[str]:
    return [f"tokens:Nx{seq_len}:int64:0..{vocab}"]


class BertSelfAttention(nn.Module):
    """Multi-head self-attention as plain matmuls (no fused kernels: every runtime takes it)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {heads} heads")
        self.heads, self.head_dim = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        context = self.dropout(attention) @ v
        return context.transpose(1, 2).reshape(x.shape)


class BertLayer(nn.Module):
    """Attention -> add & norm -> GELU feed-forward -> add & norm (BERT's post-LN block)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float) -> None:
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads, dropout)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Sequential(nn.Linear(hidden, intermediate), nn.GELU())
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention_output(self.attention(x))))
        return self.output_norm(x + self.dropout(self.output(self.intermediate(x))))


class CanBert(nn.Module):
    """BERT encoder + pooler + classifier over ``[CLS] + tokens``; ``pooler`` is the semantic feature."""

    output_names = ["logits"]
    preprocessing = PREPROCESSING

    def __init__(self, *, hidden: int = 256, layers: int = 4, heads: int = 4, intermediate: int | None = None,
                 seq_len: int = SEQ_LEN, vocab: int = VOCAB, classes: int = CLASSES, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_specs = _spec(seq_len, vocab)
        self.token_embedding = nn.Embedding(vocab, hidden)
        self.position_embedding = nn.Parameter(torch.zeros(1, seq_len + 1, hidden))
        self.embedding_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.Sequential(*(BertLayer(hidden, heads, intermediate or 4 * hidden, dropout)
                                       for _ in range(layers)))
        self.pooler = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.classifier = nn.Linear(hidden, classes)
        self.apply(_bert_init)
        nn.init.normal_(self.position_embedding, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = torch.full_like(tokens[:, :1], CLS)
        x = self.token_embedding(torch.cat([cls, tokens], dim=1)) + self.position_embedding
        x = self.encoder(self.dropout(self.embedding_norm(x)))
        return self.classifier(self.dropout(self.pooler(x[:, 0])))


def _bert_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class LsfIdmBiLSTM(nn.Module):
    """Embedding -> 2-layer BiLSTM -> [h_forward, h_backward] (``features``) -> dropout -> linear."""

    output_names = ["logits"]
    preprocessing = PREPROCESSING

    def __init__(self, *, embed: int = 32, hidden: int = 64, layers: int = 2, seq_len: int = SEQ_LEN,
                 vocab: int = VOCAB, classes: int = CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self.input_specs = _spec(seq_len, vocab)
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.features = nn.Identity()  # a hook point: the 2*hidden sentence feature
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (state, _) = self.lstm(self.embed(tokens))
        return self.head(self.dropout(self.features(torch.cat([state[-2], state[-1]], dim=1))))


def _bert(layers: int, hidden: int, heads: int, **kwargs) -> CanBert:
    return CanBert(**{"layers": layers, "hidden": hidden, "heads": heads, **kwargs})


@register_model("can_bert_tiny")
def can_bert_tiny(**kwargs) -> CanBert:
    """BERT-tiny shape (2 layers, 128 wide, 2 heads): for tests."""
    return _bert(2, 128, 2, **kwargs)


@register_model("can_bert_mini")
def can_bert_mini(**kwargs) -> CanBert:
    """BERT-mini shape (4 layers, 256 wide, 4 heads): the quick recipe's teacher."""
    return _bert(4, 256, 4, **kwargs)


@register_model("can_bert_small")
def can_bert_small(**kwargs) -> CanBert:
    """BERT-small shape (4 layers, 512 wide, 8 heads)."""
    return _bert(4, 512, 8, **kwargs)


@register_model("can_bert_medium")
def can_bert_medium(**kwargs) -> CanBert:
    """BERT-medium shape (8 layers, 512 wide, 8 heads)."""
    return _bert(8, 512, 8, **kwargs)


@register_model("can_bert_base")
def can_bert_base(**kwargs) -> CanBert:
    """BERT-base shape (12 layers, 768 wide, 12 heads, about 88M parameters here): LSF-IDM's teacher."""
    return _bert(12, 768, 12, **kwargs)


@register_model("lsfidm_bilstm")
def lsfidm_bilstm(**kwargs) -> LsfIdmBiLSTM:
    """LSF-IDM's student (and its no-KD baseline): 2-layer BiLSTM, hidden 64."""
    return LsfIdmBiLSTM(**kwargs)
