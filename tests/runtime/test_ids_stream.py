"""The streaming detector's sliding window, micro-batching and statistics (in-process, with a stand-in model;
tests/test_pipeline_ids.py runs the real bundle in a numpy + onnxruntime environment)."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from compressor.distill.data.can_generator import (
    VEHICLE,
    GeneratorConfig,
    csv_lines,
    generate,
)
from compressor.runtime.can_stream import StreamDetector, stream_fd, stream_replay
from compressor.runtime.can_tokens import (
    ID0,
    UNK_ID,
    frame_tokens,
    id_table,
    window_tokens,
)

CLASSES = ["normal", "dos", "fuzzy", "gear", "rpm"]


class Recorder:
    """A stand-in model: calls ID 0x000 (or unknown-ID) frames DoS, everything else normal; keeps what it saw."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        self.seen.append(tokens.copy())
        logits = np.zeros((len(tokens), 5), np.float32)
        logits[np.arange(len(tokens)), np.where(np.isin(tokens[:, -10], (ID0, UNK_ID)), 1, 0)] = 5.0
        return logits


@pytest.fixture(scope="module")
def dos_capture():
    frames = generate(GeneratorConfig(duration_s=8.0, attack="dos", seed=4))
    return frames, list(csv_lines(frames))


@pytest.mark.parametrize("workers", [1, 2])
def test_chunked_stream_sees_exactly_the_offline_windows(dos_capture, workers):
    frames, lines = dos_capture
    model = Recorder()
    predicted = []
    vocab = [p.can_id for p in VEHICLE]  # 0x000 (the flood) falls to UNK_ID
    detector = StreamDetector(model, window=4, context="ids", classes=CLASSES, workers=workers, id_vocab=vocab,
                              on_alert=lambda ts, ids, classes, scores: predicted.extend(ts))
    rng, start = np.random.default_rng(0), 0
    while start < len(lines):
        stop = start + (int(rng.integers(1, 300)) if start > 10 else 1)  # single frames at first
        detector.submit(lines[start:stop], [time.perf_counter()] * len(lines[start:stop]))
        start = stop
    detector.close()
    offline = window_tokens(frame_tokens(frames, id_table(vocab)), np.arange(len(frames)), 4, "ids")
    seen = np.concatenate(model.seen)
    assert len(seen) == len(offline) and {r.tobytes() for r in seen} == {r.tobytes() for r in offline}
    if workers == 1:
        assert np.array_equal(seen, offline)
    assert np.allclose(predicted, frames.ts[frames.flag == 1], atol=1e-5, rtol=0)  # verdicts in arrival order


def test_summary_counts_flags_latency_and_bus_rate(dos_capture):
    frames, lines = dos_capture
    alerts = []
    detector = StreamDetector(Recorder(), window=4, context="ids", classes=CLASSES,
                              on_alert=lambda ts, ids, classes, scores: alerts.extend(classes))
    arrival = time.perf_counter()
    for start in range(0, len(lines), 256):
        detector.process(lines[start:start + 256], [arrival] * len(lines[start:start + 256]))
    summary = detector.summary(wall_s=1.0)
    injected = int(frames.flag.sum())
    assert summary["frames"] == len(frames) and summary["predicted"]["dos"] == injected == len(alerts)
    assert summary["against_log_flags"] == {"tp": injected, "fp": 0, "fn": 0, "tn": len(frames) - injected,
                                            "precision": 1.0, "recall": 1.0}
    assert summary["bus_rate_frames_per_s"] == pytest.approx((len(frames) - 1) / (frames.ts[-1] - frames.ts[0]))
    assert summary["real_time_factor"] == pytest.approx(len(frames) / summary["bus_rate_frames_per_s"])
    assert summary["latency_ms"]["p50"] > 0 and summary["mean_batch"] == pytest.approx(len(frames) /
                                                                                         summary["batches"])


def test_malformed_stream_lines_are_skipped_and_counted(dos_capture):
    _, lines = dos_capture
    detector = StreamDetector(Recorder(), window=4, context="ids", classes=CLASSES)
    detector.process(lines[:10] + ["garbage\n"] + lines[10:20], [0.0] * 21)
    assert detector.summary(1.0)["frames"] == 20 and detector.malformed == 1


def test_a_quiet_pipe_flushes_a_partial_batch_within_the_latency_bound(dos_capture):
    """Frames that arrive and then nothing more: they must not wait for a full batch."""
    _, lines = dos_capture
    read_fd, write_fd = os.pipe()
    verdict_times: list[float] = []
    model = Recorder()
    detector = StreamDetector(lambda t: (verdict_times.append(time.perf_counter()), model(t))[1], window=4,
                              context="ids", classes=CLASSES)

    def produce():
        os.write(write_fd, "".join(lines[:50]).encode())
        time.sleep(0.3)  # the bus goes quiet
        os.write(write_fd, "".join(lines[50:60]).encode())
        os.close(write_fd)

    sent = time.perf_counter()
    thread = threading.Thread(target=produce)
    thread.start()
    stream_fd(detector, read_fd, max_batch=256, max_latency_s=0.01)
    thread.join()
    os.close(read_fd)
    assert verdict_times[0] - sent < 0.2  # the first 50 frames were judged before the second write
    assert detector.summary(1.0)["frames"] == 60 and detector.summary(1.0)["latency_ms"]["p50"] < 100


def test_replay_follows_the_timestamps(dos_capture):
    frames, lines = dos_capture
    part = lines[:2000]
    span = frames.ts[1999] - frames.ts[0]
    detector = StreamDetector(Recorder(), window=4, context="ids", classes=CLASSES)
    wall = stream_replay(detector, part, speed=8.0, max_batch=128, max_latency_s=0.005)
    assert wall >= span / 8.0 * 0.95
    summary = detector.summary(wall)
    assert summary["frames"] == 2000 and summary["latency_ms"]["p99"] < 200
