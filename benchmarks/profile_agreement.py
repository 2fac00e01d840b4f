"""Does `compress profile` agree with the runtimes' own tools? One table for the recipes' students.

For each student (SR: span_tiny, IDS: lsfidm_bilstm, tracking: ortrack_d_cpu, text: text_student; their
registered input specs at small, static shapes), exports the ONNX, builds ONNX Runtime FP32 and OpenVINO FP32,
and measures, one after the other, with the same threads and seconds:

- ours: `compress profile --isolate` (a fresh process per engine, median of the timed calls);
- ONNX Runtime's own profiler: the session's profiling JSON, median duration of its ``model_run`` events
  (same IOBinding call as ours; warm-up runs dropped);
- OpenVINO's ``benchmark_app`` (synchronous API, hint none with one stream and ``-nthreads``, f32 inference precision,
  ``-shape``), its median latency.

Prints ours, theirs, the ratio and whether it is within 5 %. Timings on a shared machine are noisy: run it
on a quiet one, more ``--seconds`` and ``--rounds`` for firmer numbers.

    python benchmarks/profile_agreement.py [--seconds 3] [--threads 1] [--rounds 1] [--models span_tiny ...]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDENTS = {  # recipe -> (student model, small static input shapes: None keeps the model's example sizes)
    "sr-dsclora": ("span_tiny", {"image": (1, 3, 64, 64)}),
    "ids-lsfidm": ("lsfidm_bilstm", None),
    "track-ortrack": ("ortrack_d_cpu", None),
    "text-minilm": ("text_student", None),
}
TOLERANCE = 0.05


def export_static(model: str, shapes: dict | None, folder: Path):
    """The student's ONNX at fixed shapes (its registered specs, dynamic axes set to ``shapes`` or examples)."""
    from compressor.models.spec import load_model_spec, resolve_input_specs
    from compressor.targets.onnx import ExportOptions, export_onnx
    from compressor.targets.profile import timed_specs

    loaded = load_model_spec(model)
    specs, _ = timed_specs(resolve_input_specs(loaded, []), shapes, 1)
    return export_onnx(loaded.model, specs, loaded.output_names, folder / f"{model}.onnx",
                       ExportOptions(source=model))


def ours(artifact, seconds: float, threads: int) -> float:
    """Median latency (ms) from `compress profile --isolate` (through its Python entry point)."""
    from compressor.targets.isolated_profile import profile_isolated
    from compressor.targets.profile import ProfileOptions

    options = ProfileOptions(threads=threads, warmup_s=1.0, min_iterations=20, min_duration_s=seconds)
    return profile_isolated(artifact, options)["latency_ms"]["median"]


def ort_profiler(artifact, seconds: float, threads: int, folder: Path) -> float:
    """Median ``model_run`` duration (ms) from ONNX Runtime's own profiling JSON, same IOBinding call as ours."""
    import numpy as np
    import onnxruntime as ort

    from compressor.core.feeds import random_feed

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(folder / f"ort_{artifact.path.stem}")
    session = ort.InferenceSession(str(artifact.path), sess_options=opts, providers=["CPUExecutionProvider"])
    feed = random_feed(artifact.inputs, batch=1, rng=np.random.default_rng(0))
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(array))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cpu")
    warm, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0 or warm == 0:
        session.run_with_iobinding(binding)
        warm += 1
    timed, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or timed < 20:
        session.run_with_iobinding(binding)
        timed += 1
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e["dur"] / 1000.0 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    return statistics.median(runs[warm:] or runs)


def benchmark_app(artifact, seconds: float, threads: int, folder: Path) -> float:
    """Median latency (ms) from OpenVINO's benchmark_app on the same IR, shapes, threads and precision."""
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    report = folder / f"bench_{artifact.path.stem}"
    report.mkdir(parents=True, exist_ok=True)
    shape = ",".join(f"{s.name}[{','.join(str(d) for d in s.shape)}]" for s in artifact.inputs)
    command = [tool, "-m", str(artifact.path), "-d", "CPU", "-api", "sync", "-hint", "none", "-nstreams", "1",
               "-nthreads", str(threads), "-t", str(max(1, round(seconds))), "-shape", shape,
               "-infer_precision", "f32", "-json_stats", "-report_type", "no_counters", "-report_folder", str(report)]
    if all(s.dtype == "float32" for s in artifact.inputs):
        command += ["-ip", "f32"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark_app failed: {(done.stdout + done.stderr).strip().splitlines()[-1:]}")
    printed = re.search(r"Median:\s+([0-9.]+)\s*(us|ms)", done.stdout)  # the printed median has more digits
    if printed:
        return float(printed.group(1)) / (1000.0 if printed.group(2) == "us" else 1.0)
    stats = json.loads((report / "benchmark_report.json").read_text())
    return float(_find_median(stats))


def _find_median(stats):
    """The median latency in benchmark_app's JSON report (its key is ``latency (ms)`` or ``median latency``)."""
    if isinstance(stats, dict):
        for key in ("latency (ms)", "median latency (ms)", "Median"):
            if key in stats and not isinstance(stats[key], (dict, list)):
                return stats[key]
        for value in stats.values():
            found = _find_median(value)
            if found is not None:
                return found
    elif isinstance(stats, list):
        for value in stats:
            found = _find_median(value)
            if found is not None:
                return found
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement this many times")
    parser.add_argument("--models", nargs="*", default=None, help="students to run (default: every recipe's)")
    args = parser.parse_args()
    from compressor.core.machine import snapshot
    from compressor.runtime.measurement import host_info
    from compressor.targets.table import load_target

    chosen = {r: s for r, s in STUDENTS.items() if args.models is None or s[0] in args.models}
    rows = []
    before = snapshot()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for recipe, (model, shapes) in chosen.items():
            onnx = export_static(model, shapes, folder)
            ort_art = load_target("onnxruntime").build(onnx.path, precision="fp32", out_dir=folder)
            ov_art = load_target("openvino").build(onnx.path, precision="fp32", out_dir=folder)
            shape = "; ".join(f"{s.name} {'x'.join(map(str, s.shape))}" for s in onnx.inputs)
            for round_ in range(args.rounds):
                mine = ours(ort_art, args.seconds, args.threads)
                theirs = ort_profiler(ort_art, args.seconds, args.threads, folder)
                rows.append((recipe, model, shape, "onnxruntime fp32", "ORT profiler", mine, theirs))
                mine = ours(ov_art, args.seconds, args.threads)
                theirs = benchmark_app(ov_art, args.seconds, args.threads, folder)
                rows.append((recipe, model, shape, "openvino fp32", "benchmark_app", mine, theirs))
    after = snapshot()
    host = host_info()
    print(f"{host['cpu_model']}, {host['cpus']} logical CPUs, {args.threads} thread(s), {args.seconds:g} s per "
          f"measurement, load average {before.get('load1', '?')} -> {after.get('load1', '?')}")
    header = ("recipe", "student", "input", "engine", "reference", "ours ms", "theirs ms", "ratio", "within 5%")
    table = [header] + [(r, m, s, e, ref, f"{a:.3f}", f"{b:.3f}", f"{a / b:.3f}",
                         "yes" if abs(a / b - 1) <= TOLERANCE else "no") for r, m, s, e, ref, a, b in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
