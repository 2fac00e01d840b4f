#!/usr/bin/env python3
"""CAN logs -> tokens -> verdicts: the streaming intrusion detector of an ``ids-lsfidm`` bundle (``detect.py``).

Runs on the device with only numpy and the runtime: log parsing (``can_log.py``), tokenising
(``can_tokens.py``) and the streaming detector (``can_stream.py``) sit beside this file, the backend comes
from the bundle's engine files. Log formats, detected from the first line:

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
import sys
import types
from pathlib import Path

if not __package__:  # a script in a bundle folder (also under `python -I`): the folder's files form one package
    import importlib.machinery as _machinery

    class _SourceOnly(_machinery.SourceFileLoader):  # siblings compile from their .py: byte-code never read
        def get_code(self, fullname):
            path = self.get_filename(fullname)
            return self.source_to_code(self.get_data(path), path)

    _FOLDER = str(Path(__file__).resolve().parent)
    sys.dont_write_bytecode = True  # nor written; and no __pycache__ or native module in the folder is imported
    sys.path_importer_cache[_FOLDER] = _machinery.FileFinder(_FOLDER, (_SourceOnly, [".py"]))
    __package__ = "edge_compress_bundle"
    sys.modules.setdefault(__package__, types.ModuleType(__package__)).__path__ = [_FOLDER]

from .can_stream import StreamDetector, bundle_infer, stream_fd, stream_replay  # noqa: E402  (after the package)
from .errors import OneLineParser, int_between, number_between, print_error  # noqa: E402


def print_alerts(ts, can_ids, classes, scores):
    """One ``ts,id,class,score`` line per flagged frame on stdout."""
    sys.stdout.write("".join(f"{t:.6f},{i:03x},{c},{s:.3f}\n" for t, i, c, s in zip(ts, can_ids, classes, scores)))


def main(argv=None):
    """Classify every frame of a log (or stdin) with the bundle's model; print alerts and a summary."""
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", help="CAN log file, or - for stdin")
    parser.add_argument("--max-batch", type=int_between(1, 65536), default=128, help="most frames per inference")
    parser.add_argument("--max-latency-ms", type=number_between(0.0, 60_000.0), default=5.0,
                        help="longest a frame waits for its batch")
    parser.add_argument("--workers", type=int_between(1, 256), default=min(os.cpu_count() or 1, 2),
                        help="batches in flight at once, each on its own core")
    parser.add_argument("--threads", type=int_between(1, 1024), default=1,
                        help="runtime threads per batch (1 suits a small RNN)")
    parser.add_argument("--replay", type=number_between(0.0, 1e6), default=None,
                        help="pace arrivals at this multiple of the log's rate")
    parser.add_argument("--quiet", action="store_true", help="do not print one line per flagged frame")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent
    detector = None
    try:
        infer, config = bundle_infer(folder, args.threads)
        detector = StreamDetector(infer, window=config["window"], context=config["context"],
                                  classes=config["classes"], id_vocab=config.get("id_vocab"),
                                  on_alert=None if args.quiet else print_alerts, workers=max(1, args.workers))
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
        return print_error(exc)
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
