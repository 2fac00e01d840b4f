"""A user's tiny classification project for pipeline tests: two MLPs in a ``nets.py`` and a labelled ``.npz``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MLP_NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    output_names = ["logits"]

    def __init__(self, width=16, out=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, width), nn.ReLU())
        self.head = nn.Linear(width, out)

    def forward(self, x):
        return self.head(self.body(x))


def teacher(width=32, out=3):
    return Net(int(width), int(out))


def student(width=8, out=3):
    return Net(int(width), int(out))


def accuracy_plus(runner, data):
    logits = runner.infer({"input": data.inputs})["logits"]
    return {"custom": float((logits.argmax(1) == data.labels).mean()) + 1.0}
'''
"""``nets.py``: an MLP teacher (``teacher``, width 32) and student (``student``, width 8) over 6 features, 3
classes, no BatchNorm or dropout; ``accuracy_plus`` is a user metric function."""


def write_classification_data(folder: Path, rows: int = 240) -> Path:
    """``data.npz`` in ``folder``: ``rows`` seeded normal rows of 6 features, 3 classes from two thresholds."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5))
    return folder / "data.npz"


def write_tiny_project(folder: Path, rows: int = 240, nets: str = MLP_NETS) -> Path:
    """``nets.py`` and ``data.npz`` in ``folder``; returns ``folder``."""
    (folder / "nets.py").write_text(nets)
    write_classification_data(folder, rows)
    return folder
