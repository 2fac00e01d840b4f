#!/usr/bin/env python3
"""Jetson bundle steps, run ON the device (TensorRT 10 with trtexec; numpy only, no torch).

    python jetson.py build      # trtexec builds model.engine from the bundle's ONNX with the recorded settings
    python jetson.py profile    # trtexec times the engine; writes profile.json in `compress profile`'s format

Engines are never shipped: they are tied to the GPU and the TensorRT version, so they are built here.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
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

from .errors import print_error  # noqa: E402  (siblings: after the package is set up)
from .measurement import host_info, latency_stats  # noqa: E402

HERE = Path(__file__).resolve().parent
TRTEXEC_FALLBACKS = ("/usr/src/tensorrt/bin/trtexec",)
"""Where JetPack installs trtexec, which is not on PATH by default."""


def find_trtexec(path=None, fallbacks=TRTEXEC_FALLBACKS) -> str:
    """``trtexec`` on PATH (or ``path``), else the first executable of ``fallbacks``; FileNotFoundError naming both."""
    found = shutil.which("trtexec", path=path)
    if found:
        return found
    for candidate in fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"trtexec is not on PATH nor in {', '.join(os.path.dirname(f) for f in fallbacks)}: "
                            f"install TensorRT (JetPack) or add trtexec's folder to PATH")


def trtexec_command(args) -> list:
    """``args`` (a recorded trtexec command) with trtexec's full path; ValueError if it is not a trtexec command."""
    if not isinstance(args, list) or not args or args[0] != "trtexec" or not all(isinstance(a, str) for a in args):
        raise ValueError("the manifest's build command is not a trtexec command")
    return [find_trtexec(), *args[1:]]


def build(manifest: dict) -> int:
    """Run the recorded trtexec build command."""
    command = trtexec_command(manifest["jetson"]["build_command"])
    print(" ".join(command))
    return subprocess.call(command, cwd=HERE)


def profile(manifest: dict, seconds: float = 3.0) -> int:
    """Time the engine with trtexec (warm-up 200 ms, >= 10 iterations and ``seconds``) and convert its times."""
    times = HERE / "times.json"
    jetson = manifest["jetson"]
    command = [find_trtexec(), f"--loadEngine={jetson['engine']}", "--warmUp=200", "--iterations=10",
               f"--duration={seconds:g}", f"--exportTimes={times.name}", *jetson.get("shape_args", [])]
    code = subprocess.call(command, cwd=HERE)
    if code != 0:
        return code
    result = profile_from_times(json.loads(times.read_text()), manifest, seconds)
    (HERE / "profile.json").write_text(json.dumps(result, indent=2))
    print(f"median {result['latency_ms']['median']:.3f} ms, p99 {result['latency_ms']['p99']:.3f} ms -> profile.json")
    return 0


def profile_from_times(records: list, manifest: dict, seconds: float) -> dict:
    """trtexec's --exportTimes records -> the JSON `compress profile` writes (same statistics and protocol keys)."""
    jetson = manifest["jetson"]
    latencies = [r["latencyMs"] for r in records]
    wall_s = (records[-1]["endHostMs"] - records[0]["startHostMs"]) / 1000.0 if len(records) > 1 else 0.0
    result = latency_stats(latencies, batch=jetson.get("batch", 1), wall_s=wall_s)
    result["protocol"] = {
        "warmup_s": 0.2, "min_iterations": 10, "min_duration_s": seconds, "timed_s": wall_s,
        "batch": jetson.get("batch", 1), "timer": "trtexec --exportTimes (H2D + GPU compute + D2H per query)",
        "inputs": "trtexec bindings, allocated once", "runtime": "tensorrt",
        "runtime_version": _trt_version(), "host": {**host_info(), "device": platform.node()},
        "latency": "trtexec latencyMs: H2D + compute + D2H",
    }
    result.update({"target": "tensorrt", "precision": manifest["precision"], "device": "jetson",
                   "artifact": jetson["engine"], "warnings": []})
    return result


def _trt_version() -> str:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        return "unknown (trtexec)"


def main(argv=None) -> int:
    """``build`` or ``profile [SECONDS]``; anything else prints the usage."""
    args = argv if argv is not None else sys.argv[1:]
    if not args or args[0] not in ("build", "profile"):
        print(__doc__)
        return 2
    try:
        manifest = json.loads((HERE / "manifest.json").read_text())
        seconds = float(args[1]) if len(args) > 1 else 3.0
        if not (math.isfinite(seconds) and 0 < seconds <= 3600):
            raise ValueError(f"profile seconds must be above 0 and at most 3600, not {args[1]}")
        return build(manifest) if args[0] == "build" else profile(manifest, seconds)
    except (OSError, ValueError, KeyError) as exc:
        return print_error(exc)


if __name__ == "__main__":
    sys.exit(main())
