"""Frames -> tokens: the detector's vocabulary and its sliding windows (no vocabulary file needed).

Token layout: specials, then byte, DLC and 11-bit ID tokens. A frame is 10 tokens ``[ID, DLC, B0..B7]``;
a window is its context frames' IDs (or all their tokens), then the target frame's 10.
"""
from __future__ import annotations

import numpy as np

PAD, CLS, SEP, VOID, UNK_ID = 0, 1, 2, 3, 4
BYTE0 = 8
DLC0 = BYTE0 + 256
ID0 = DLC0 + 16
VOCAB = ID0 + 2048
FRAME_TOKENS = 10  # ID, DLC, 8 bytes (VOID past the DLC)
CONTEXTS = ("ids", "full")

def sequence_length(window, context="ids"):
    """Tokens per window: the context frames' IDs (or all their tokens), then the target frame's 10."""
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    return (window - 1) * (1 if context == "ids" else FRAME_TOKENS) + FRAME_TOKENS


def id_table(vocab=None):
    """Token of each 11-bit ID: its own for IDs in ``vocab`` (all of them when ``vocab`` is None), else UNK_ID."""
    table = ID0 + np.arange(2048, dtype=np.int64)
    if vocab is not None:
        known = np.zeros(2048, bool)
        known[np.asarray(list(vocab), np.int64)] = True
        table[~known] = UNK_ID
    return table


def frame_tokens(frames, ids=None):
    """N x 10 int64 tokens ``[ID, DLC, B0..B7]`` (``ids``: an :func:`id_table`; IDs above 0x7FF are UNK_ID);
    bytes past the DLC are VOID."""
    out = np.empty((len(frames), FRAME_TOKENS), np.int64)
    ids = id_table() if ids is None else ids
    out[:, 0] = np.where(frames.can_id < 2048, ids[np.minimum(frames.can_id, 2047)], UNK_ID)
    out[:, 1] = DLC0 + frames.dlc
    out[:, 2:] = np.where(np.arange(8) < frames.dlc[:, None], BYTE0 + frames.data.astype(np.int64), VOID)
    return out


def window_tokens(tokens, targets, window, context="ids"):
    """Windows ending at each frame index in ``targets`` over per-frame ``tokens`` (from :func:`frame_tokens`).

    Context slots before the first frame are PAD. Row layout: context IDs (or full frames), oldest first,
    then the target frame's tokens; the window is labelled by its target frame.
    """
    targets = np.asarray(targets, np.int64)
    width = 1 if context == "ids" else FRAME_TOKENS
    out = np.empty((len(targets), sequence_length(window, context)), np.int64)
    for slot in range(window - 1):
        index = targets - (window - 1) + slot
        part = tokens[np.maximum(index, 0), :width]
        out[:, slot * width:(slot + 1) * width] = np.where(index[:, None] >= 0, part, PAD)
    out[:, -FRAME_TOKENS:] = tokens[targets]
    return out
