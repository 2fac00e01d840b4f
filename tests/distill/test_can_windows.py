"""Windows of consecutive frames and the chronological split with a gap (no frame shared by two splits)."""
from __future__ import annotations

import numpy as np
import pytest

from compressor.distill.data.can import (
    CanDataError,
    Capture,
    build_windows,
    split_targets,
)
from compressor.distill.data.can_generator import VEHICLE, GeneratorConfig, generate
from compressor.runtime.can_log import Frames
from compressor.runtime.can_tokens import (
    FRAME_TOKENS,
    PAD,
    UNK_ID,
    frame_tokens,
    sequence_length,
    window_tokens,
)


def _frames(count: int) -> Frames:
    ids = np.arange(count, dtype=np.int64) % 2048
    data = (np.arange(count * 8) % 256).astype(np.uint8).reshape(count, 8)
    return Frames(np.arange(count, dtype=np.float64), ids, np.full(count, 8), data, np.zeros(count, np.int8))


def test_window_layout_ids_context_then_target_frame():
    tokens = frame_tokens(_frames(6))
    out = window_tokens(tokens, np.array([3, 5]), window=4, context="ids")
    assert out.shape == (2, sequence_length(4, "ids")) == (2, 13)
    assert out[0, :3].tolist() == tokens[[0, 1, 2], 0].tolist()  # IDs of the 3 frames before the target
    assert out[0, 3:].tolist() == tokens[3].tolist()
    assert out[1, :3].tolist() == tokens[[2, 3, 4], 0].tolist()


def test_window_full_context_and_padding_at_the_start():
    tokens = frame_tokens(_frames(4))
    full = window_tokens(tokens, np.array([2]), window=3, context="full")
    assert full.shape == (1, 3 * FRAME_TOKENS)
    assert full[0].tolist() == tokens[[0, 1, 2]].ravel().tolist()
    early = window_tokens(tokens, np.array([0, 1]), window=3, context="ids")
    assert early[0, :2].tolist() == [PAD, PAD] and early[1, :2].tolist() == [PAD, tokens[0, 0]]
    assert sequence_length(1) == FRAME_TOKENS
    with pytest.raises(ValueError):
        sequence_length(4, "bytes")


def test_split_is_chronological_with_a_gap_and_no_shared_frames():
    window, gap = 4, 10
    splits = split_targets(1000, window=window, fractions=(0.6, 0.2, 0.2), gap=gap)
    used = {name: set((targets[:, None] - np.arange(window)).ravel().tolist()) for name, targets in splits.items()}
    assert not used["train"] & used["val"] and not used["val"] & used["test"] and not used["train"] & used["test"]
    assert splits["train"].max() < splits["val"].min() < splits["val"].max() < splits["test"].min()
    assert min(used["val"]) - max(used["train"]) > gap and min(used["test"]) - max(used["val"]) > gap
    assert splits["train"][0] == window - 1 and splits["test"][-1] == 999
    with pytest.raises(CanDataError, match="three non-negative fractions"):
        split_targets(100, window=4, fractions=(0.5, 0.5))


def test_build_windows_over_captures_labels_each_window_by_its_target_frame():
    captures = [Capture("fuzzy", "fuzzy", generate(GeneratorConfig(duration_s=26.0, attack="fuzzy", seed=2))),
                Capture("dos", "dos", generate(GeneratorConfig(duration_s=32.0, attack="dos", seed=2)))]
    sets, vocab = build_windows(captures, window=4, gap=16, max_windows={"train": 5000}, id_min_share=2e-4)
    assert vocab == sorted([p.can_id for p in VEHICLE] + [0x000])  # the bus's IDs and the flood's; not fuzz
    assert len(sets["train"]) == 5000 and set(np.unique(sets["train"].sources)) == {0, 1}
    for name, windows in sets.items():
        counts = windows.class_counts()
        assert counts["fuzzy"] > 0 and counts["dos"] > 0 and counts["gear"] == 0, (name, counts)
    # the label is the target (last) frame's: fuzzy injections carry random IDs -> check one window
    test = sets["test"]
    tokens, labels = test.batch(np.arange(len(test)))
    assert tokens.dtype == np.int64 and tokens.shape[1] == 13 and labels.dtype == np.int64
    fuzzy_rows = tokens[labels == 2]
    assert np.mean(fuzzy_rows[:, -10] == UNK_ID) > 0.95  # random IDs share the UNK token
    assert not (tokens[labels == 0][:, -10] == UNK_ID).any()
    everything, none = build_windows(captures, window=4, gap=16, id_min_share=None)
    assert none is None and not (everything["test"].tokens[:, -10] == UNK_ID).any()
    with pytest.raises(CanDataError, match="holds no windows"):
        build_windows(captures[1:], window=4, fractions=(1.0, 0.0, 0.0))
