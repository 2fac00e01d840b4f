#!/usr/bin/env python3
"""Standalone runner of an edge-compress deployment bundle.

Needs only numpy and the bundle's runtime (onnxruntime or openvino): no torch, not edge-compress.
The toolchain itself uses the backends and the timing loop in this file, so what a bundle measures
on the device is measured the same way as on the desktop.

    python run.py --selftest              # golden inputs -> outputs within the manifest's tolerance
    python run.py --profile --json        # latency statistics, same JSON as `compress profile`
    python run.py --input x.npz --output y.npz
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
COV_WARNING = 0.10
STATIC_SHAPE_CACHE = 8  # OpenVINO static-shape compilations kept per model


# ---------------------------------------------------------------- backends
class OnnxRuntimeBackend:
    """An ONNX Runtime session; ``provider`` is 'auto' (TensorRT, CUDA, CPU as available) or one name."""

    runtime = "onnxruntime"

    def __init__(self, path, options=None, threads=None):
        import onnxruntime as ort

        options = options or {}
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        self.providers = select_providers(ort.get_available_providers(), str(options.get("provider", "auto")))
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.version = ort.__version__

    def run(self, feed):
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feed))))

    def bind(self, feed):
        """Bind inputs once (IOBinding); return a no-argument call that runs on them."""
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        session = self.session
        return lambda: session.run_with_iobinding(binding)


def select_providers(available, requested="auto"):
    """Providers in preference order; a named one that is absent raises ValueError."""
    if requested == "auto":
        return [p for p in PROVIDER_ORDER if p in available]
    aliases = {p.lower().replace("executionprovider", ""): p for p in available}
    name = aliases.get(requested.lower(), requested)
    if name not in available:
        raise ValueError(f"ONNX Runtime provider '{requested}' is not available; available: {', '.join(available)}")
    return [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]


class OpenVinoBackend:
    """A compiled OpenVINO model with an explicit inference precision, read back and checked.

    ``static_shapes`` (an artifact option): compile one static-shape model per input shape seen (the last
    ``STATIC_SHAPE_CACHE`` kept), which OpenVINO's CPU plugin runs markedly faster than the dynamic-shape
    model (SPAN-Tiny at 128x128: about 13 vs 16 ms FP32, 7 vs 10 ms INT8). For fixed-size inputs (camera
    frames, tracker crops); leave it off where shapes vary per call (the IDS detector's batches).
    """

    runtime = "openvino"

    def __init__(self, path, options=None, threads=None):
        import openvino as ov

        options = options or {}
        self.device = str(options.get("device", "CPU"))
        self.config = {"INFERENCE_PRECISION_HINT": str(options.get("inference_precision", "f32")),
                       "PERFORMANCE_HINT": str(options.get("performance_hint", "LATENCY"))}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = str(int(threads))
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.static_shapes = bool(options.get("static_shapes", False))
        self._by_shape = {}  # input shapes -> (compiled, request), most recent last
        self.compiled, self.request = (None, None) if self.static_shapes else self._compile(self.model)
        self.output_names = [o.get_any_name() for o in self.model.outputs]
        self.version = ov.get_version()

    def _compile(self, model):
        compiled = self.core.compile_model(model, self.device, self.config)
        actual = compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = actual.to_string() if hasattr(actual, "to_string") else str(actual)
        if actual != self.config["INFERENCE_PRECISION_HINT"]:
            raise ValueError(f"OpenVINO on {self.device} runs {actual}, not the requested "
                             f"{self.config['INFERENCE_PRECISION_HINT']}")
        return compiled, compiled.create_infer_request()

    def _for_shapes(self, feed):
        """The (compiled, request) to run ``feed`` on: the dynamic model, or one compiled for these shapes."""
        if not self.static_shapes:
            return self.compiled, self.request
        key = tuple(sorted((name, tuple(np.shape(array))) for name, array in feed.items()))
        if key not in self._by_shape:
            model = self.model.clone()
            model.reshape({name: list(shape) for name, shape in key})
            self._by_shape[key] = self._compile(model)
            while len(self._by_shape) > STATIC_SHAPE_CACHE:
                self._by_shape.pop(next(iter(self._by_shape)))
        self._by_shape[key] = self._by_shape.pop(key)  # most recently used last
        return self._by_shape[key]

    def run(self, feed):
        compiled, request = self._for_shapes(feed)
        result = request.infer(dict(feed))
        return {name: np.array(result[port]) for name, port in zip(self.output_names, compiled.outputs)}

    def bind(self, feed):
        """Set input tensors once (shared memory); return a no-argument call that runs on them."""
        import openvino as ov

        _, request = self._for_shapes(feed)
        self._bound = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        for name, array in self._bound.items():
            request.set_tensor(name, ov.Tensor(array, shared_memory=True))
        return lambda: request.infer()


BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "onnx": OnnxRuntimeBackend, "openvino": OpenVinoBackend}


# ---------------------------------------------------------------- timing
def timed_loop(call, *, warmup_s=0.5, min_iterations=50, min_duration_s=3.0):
    """Warm up for ``warmup_s``, then time at least ``min_iterations`` calls AND ``min_duration_s`` seconds.

    Returns (per-call latencies in ms, timed wall seconds, warm-up call count).
    """
    warm_calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < warmup_s or warm_calls == 0:
        call()
        warm_calls += 1
    samples = []
    begin = time.perf_counter()
    while len(samples) < min_iterations or time.perf_counter() - begin < min_duration_s:
        t0 = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples, time.perf_counter() - begin, warm_calls


def latency_stats(samples_ms, *, batch, wall_s):
    """min/median/mean/p90/p95/p99/max/std in ms, coefficient of variation and throughput (samples/s)."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    mean = float(arr.mean())
    stats = {"min": float(arr.min()), "median": float(np.median(arr)), "mean": mean,
             "p90": float(np.percentile(arr, 90)), "p95": float(np.percentile(arr, 95)),
             "p99": float(np.percentile(arr, 99)), "max": float(arr.max()), "std": float(arr.std())}
    return {"latency_ms": stats, "cov": float(arr.std() / mean) if mean > 0 else 0.0,
            "throughput_fps": len(arr) * batch / wall_s if wall_s > 0 else 0.0, "iterations": len(arr)}


def host_info():
    """What the numbers were measured on."""
    return {"machine": platform.machine(), "processor": platform.processor() or _cpu_model(),
            "cpus": os.cpu_count(), "system": platform.system(), "python": platform.python_version()}


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def measure_call(call, *, batch, threads=None, runtime="", runtime_version="", warmup_s=0.5, min_iterations=50,
                 min_duration_s=3.0, cov_warning=COV_WARNING):
    """Profile a no-argument ``call`` whose inputs are already bound; the result embeds its protocol."""
    samples, wall, warm_calls = timed_loop(call, warmup_s=warmup_s, min_iterations=min_iterations,
                                           min_duration_s=min_duration_s)
    result = latency_stats(samples, batch=batch, wall_s=wall)
    result["protocol"] = {
        "warmup_s": warmup_s, "warmup_calls": warm_calls, "min_iterations": min_iterations,
        "min_duration_s": min_duration_s, "timed_s": wall, "batch": batch, "threads": threads,
        "timer": "time.perf_counter_ns per synchronous call", "inputs": "bound once before timing",
        "runtime": runtime, "runtime_version": runtime_version, "host": host_info(),
        "latency": "wall time of one synchronous inference, host memory in and out",
    }
    result["warnings"] = []
    if result["cov"] > cov_warning:
        result["warnings"].append(f"latency varies a lot (coefficient of variation {result['cov']:.1%} > "
                                  f"{cov_warning:.0%}): the machine is noisy; compare numbers from one run only")
    return result


def measure(backend, feed, *, batch, threads=None, **protocol):
    """Profile ``backend`` on ``feed``, bound once outside the timed loop."""
    return measure_call(backend.bind(feed), batch=batch, threads=threads, runtime=backend.runtime,
                        runtime_version=backend.version, **protocol)


# ---------------------------------------------------------------- bundle
def load_manifest(folder):
    return json.loads((Path(folder) / "manifest.json").read_text())


def open_backend(folder, manifest, threads=None):
    """The backend named by the manifest, over the bundle's model file."""
    return BACKENDS[manifest["target"]](Path(folder) / manifest["model"]["path"], manifest["model"].get("options"),
                                        threads)


def read_golden(folder):
    """(inputs, outputs) dicts from the bundle's golden.npz."""
    with np.load(Path(folder) / "golden.npz", allow_pickle=False) as data:
        inputs = {k[len("input."):]: data[k] for k in data.files if k.startswith("input.")}
        outputs = {k[len("output."):]: data[k] for k in data.files if k.startswith("output.")}
    return inputs, outputs


def selftest(folder):
    """Run the golden inputs; return (passed, {output: max abs error})."""
    manifest = load_manifest(folder)
    tol = manifest["selftest_tolerance"]
    inputs, expected = read_golden(folder)
    got = open_backend(folder, manifest).run(inputs)
    errors, passed = {}, True
    for name, want in expected.items():
        have = np.asarray(got[name], dtype=np.float64)
        diff = np.abs(have - want.astype(np.float64))
        errors[name] = float(diff.max()) if diff.size else 0.0
        bound = tol["atol"] + tol["rtol"] * float(np.abs(want).max(initial=0.0))
        within = np.all(diff <= bound) if tol.get("stat", "elementwise") == "elementwise" else diff.mean() <= bound
        passed = passed and bool(np.all(np.isfinite(have))) and bool(within)
    return passed, errors


def random_feed(specs, batch, seed=0):
    """Inputs for profiling: uniform in each declared range, symbolic dims at their example sizes."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape = [batch if i == 0 and isinstance(d, str) else (d if isinstance(d, int) else spec["examples"][d])
                 for i, d in enumerate(spec["shape"])]
        low, high = spec.get("range") or ([0.0, 1.0] if spec["dtype"].startswith("float") else [0, 2])
        if spec["dtype"].startswith("float"):
            feed[spec["name"]] = rng.uniform(low, high, size=shape).astype(spec["dtype"])
        else:
            feed[spec["name"]] = rng.integers(int(low), max(int(high), int(low) + 1), size=shape).astype(spec["dtype"])
    return feed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true", help="check golden inputs reproduce golden outputs")
    parser.add_argument("--profile", action="store_true", help="measure latency on this device")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds")
    parser.add_argument("--iterations", type=int, default=50, help="minimum timed iterations")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--input", help=".npz with one array per input name")
    parser.add_argument("--output", help="where to write outputs (.npz)")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent
    manifest = load_manifest(folder)
    status = 0
    try:
        if args.selftest:
            passed, errors = selftest(folder)
            print(json.dumps({"selftest": passed, "max_abs": errors}) if args.json else
                  f"selftest {'passed' if passed else 'FAILED'}: " + ", ".join(f"{k} max abs {v:.3g}" for k, v in errors.items()))
            status = 0 if passed else 1
        if args.profile:
            backend = open_backend(folder, manifest, args.threads)
            result = measure(backend, random_feed(manifest["inputs"], args.batch), batch=args.batch,
                             threads=args.threads, min_iterations=args.iterations, min_duration_s=args.seconds)
            lat = result["latency_ms"]
            print(json.dumps(result, indent=2) if args.json else
                  f"median {lat['median']:.3f} ms  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
                  f"{result['throughput_fps']:.1f} samples/s  (cov {result['cov']:.1%})")
            for warning in result["warnings"]:
                print(f"warning: {warning}", file=sys.stderr)
        if args.input:
            with np.load(args.input, allow_pickle=False) as data:
                feed = {k: data[k] for k in data.files}
            outputs = open_backend(folder, manifest, args.threads).run(feed)
            if args.output:
                np.savez(args.output, **outputs)
            else:
                print({k: v.shape for k, v in outputs.items()})
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
        return 2
    if not (args.selftest or args.profile or args.input):
        parser.print_help()
    return status


if __name__ == "__main__":
    sys.exit(main())
