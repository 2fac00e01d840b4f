#!/usr/bin/env python3
"""Standalone runner of an edge-compress deployment bundle.

Needs only numpy and the bundle's runtime (onnxruntime or openvino): no torch, not edge-compress.
The toolchain itself uses the backends and the timing loop beside this file, so what a bundle measures
on the device is measured the same way as on the desktop.

    python run.py --selftest              # golden inputs -> outputs within the manifest's tolerance
    python run.py --profile --json        # latency statistics, same JSON as `compress profile`
    python run.py --input x.npz --output y.npz
"""
from __future__ import annotations

import argparse
import json
import sys
import types
import zipfile
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

from .backends import open_backend  # noqa: E402  (siblings: after the package is set up)
from .bundle import load_manifest, selftest  # noqa: E402
from .errors import OneLineParser, int_between, number_between, print_error  # noqa: E402
from .feeds import MAX_FEED_BYTES, feed_bytes, load_feed, random_feed, save_outputs  # noqa: E402
from .measurement import MAX_BATCH, MAX_DURATION_S, MAX_ITERATIONS, max_threads, measure  # noqa: E402


def main(argv=None):
    """The bundle's command line: self-test, profile, or run on inputs from an .npz."""
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true", help="check golden inputs reproduce golden outputs")
    parser.add_argument("--profile", action="store_true", help="measure latency on this device")
    parser.add_argument("--batch", type=int_between(1, MAX_BATCH), default=1, help="samples per inference (profile)")
    parser.add_argument("--threads", type=int_between(1, max_threads()), default=None, help="runtime threads")
    parser.add_argument("--seconds", type=number_between(0.0, MAX_DURATION_S), default=3.0,
                        help="minimum timed seconds")
    parser.add_argument("--iterations", type=int_between(1, MAX_ITERATIONS), default=50,
                        help="minimum timed iterations")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--input", help=".npz with one array per input name")
    parser.add_argument("--output", help="where to write outputs (.npz)")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent
    status = 0
    try:
        manifest = load_manifest(folder)
        if args.selftest:
            passed, errors = selftest(folder)
            print(json.dumps({"selftest": passed, "max_abs": errors}) if args.json else
                  f"selftest {'passed' if passed else 'FAILED'}: "
                  + ", ".join(f"{k} max abs {v:.3g}" for k, v in errors.items()))
            status = 0 if passed else 1
        if args.profile:
            needed = feed_bytes(manifest["inputs"], args.batch)
            if needed > MAX_FEED_BYTES:
                raise ValueError(f"--batch {args.batch} needs {needed / 1024 ** 3:.1f} GiB of inputs; "
                                 f"at most {MAX_FEED_BYTES / 1024 ** 3:.0f} GiB")
            backend = open_backend(folder, manifest, args.threads)
            result = measure(backend, random_feed(manifest["inputs"], args.batch), batch=args.batch,
                             threads=args.threads, min_iterations=args.iterations, min_duration_s=args.seconds)
            result = {**engine_identity(manifest), **result}
            lat = result["latency_ms"]
            print(json.dumps(result, indent=2) if args.json else
                  f"median {lat['median']:.3f} ms  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
                  f"{result['throughput_fps']:.1f} samples/s  (cov {result['cov']:.1%})")
            for warning in result["warnings"]:
                print(f"warning: {warning}", file=sys.stderr)
        if args.input:
            feed = load_feed(args.input, manifest["inputs"])
            outputs = open_backend(folder, manifest, args.threads).run(feed)
            if args.output:
                save_outputs(args.output, outputs)
            else:
                print({k: v.shape for k, v in outputs.items()})
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        return print_error(exc)
    if not (args.selftest or args.profile or args.input):
        parser.print_help()
    return status


def engine_identity(manifest):
    """What the profile measured, from the manifest: the bundle, its target and precision (and INT8 quantizer),
    so `compress report RUN --device-profile` can name the engine as `compress profile --json` does."""
    options = manifest.get("model", {}).get("options", {}) if isinstance(manifest.get("model"), dict) else {}
    identity = {"bundle": manifest.get("name"), "target": manifest.get("target"),
                "precision": manifest.get("precision")}
    if manifest.get("precision") == "int8" and isinstance(options, dict) and options.get("quantizer"):
        identity["quantizer"] = options["quantizer"]
    return identity


if __name__ == "__main__":
    sys.exit(main())
