"""Embedding metrics against the teacher: cosine similarity and nearest-neighbour agreement."""
from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_to_teacher(embeddings: np.ndarray, teacher: np.ndarray) -> float:
    """Mean cosine similarity of each sample's embedding with the teacher's (same width needed)."""
    if embeddings.shape != teacher.shape:
        raise ValueError(f"cosine to the teacher needs equal shapes, got {embeddings.shape} and {teacher.shape}")
    return float((_unit(embeddings) * _unit(teacher)).sum(axis=1).mean())


def nearest_neighbours(embeddings: np.ndarray) -> np.ndarray:
    """Index of each sample's nearest other sample by cosine similarity."""
    unit = _unit(embeddings)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def neighbour_agreement(embeddings: np.ndarray, teacher: np.ndarray) -> float:
    """Share of samples whose nearest neighbour (cosine, among the same samples) is the teacher's too.
    Widths may differ: only neighbourhoods are compared.

    >>> neighbour_agreement(np.eye(3), np.eye(3) * 2)
    1.0
    """
    if embeddings.shape[0] < 2:
        return float("nan")
    return float((nearest_neighbours(embeddings) == nearest_neighbours(teacher)).mean())


def embedding_metrics(embeddings: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """``nn_agreement`` always; ``cosine`` when the widths match the teacher's."""
    out = {"nn_agreement": neighbour_agreement(embeddings, teacher)}
    if embeddings.reshape(embeddings.shape[0], -1).shape == teacher.reshape(teacher.shape[0], -1).shape:
        out["cosine"] = cosine_to_teacher(embeddings.reshape(len(embeddings), -1), teacher.reshape(len(teacher), -1))
    return out
