#!/usr/bin/env python3
"""CAN logs -> tokens -> verdicts: the streaming intrusion detector of an ``ids-lsfidm`` bundle (``detect.py``).

One numpy-only module serves both sides: the toolchain parses Car-Hacking logs and tokenises windows with it,
and the bundle runs it on the device with only numpy and the runtime (the backend comes from the bundle's
``run.py``). Log formats, detected from the first line:

- Car-Hacking CSV ``ts,id,dlc,d0..d{dlc-1},flag`` (no header; the flag column moves with the DLC; T/R);
- ``normal_run_data.txt``: ``Timestamp: 1479121434.850202   ID: 0350   000   DLC: 8   05 28 ...``;
- candump ``-L`` lines ``(1436509052.249713) can0 123#DEADBEEF``.

    python detect.py capture.csv                       # flag frames as fast as the file can be read
    candump -L can0 | python detect.py -               # live, from stdin
    python detect.py capture.csv --replay 10 --json    # arrivals paced at 10x the log's own timestamps
"""
from __future__ import annotations

import argparse
import json
import os
import select
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

FLAGS = {"T": 1, "R": 0}  # Car-Hacking: T injected, R normal; -1 = no label in the log
HEX = set("0123456789abcdefABCDEF")
# Vocabulary: specials, then byte, DLC and 11-bit ID tokens (no vocabulary file needed).
PAD, CLS, SEP, VOID, UNK_ID = 0, 1, 2, 3, 4
BYTE0 = 8
DLC0 = BYTE0 + 256
ID0 = DLC0 + 16
VOCAB = ID0 + 2048
FRAME_TOKENS = 10  # ID, DLC, 8 bytes (VOID past the DLC)
CONTEXTS = ("ids", "full")


class CanLogError(ValueError):
    """A malformed log line; the message names the source and the line number."""


class Frames:
    """Parsed frames as columns: ``ts`` float64, ``can_id``/``dlc`` int64, ``data`` uint8 N x 8 (zero past
    the DLC), ``flag`` int8 (1 injected, 0 normal, -1 unlabelled)."""

    def __init__(self, ts, can_id, dlc, data, flag):
        self.ts, self.can_id, self.dlc, self.data, self.flag = ts, can_id, dlc, data, flag

    def __len__(self):
        return len(self.ts)


# ---------------------------------------------------------------- parsing
def _csv(line):
    f = line.split(",")
    dlc, ident = int(f[2]), int(f[1], 16)
    if len(f) != dlc + 4 or dlc > 8 or ident < 0:
        raise ValueError
    return float(f[0]), ident, dlc, bytes.fromhex(" ".join(f[3:3 + dlc])), FLAGS[f[-1].strip()]


def _txt(line):
    f = line.split()
    if f[0] != "Timestamp:" or f[2] != "ID:" or f[5] != "DLC:":
        raise ValueError
    dlc = int(f[6])
    if len(f) != dlc + 7 or dlc > 8:
        raise ValueError
    return float(f[1]), int(f[3], 16), dlc, bytes.fromhex(" ".join(f[7:])), -1


def _candump(line):
    f = line.split()
    if len(f) != 3 or f[0][0] != "(" or f[0][-1] != ")":
        raise ValueError
    ident, _, payload = f[2].partition("#")
    data = b"" if payload[:1] == "R" else bytes.fromhex(payload)
    if len(data) > 8 or not ident:
        raise ValueError
    return float(f[0][1:-1]), int(ident, 16), len(data), data, -1


PARSERS = {"csv": _csv, "txt": _txt, "candump": _candump}


def detect_format(line):
    """The format of one log line: 'txt', 'candump' or 'csv'; raises ValueError for anything else."""
    text = line.strip()
    if text.startswith("Timestamp:"):
        return "txt"
    if text.startswith("("):
        return "candump"
    if text.count(",") >= 3:
        return "csv"
    raise ValueError(f"not a Car-Hacking CSV, normal_run_data.txt or candump line: {text[:60]!r}")


def diagnose(line, fmt):
    """Why ``line`` is malformed in format ``fmt`` (one short phrase)."""
    text = line.strip()
    if fmt == "csv":
        f = text.split(",")
        if len(f) < 4:
            return f"expected ts,id,dlc,data...,flag; got {len(f)} field(s)"
        checks = [(f[0].replace(".", "", 1).strip().isdigit(), f"timestamp {f[0]!r} is not a number"),
                  (0 < len(f[1].strip()) <= 8 and all(c in HEX for c in f[1].strip()),
                   f"CAN ID {f[1]!r} is not hexadecimal"),
                  (f[2].strip().isdigit() and int(f[2]) <= 8, f"DLC {f[2]!r} is not 0..8")]
        for ok, why in checks:
            if not ok:
                return why
        dlc = int(f[2])
        if len(f) != dlc + 4:
            return f"DLC {dlc} needs {dlc + 4} fields (ts,id,dlc,{dlc} bytes,flag); got {len(f)}"
        if f[-1].strip() not in FLAGS:
            return f"flag {f[-1].strip()!r} is not T or R"
        return "data bytes must be two hex digits each"
    if fmt == "txt":
        return "expected 'Timestamp: TS ID: HEX 000 DLC: N' followed by N hex bytes"
    return "expected '(TS) IFACE ID#HEXDATA' with at most 8 data bytes"


def parse_lines(lines, *, fmt="auto", source="<log>", skip_malformed=False):
    """Parse an iterable of text lines into ``(Frames, malformed_count)``; blank lines are ignored.

    A malformed line raises :class:`CanLogError` naming ``source`` and its line number, unless
    ``skip_malformed`` is set, when it is counted and skipped.
    """
    rows, chunks, skipped, parser = [], [], 0, PARSERS.get(fmt)
    for number, line in enumerate(lines, 1):
        if len(rows) == 1 << 16:  # columns per chunk: a 4M-row capture stays a few hundred MB
            chunks.append(frames_from_rows(rows))
            rows = []
        if parser is None:
            if not line.strip():
                continue
            try:
                fmt = detect_format(line)
            except ValueError as exc:
                raise CanLogError(f"{source} line {number}: {exc}") from None
            parser = PARSERS[fmt]
        try:
            rows.append(parser(line))
        except (ValueError, IndexError, KeyError):
            if not line.strip():
                continue
            if skip_malformed:
                skipped += 1
                continue
            raise CanLogError(f"{source} line {number}: {diagnose(line, fmt)}") from None
    frames = [*chunks, frames_from_rows(rows)]
    if len(frames) == 1:
        return frames[0], skipped
    columns = ("ts", "can_id", "dlc", "data", "flag")
    return Frames(*(np.concatenate([getattr(f, c) for f in frames]) for c in columns)), skipped


def frames_from_rows(rows):
    """Columns from ``(ts, id, dlc, payload, flag)`` tuples."""
    if not rows:
        return Frames(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 8), np.uint8),
                      np.zeros(0, np.int8))
    ts, ids, dlc, data, flag = zip(*rows)
    blob = b"".join(d.ljust(8, b"\0") for d in data)
    return Frames(np.array(ts, np.float64), np.array(ids, np.int64), np.array(dlc, np.int64),
                  np.frombuffer(blob, np.uint8).reshape(-1, 8).copy(), np.array(flag, np.int8))


def read_log(path, *, skip_malformed=False):
    """``(Frames, malformed_count)`` of a log file (``-`` reads stdin)."""
    if str(path) == "-":
        return parse_lines(sys.stdin, source="<stdin>", skip_malformed=skip_malformed)
    with open(path, encoding="ascii", errors="replace") as handle:
        return parse_lines(handle, source=str(path), skip_malformed=skip_malformed)


# ---------------------------------------------------------------- tokens
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


# ---------------------------------------------------------------- streaming
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


def _print_alerts(ts, can_ids, classes, scores):
    sys.stdout.write("".join(f"{t:.6f},{i:03x},{c},{s:.3f}\n" for t, i, c, s in zip(ts, can_ids, classes, scores)))


def bundle_infer(folder, threads=1):
    """``infer(tokens) -> logits`` over the bundle's model, one backend per calling thread (a runtime's
    request object is not shared between threads)."""
    import run  # the bundle's runtime (run.py beside this file): backends and manifest

    config = json.loads((Path(folder) / "ids_config.json").read_text())
    manifest, local = run.load_manifest(folder), threading.local()
    run.open_backend(folder, manifest, threads)  # fail early, in the caller's thread, on a bad bundle

    def infer(tokens):
        if not hasattr(local, "backend"):
            local.backend = run.open_backend(folder, manifest, threads)
        return local.backend.run({config["input"]: tokens})[config["output"]]

    return infer, config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="CAN log file, or - for stdin")
    parser.add_argument("--max-batch", type=int, default=128, help="most frames per inference")
    parser.add_argument("--max-latency-ms", type=float, default=5.0, help="longest a frame waits for its batch")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 2),
                        help="batches in flight at once, each on its own core")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads per batch (1 suits a small RNN)")
    parser.add_argument("--replay", type=float, default=None, help="pace arrivals at this multiple of the log's rate")
    parser.add_argument("--quiet", action="store_true", help="do not print one line per flagged frame")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent
    sys.path.insert(0, str(folder))
    detector = None
    try:
        infer, config = bundle_infer(folder, args.threads)
        detector = StreamDetector(infer, window=config["window"], context=config["context"],
                                  classes=config["classes"], id_vocab=config.get("id_vocab"),
                                  on_alert=None if args.quiet else _print_alerts, workers=max(1, args.workers))
        options = dict(max_batch=args.max_batch, max_latency_s=args.max_latency_ms / 1e3)
        if args.replay:
            with open(args.log, encoding="ascii", errors="replace") as handle:
                wall = stream_replay(detector, handle.readlines(), speed=args.replay, **options)
        elif args.log == "-":
            wall = stream_fd(detector, sys.stdin.fileno(), **options)
        else:
            with open(args.log, "rb") as handle:
                wall = stream_fd(detector, handle.fileno(), **options)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
              file=sys.stderr)
        return 2
    finally:
        if detector is not None:
            detector.close()
    result = detector.summary(wall) | {"replay_speed": args.replay, "threads": args.threads,
                                       "max_batch": args.max_batch, "max_latency_ms": args.max_latency_ms}
    if args.json:
        print(json.dumps(result))
    else:
        lat = result["latency_ms"]
        print(f"{result['frames']} frames in {wall:.2f} s: {result['frames_per_s']:.0f} frames/s, "
              f"{result['real_time_factor']:.1f}x the log's bus rate ({result['bus_rate_frames_per_s']:.0f} "
              f"frames/s); latency p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
