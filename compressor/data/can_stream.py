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
import time
from pathlib import Path

import numpy as np

FORMATS = ("csv", "txt", "candump")
FLAGS = {"T": 1, "R": 0}  # Car-Hacking: T injected, R normal; -1 = no label in the log
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

    def take(self, index):
        """The frames at ``index`` (a slice or an index array)."""
        return Frames(self.ts[index], self.can_id[index], self.dlc[index], self.data[index], self.flag[index])


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
        checks = [(_is_float(f[0]), f"timestamp {f[0]!r} is not a number"),
                  (_is_hex(f[1], 8), f"CAN ID {f[1]!r} is not hexadecimal"),
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


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _is_hex(text, digits):
    text = text.strip()
    return 0 < len(text) <= digits and all(c in "0123456789abcdefABCDEF" for c in text)


def parse_lines(lines, *, fmt="auto", source="<log>", first_line=1, skip_malformed=False):
    """Parse an iterable of text lines into ``(Frames, malformed_count)``; blank lines are ignored.

    A malformed line raises :class:`CanLogError` naming ``source`` and its line number, unless
    ``skip_malformed`` is set, when it is counted and skipped.
    """
    rows, skipped, parser = [], 0, PARSERS.get(fmt)
    for number, line in enumerate(lines, first_line):
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
    return frames_from_rows(rows), skipped


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


def frame_tokens(frames):
    """N x 10 int64 tokens ``[ID, DLC, B0..B7]``; bytes past the DLC are VOID, IDs above 0x7FF are UNK_ID."""
    out = np.empty((len(frames), FRAME_TOKENS), np.int64)
    out[:, 0] = np.where(frames.can_id < 2048, ID0 + frames.can_id, UNK_ID)
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

    ``infer(tokens) -> logits`` runs the model. ``process(lines, arrivals)`` parses, tokenises and classifies
    a batch of raw lines; each frame's latency is measured from its arrival to its verdict.
    """

    def __init__(self, infer, *, window, context, classes, fmt="auto", skip_malformed=True, on_alert=None):
        self.infer, self.window, self.context, self.classes = infer, window, context, list(classes)
        self.fmt, self.skip_malformed, self.on_alert = fmt, skip_malformed, on_alert
        self.history = np.zeros((0, FRAME_TOKENS), np.int64)
        self.latency, self.busy_s, self.batches, self.malformed, self.lines = [], 0.0, 0, 0, 0
        self.counts = np.zeros(len(self.classes), np.int64)
        self.confusion = np.zeros((2, 2), np.int64)  # [flag in log, flagged by us] where the log has flags
        self.first_ts = self.last_ts = None

    def process(self, lines, arrivals):
        """Classify ``lines`` (which arrived at ``arrivals``, perf_counter seconds); returns predicted classes."""
        start = time.perf_counter()
        if self.fmt == "auto":
            first = next((line for line in lines if line.strip()), None)
            if first is None:
                return np.zeros(0, np.int64)
            self.fmt = detect_format(first)
        frames, bad = parse_lines(lines, fmt=self.fmt, source="<stream>", skip_malformed=self.skip_malformed)
        self.malformed, self.lines = self.malformed + bad, self.lines + len(lines)
        if len(frames) == 0:
            return np.zeros(0, np.int64)
        tokens = np.concatenate([self.history, frame_tokens(frames)])
        keep = self.window - 1
        targets = np.arange(len(self.history), len(tokens))
        logits = self.infer(window_tokens(tokens, targets, self.window, self.context))
        self.history = tokens[len(tokens) - keep:] if keep else self.history
        done = time.perf_counter()
        predicted = np.argmax(logits, axis=1)
        arrivals = np.asarray(arrivals, np.float64)
        if len(arrivals) != len(frames):  # malformed lines were dropped: charge the batch's earliest arrival
            arrivals = np.full(len(frames), arrivals.min())
        self._record(frames, logits, predicted, done - arrivals, done - start)
        return predicted

    def _record(self, frames, logits, predicted, latency, busy):
        self.latency.append(latency)
        self.busy_s, self.batches = self.busy_s + busy, self.batches + 1
        self.counts += np.bincount(predicted, minlength=len(self.classes))
        self.first_ts = frames.ts[0] if self.first_ts is None else self.first_ts
        self.last_ts = frames.ts[-1]
        labelled = frames.flag >= 0
        np.add.at(self.confusion, (frames.flag[labelled], (predicted[labelled] > 0).astype(np.int64)), 1)
        flagged = np.flatnonzero(predicted > 0)
        if self.on_alert is not None and len(flagged):
            shifted = logits[flagged] - logits[flagged].max(axis=1, keepdims=True)
            normal = np.exp(shifted[:, 0]) / np.exp(shifted).sum(axis=1)
            self.on_alert(frames.ts[flagged], frames.can_id[flagged],
                          [self.classes[c] for c in predicted[flagged]], 1.0 - normal)

    def summary(self, wall_s):
        """Throughput, arrival-to-verdict latency, real-time factor against the log's bus rate, detections."""
        lat = np.concatenate(self.latency) * 1e3 if self.latency else np.zeros(1)
        frames = int(sum(map(len, self.latency)))
        span = (self.last_ts - self.first_ts) if frames > 1 else 0.0
        bus = (frames - 1) / span if span > 0 else 0.0
        fps, capacity = frames / wall_s if wall_s > 0 else 0.0, frames / self.busy_s if self.busy_s > 0 else 0.0
        result = {"frames": frames, "malformed_skipped": self.malformed, "wall_s": wall_s, "busy_s": self.busy_s,
                  "frames_per_s": fps, "capacity_frames_per_s": capacity, "bus_rate_frames_per_s": bus,
                  "log_span_s": span, "real_time_factor": fps / bus if bus else 0.0,
                  "capacity_real_time_factor": capacity / bus if bus else 0.0,
                  "batches": self.batches, "mean_batch": frames / max(self.batches, 1),
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


def stream_fd(detector, fd, *, max_batch=256, max_latency_s=0.005, chunk=1 << 16):
    """Read ``fd`` as lines arrive; run a batch when ``max_batch`` frames wait or the oldest waited
    ``max_latency_s``. Returns the wall time from the first read to the last verdict."""
    carry, lines, arrivals, begin = b"", [], [], None
    while True:
        waiting = max(0.0, arrivals[0] + max_latency_s - time.perf_counter()) if lines else None
        if lines and not select.select([fd], [], [], waiting)[0]:
            detector.process(lines, arrivals)
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
            detector.process(lines[:max_batch], arrivals[:max_batch])
            lines, arrivals = lines[max_batch:], arrivals[max_batch:]
    if carry.strip():
        lines.append(carry.decode("ascii", "replace"))
        arrivals.append(time.perf_counter())
    if lines:
        detector.process(lines, arrivals)
    return time.perf_counter() - (begin or time.perf_counter())


def stream_replay(detector, lines, *, speed, max_batch=256, max_latency_s=0.005):
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
            detector.process(lines[done:stop], due[done:stop])
            done = stop
            continue
        # sleep until the oldest waiting frame's deadline, or the arrival that fills a batch
        wake = min(due[done] + max_latency_s, due[min(done + max_batch, total) - 1]) if waiting else due[done]
        time.sleep(max(0.0, wake - now))
    return time.perf_counter() - begin


def _print_alerts(ts, can_ids, classes, scores):
    sys.stdout.write("".join(f"{t:.6f},{i:03x},{c},{s:.3f}\n" for t, i, c, s in zip(ts, can_ids, classes, scores)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="CAN log file, or - for stdin")
    parser.add_argument("--max-batch", type=int, default=256, help="most frames per inference")
    parser.add_argument("--max-latency-ms", type=float, default=5.0, help="longest a frame waits for its batch")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (1 suits a small recurrent model)")
    parser.add_argument("--replay", type=float, default=None, help="pace arrivals at this multiple of the log's rate")
    parser.add_argument("--quiet", action="store_true", help="do not print one line per flagged frame")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent
    sys.path.insert(0, str(folder))
    try:
        import run  # the bundle's runtime: backends and manifest

        config = json.loads((folder / "ids_config.json").read_text())
        backend = run.open_backend(folder, run.load_manifest(folder), args.threads)
        name, output = config["input"], config["output"]
        alert = None if args.quiet else _print_alerts
        detector = StreamDetector(lambda tokens: backend.run({name: tokens})[output], window=config["window"],
                                  context=config["context"], classes=config["classes"], on_alert=alert)
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
