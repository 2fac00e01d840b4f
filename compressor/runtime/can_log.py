"""CAN logs -> frames: the log formats a bundle's detector reads, detected from the first line.

- Car-Hacking CSV ``ts,id,dlc,d0..d{dlc-1},flag`` (no header; the flag column moves with the DLC; T/R);
- ``normal_run_data.txt``: ``Timestamp: 1479121434.850202   ID: 0350   000   DLC: 8   05 28 ...``;
- candump ``-L`` lines ``(1436509052.249713) can0 123#DEADBEEF``.

The toolchain parses its training captures with this same code.
"""
from __future__ import annotations

import sys

import numpy as np

FLAGS = {"T": 1, "R": 0}  # Car-Hacking: T injected, R normal; -1 = no label in the log
HEX = set("0123456789abcdefABCDEF")


class CanLogError(ValueError):
    """A malformed log line; the message names the source and the line number."""


class Frames:
    """Parsed frames as columns: ``ts`` float64, ``can_id``/``dlc`` int64, ``data`` uint8 N x 8 (zero past
    the DLC), ``flag`` int8 (1 injected, 0 normal, -1 unlabelled)."""

    def __init__(self, ts, can_id, dlc, data, flag):
        self.ts, self.can_id, self.dlc, self.data, self.flag = ts, can_id, dlc, data, flag

    def __len__(self):
        return len(self.ts)


def _hex(text):
    """An identifier in hexadecimal digits only (``int(..., 16)`` would also take ``_``, signs and spaces)."""
    text = text.strip()
    if not text or not set(text) <= HEX:
        raise ValueError(text)
    return int(text, 16)


def _csv(line):
    f = line.split(",")
    dlc, ident = int(f[2]), _hex(f[1])
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
    return float(f[1]), _hex(f[3]), dlc, bytes.fromhex(" ".join(f[7:])), -1


def _candump(line):
    f = line.split()
    if len(f) != 3 or f[0][0] != "(" or f[0][-1] != ")":
        raise ValueError
    ident, _, payload = f[2].partition("#")
    data = b"" if payload[:1] == "R" else bytes.fromhex(payload)
    if len(data) > 8 or not ident:
        raise ValueError
    return float(f[0][1:-1]), _hex(ident), len(data), data, -1


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
                  (f[2].strip().isascii() and f[2].strip().isdigit() and int(f[2]) <= 8, f"DLC {f[2]!r} is not 0..8")]
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
