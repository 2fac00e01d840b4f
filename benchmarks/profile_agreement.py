"""Does `compress profile` agree with the runtimes' own tools? One table for the recipes' students.

For each recipe (SR: span_tiny, IDS: lsfidm_bilstm, tracking: ortrack_d, text: text_student), takes the
student the recipe deploys (its registered architecture, exportable form) and the input shapes the recipe's
report profiles (the task's ``profile_feed_specs``: SR 1x3x128x128, IDS 1x13 tokens, tracking template 128 and
search 256, text 1x32 tokens), exports the ONNX at those static shapes, builds ONNX Runtime FP32 and OpenVINO
FP32, and measures, one after the other, with the same threads and seconds:

- ``ours``: `compress profile --isolate` (a fresh process per engine, median of the timed calls); the timed call
  is the bound one (IOBinding bound once; OpenVINO tensors set once and ``infer()`` with no arguments);
- OpenVINO's ``benchmark_app`` (synchronous API, hint none with one stream and ``-nthreads``, f32 inference
  precision, ``-shape``), its median latency, against ``ours``;
- ONNX Runtime's own profiler. It times every node, which slows the whole run (a per-node cost: x1.3-1.8 on
  sub-millisecond students), so its ``model_run`` durations are no un-instrumented reference. The agreement
  check is of the two clocks on identical work: our harness's loop and clock (``timed_loop``) around the
  profiled session's calls against the profiler's ``model_run`` events of those same calls, warm-up dropped.
  The profiler's overhead (its median over the un-instrumented ``profile --isolate`` median) is its own column.

The last column, ``outside timer us``, is the median per call of our clock minus the runtime's own timer on
the same calls (ORT: ``model_run``; OpenVINO: ``InferRequest.latency``, the timer benchmark_app reports), in
microseconds: the cost of calling the runtime from Python (the binding; for OpenVINO's ``infer()`` also the copy
of the outputs into new arrays), which our latency includes, as every Python caller pays it, and
benchmark_app's excludes. It is 3-7 us a call on the sub-millisecond students and 40-230 us on the 15-40 ms
ones (OpenVINO copying SR's 3 MB output), under 1 % of their time, so it only shows on the 0.06 ms BiLSTM:
about 3.7 us there, 6 % of its time and the whole of its gap to benchmark_app.

Prints the machine, its load average before and after, and one table: a row per round (with the one-minute load
average when it began) and, with several rounds, a ``median`` row of each figure over all rounds. Timings on a
shared machine are noisy: a reference measured seconds after ours can see another load, which the same-calls
checks cannot; run it on a quiet one, more ``--seconds`` and ``--rounds`` for firmer numbers.

    python benchmarks/profile_agreement.py [--seconds 3] [--threads 1] [--rounds 1] [--recipes ids-lsfidm ...]
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

RECIPES = ("sr-dsclora", "ids-lsfidm", "track-ortrack", "text-minilm")
TOLERANCE = 0.05
WARMUP_S = 1.0
MIN_ITERATIONS = 20


def recipe_student(recipe_name: str, folder: Path):
    """(student name, exportable torch module, output names, the recipe's profile input specs)."""
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext
    from compressor.models.spec import load_model_spec, resolve_input_specs

    recipe = load_recipe(recipe_name)
    task = TASKS.get(recipe.task)(recipe.settings, RunContext(out_dir=folder, seed=recipe.seed, quick=False,
                                                              stage=lambda _: None))
    name = recipe.settings.student.model
    loaded = load_model_spec(name)
    if hasattr(loaded.model, "set_exportable"):  # trackers: explicit attention, as the pipeline exports them
        loaded.model.set_exportable(True)
    specs = task.profile_feed_specs()
    registered = [s.name for s in resolve_input_specs(loaded, [])]
    if registered != [s.name for s in specs]:
        raise RuntimeError(f"{recipe_name}: {name} takes {registered}, the recipe profiles {[s.name for s in specs]}")
    return name, loaded.model, loaded.output_names, specs


def export_static(model, output_names, specs, path: Path):
    """The student's ONNX at the fixed shapes of ``specs``."""
    from compressor.targets.onnx import ExportOptions, export_onnx

    return export_onnx(model, specs, output_names, path, ExportOptions(source=path.stem))


def ours(artifact, seconds: float, threads: int) -> float:
    """Median latency (ms) from `compress profile --isolate` (through its Python entry point)."""
    from compressor.targets.isolated_profile import profile_isolated
    from compressor.targets.profile import ProfileOptions

    options = ProfileOptions(threads=threads, warmup_s=WARMUP_S, min_iterations=MIN_ITERATIONS, min_duration_s=seconds)
    return profile_isolated(artifact, options)["latency_ms"]["median"]


def _feed(artifact):
    import numpy as np

    from compressor.core.feeds import random_feed

    return {k: np.ascontiguousarray(v) for k, v in
            random_feed(artifact.inputs, batch=1, rng=np.random.default_rng(0)).items()}


def ort_profiler(artifact, seconds: float, threads: int, folder: Path) -> tuple[float, float, float]:
    """Our harness's loop and clock around a profiling ORT session's bound calls, against the profiler's
    ``model_run`` events of the same calls: (our median ms, model_run median ms, median per-call difference us)."""
    import onnxruntime as ort

    from compressor.runtime.measurement import timed_loop

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(folder / f"ort_{artifact.path.stem}")
    session = ort.InferenceSession(str(artifact.path), sess_options=opts, providers=["CPUExecutionProvider"])
    binding = session.io_binding()  # the same bound call as OnnxRuntimeBackend.bind
    for name, array in _feed(artifact).items():
        binding.bind_cpu_input(name, array)
    for output in session.get_outputs():
        binding.bind_output(output.name, "cpu")
    samples, _, warm = timed_loop(lambda: session.run_with_iobinding(binding), warmup_s=WARMUP_S,
                                  min_iterations=MIN_ITERATIONS, min_duration_s=seconds)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e["dur"] / 1000.0 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    paired = min(len(samples), len(runs) - warm)  # the profiler stops recording at its event limit
    if paired < MIN_ITERATIONS:
        raise RuntimeError(f"ORT profiler recorded {len(runs)} model_run events for {warm + len(samples)} calls")
    mine, theirs = samples[:paired], runs[warm:warm + paired]
    return (statistics.median(mine), statistics.median(theirs),
            statistics.median(a - b for a, b in zip(mine, theirs)) * 1000.0)


def openvino_outside_timer(artifact, seconds: float, threads: int) -> float:
    """Median per call (us) of our clock minus OpenVINO's own request timer (``InferRequest.latency``, what
    benchmark_app reports) on the same bound calls of the runner `compress profile` uses."""
    from compressor.targets.table import open_runner

    with open_runner(artifact, threads=threads) as runner:
        call = runner.bind(_feed(artifact))
        request = runner.backend.request
        start = time.perf_counter()
        while time.perf_counter() - start < WARMUP_S:
            call()
        gaps, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds or len(gaps) < MIN_ITERATIONS:
            t0 = time.perf_counter_ns()
            call()
            wall = time.perf_counter_ns() - t0
            gaps.append(wall / 1000.0 - request.latency * 1000.0)
    return statistics.median(gaps)


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


def measure(recipe: str, folder: Path, args) -> list[tuple]:
    """The rows of one recipe's student: per round, ONNX Runtime against its profiler, OpenVINO against
    benchmark_app."""
    from compressor.targets.table import load_target

    name, model, output_names, specs = recipe_student(recipe, folder)
    onnx = export_static(model, output_names, specs, folder / f"{name}.onnx")
    ort_art = load_target("onnxruntime").build(onnx.path, precision="fp32", out_dir=folder)
    ov_art = load_target("openvino").build(onnx.path, precision="fp32", out_dir=folder)
    shape = "; ".join(f"{s.name} {'x'.join(map(str, s.shape))}" for s in onnx.inputs)
    ort_rows, ov_rows = [], []
    for round_ in range(1, args.rounds + 1):
        load = _load()
        isolated = ours(ort_art, args.seconds, args.threads)
        mine, theirs, outside = ort_profiler(ort_art, args.seconds, args.threads, folder)
        ort_rows.append((recipe, name, shape, "onnxruntime fp32", "ORT profiler, same calls", str(round_), load,
                         mine, theirs, isolated, outside))
        load = _load()
        isolated = ours(ov_art, args.seconds, args.threads)
        theirs = benchmark_app(ov_art, args.seconds, args.threads, folder)
        outside = openvino_outside_timer(ov_art, args.seconds, args.threads)
        ov_rows.append((recipe, name, shape, "openvino fp32", "benchmark_app", str(round_), load, isolated, theirs,
                        isolated, outside))
    return [row for rows in (ort_rows, ov_rows) for row in rows + _median_row(rows)]


def _load() -> str:
    """The one-minute load average now (the machine is shared: a busy row reads differently)."""
    from compressor.core.machine import snapshot

    return str(snapshot().get("load1", "?"))


def _median_row(rows: list[tuple]) -> list[tuple]:
    """With several rounds, one more row: the median over all rounds of each figure (every round is shown)."""
    if len(rows) < 2:
        return []
    medians = [statistics.median(row[i] for row in rows) for i in range(7, 11)]
    return [(*rows[0][:5], "median", "-", *medians)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement this many times")
    parser.add_argument("--recipes", nargs="*", default=None, choices=RECIPES,
                        help="recipes whose students to run (default: all)")
    args = parser.parse_args()
    from compressor.core.machine import snapshot
    from compressor.runtime.measurement import host_info

    rows = []
    before = snapshot()
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes or RECIPES:
            rows += measure(recipe, Path(tmp), args)
    after = snapshot()
    host = host_info()
    print(f"{host['cpu_model']}, {host['cpus']} logical CPUs, {args.threads} thread(s), {args.seconds:g} s per "
          f"measurement, load average {before.get('load1', '?')} -> {after.get('load1', '?')}")
    header = ("recipe", "student", "input", "engine", "compared with", "round", "load", "ours ms", "theirs ms",
              "ratio", "within 5%", "profile --isolate ms", "profiler overhead", "outside timer us")
    table = [header] + [(r, m, s, e, ref, n, load, f"{a:.3f}", f"{b:.3f}", f"{a / b:.3f}",
                         "yes" if abs(a / b - 1) <= TOLERANCE else "no", f"{iso:.3f}",
                         f"x{b / iso:.2f}" if ref.startswith("ORT") else "-", f"{gap:.1f}")
                        for r, m, s, e, ref, n, load, a, b, iso, gap in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
