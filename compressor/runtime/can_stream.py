"""The streaming detector: micro-batched sliding windows over frames as they arrive, and its inputs.

:class:`StreamDetector` parses, tokenises and classifies batches of log lines; :func:`stream_fd` feeds it
from a file descriptor as lines arrive, :func:`stream_replay` paces a log by its own timestamps, and
:func:`bundle_infer` runs the bundle's model.
"""
from __future__ import annotations

import json
import os
import select
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .backends import open_backend
from .bundle import load_manifest
from .can_log import CanLogError, detect_format, parse_lines
from .can_tokens import FRAME_TOKENS, frame_tokens, id_table, window_tokens


class StreamDetector:
    """Sliding-window detector over a stream of frames, batching frames that arrive together.

    ``submit(lines, arrivals)`` parses and tokenises a batch (in order: the window's context carries over
    between batches) and starts ``infer(tokens) -> logits`` on one of ``workers`` threads (the runtime
    releases the GIL, so batches overlap on several cores); verdicts are collected in arrival order. Each
    frame's latency runs from its arrival to the moment its batch's verdicts are collected.
    """

    def __init__(self, infer, *, window, context, classes, id_vocab=None, fmt="auto", skip_malformed=True,
                 on_alert=None, workers=1):
        self.infer, self.window, self.context, self.classes = infer, window, context, list(classes)
        self.ids = id_table(id_vocab)
        self.fmt, self.skip_malformed, self.on_alert, self.workers = fmt, skip_malformed, on_alert, workers
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.pending = deque()
        self.history = np.zeros((0, FRAME_TOKENS), np.int64)
        self.latency, self.batches, self.malformed = [], 0, 0
        self.counts = np.zeros(len(self.classes), np.int64)
        self.confusion = np.zeros((2, 2), np.int64)  # [flag in the log, flagged by us] where the log has flags
        self.first_ts = self.last_ts = None

    def submit(self, lines, arrivals):
        """Start classifying ``lines`` (arrived at ``arrivals``, perf_counter seconds)."""
        if self.fmt == "auto":
            first = next((line for line in lines if line.strip()), None)
            if first is None:
                return
            self.fmt = detect_format(first)
        frames, bad = parse_lines(lines, fmt=self.fmt, source="<stream>", skip_malformed=self.skip_malformed)
        self.malformed += bad
        if len(frames) == 0:
            return
        tokens = np.concatenate([self.history, frame_tokens(frames, self.ids)])
        windows = window_tokens(tokens, np.arange(len(self.history), len(tokens)), self.window, self.context)
        self.history = tokens[max(0, len(tokens) - self.window + 1):] if self.window > 1 else self.history
        arrivals = np.asarray(arrivals, np.float64)
        if len(arrivals) != len(frames):  # malformed lines were dropped: charge the earliest arrival
            arrivals = np.full(len(frames), arrivals.min())
        job = self.pool.submit(self.infer, windows) if self.pool else self.infer(windows)
        self.pending.append((frames, arrivals, job))
        while len(self.pending) > self.workers:
            self._collect()

    def drain(self):
        """Collect every batch still in flight."""
        while self.pending:
            self._collect()

    def process(self, lines, arrivals):
        """Classify ``lines`` now (submit, then drain)."""
        self.submit(lines, arrivals)
        self.drain()

    def close(self):
        self.drain()
        if self.pool is not None:
            self.pool.shutdown()

    def _collect(self):
        frames, arrivals, job = self.pending.popleft()
        logits = job.result() if self.pool else job
        predicted = np.argmax(logits, axis=1)
        flagged = np.flatnonzero(predicted > 0)
        if self.on_alert is not None and len(flagged):
            shifted = logits[flagged] - logits[flagged].max(axis=1, keepdims=True)
            normal = np.exp(shifted[:, 0]) / np.exp(shifted).sum(axis=1)
            self.on_alert(frames.ts[flagged], frames.can_id[flagged],
                          [self.classes[c] for c in predicted[flagged]], 1.0 - normal)
        self.latency.append(time.perf_counter() - arrivals)
        self.batches += 1
        self.counts += np.bincount(predicted, minlength=len(self.classes))
        self.first_ts = frames.ts[0] if self.first_ts is None else self.first_ts
        self.last_ts = frames.ts[-1]
        labelled = frames.flag >= 0
        np.add.at(self.confusion, (frames.flag[labelled], (predicted[labelled] > 0).astype(np.int64)), 1)

    def summary(self, wall_s):
        """Throughput, arrival-to-verdict latency, real-time factor against the log's bus rate, detections."""
        lat = np.concatenate(self.latency) * 1e3 if self.latency else np.zeros(1)
        frames = int(sum(map(len, self.latency)))
        span = (self.last_ts - self.first_ts) if frames > 1 else 0.0
        bus = (frames - 1) / span if span > 0 else 0.0
        fps = frames / wall_s if wall_s > 0 else 0.0
        result = {"frames": frames, "malformed_skipped": self.malformed, "wall_s": wall_s, "frames_per_s": fps,
                  "bus_rate_frames_per_s": bus, "log_span_s": span, "real_time_factor": fps / bus if bus else 0.0,
                  "batches": self.batches, "mean_batch": frames / max(self.batches, 1), "workers": self.workers,
                  "latency_ms": {"mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
                                 "p90": float(np.percentile(lat, 90)), "p99": float(np.percentile(lat, 99)),
                                 "max": float(lat.max())},
                  "predicted": {c: int(n) for c, n in zip(self.classes, self.counts)}}
        (tn, fp), (fn, tp) = self.confusion.tolist()
        if tn + fp + fn + tp:
            result["against_log_flags"] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                                           "precision": tp / (tp + fp) if tp + fp else 0.0,
                                           "recall": tp / (tp + fn) if tp + fn else 0.0}
        return result


def stream_fd(detector, fd, *, max_batch=128, max_latency_s=0.005, chunk=1 << 16):
    """Read ``fd`` as lines arrive; submit a batch when ``max_batch`` frames wait or the oldest waited
    ``max_latency_s``; when nothing is left to read, collect the batches in flight. Returns the wall time
    from the first read to the last verdict."""
    carry, lines, arrivals, begin = b"", [], [], None
    while True:
        if not select.select([fd], [], [], 0)[0]:  # the input is quiet: finish what is in flight
            detector.drain()
            waiting = max(0.0, arrivals[0] + max_latency_s - time.perf_counter()) if lines else None
            if not select.select([fd], [], [], waiting)[0]:
                detector.submit(lines, arrivals)
                lines, arrivals = [], []
                continue
        data = os.read(fd, chunk)
        now = time.perf_counter()
        begin = now if begin is None else begin
        if not data:
            break
        parts = (carry + data).split(b"\n")
        carry = parts.pop()
        lines += [p.decode("ascii", "replace") for p in parts]
        arrivals += [now] * len(parts)
        while len(lines) >= max_batch or (lines and now - arrivals[0] >= max_latency_s):
            detector.submit(lines[:max_batch], arrivals[:max_batch])
            lines, arrivals = lines[max_batch:], arrivals[max_batch:]
    if carry.strip():
        lines.append(carry.decode("ascii", "replace"))
        arrivals.append(time.perf_counter())
    if lines:
        detector.submit(lines, arrivals)
    detector.drain()
    return time.perf_counter() - (begin or time.perf_counter())


def stream_replay(detector, lines, *, speed, max_batch=128, max_latency_s=0.005):
    """Replay ``lines`` with arrivals paced by their own timestamps at ``speed`` x real time.

    Timestamps come from a pre-scan (that is the simulated bus, untimed); each batch is parsed again when
    it is processed, so parsing counts in the latency. Returns the wall time of the replay.
    """
    lines = [line for line in lines if line.strip()]
    frames, _ = parse_lines(lines, skip_malformed=True)
    if len(frames) != len(lines):
        raise CanLogError("--replay needs a log without malformed lines")
    begin = time.perf_counter()
    due = begin + (frames.ts - frames.ts[0]) / speed
    done, total = 0, len(lines)
    while done < total:
        now = time.perf_counter()
        waiting = int(np.searchsorted(due, now, side="right")) - done
        if waiting >= max_batch or (waiting > 0 and (now >= due[done] + max_latency_s or done + waiting == total)):
            stop = done + min(waiting, max_batch)
            detector.submit(lines[done:stop], due[done:stop])
            done = stop
            continue
        detector.drain()  # nothing to submit yet: finish what is in flight, then sleep
        # until the oldest waiting frame's deadline, or the arrival that fills a batch
        wake = min(due[done] + max_latency_s, due[min(done + max_batch, total) - 1]) if waiting else due[done]
        time.sleep(max(0.0, wake - time.perf_counter()))
    detector.drain()
    return time.perf_counter() - begin


def bundle_infer(folder, threads=1):
    """``infer(tokens) -> logits`` over the bundle's model, one backend per calling thread (a runtime's
    request object is not shared between threads)."""
    config = json.loads((Path(folder) / "ids_config.json").read_text())
    manifest, local = load_manifest(folder), threading.local()
    open_backend(folder, manifest, threads)  # fail early, in the caller's thread, on a bad bundle

    def infer(tokens):
        if not hasattr(local, "backend"):
            local.backend = open_backend(folder, manifest, threads)
        return local.backend.run({config["input"]: tokens})[config["output"]]

    return infer, config
