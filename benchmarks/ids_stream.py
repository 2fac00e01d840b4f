"""Can the ids-lsfidm bundle's streaming detector keep up with a CAN bus, and by how much?

Generates a one-minute Car-Hacking-style log (normal traffic plus injection bursts), then runs the bundle's
``detect.py`` on it as a device would (a child Python, numpy + the runtime): once as fast as the file can be
read (frames/s, real-time factor against the log's own bus rate, arrival-to-verdict latency), and once with
arrivals paced by the log's timestamps at ``--replay`` x real time (latency when frames trickle in). The
bundle is ``--bundle`` (a folder or .tar.gz), else ``runs/ids-lsfidm/bundle/ids-lsfidm-student`` from
``compress run ids-lsfidm``, else one built here from a briefly trained student (speed does not depend on
the weights; the detection figures then mean little). Run:

    python benchmarks/ids_stream.py [--bundle DIR] [--attack fuzzy] [--seconds 60] [--replay 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "runs" / "ids-lsfidm" / "bundle" / "ids-lsfidm-student"


def build_bundle(folder: Path) -> Path:
    """A bundle from a student trained for a few hundred steps on generated data (for timing only)."""
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext
    from compressor.targets.bundle import create_bundle
    from compressor.targets.onnx import ExportOptions, export_onnx
    from compressor.targets.table import load_target

    recipe = load_recipe("ids-lsfidm", quick=True)
    context = RunContext(out_dir=folder, seed=0, quick=True, stage=lambda text: print(f"  {text}"))
    task = TASKS.get(recipe.task)(recipe.settings, context)
    task.check_inputs()
    role = task._student(None, kd=False)  # the no-KD path: no teacher needed
    onnx = export_onnx(role.model, task.input_specs(), role.output_names, folder / "student.onnx", ExportOptions())
    artifact = load_target("onnxruntime").build(onnx.path, precision="fp32", out_dir=folder)
    return create_bundle(artifact, folder / "bundle", name="ids-bench", extras=task.bundle_extras()).folder


def resolve_bundle(path: str | None, scratch: Path) -> Path:
    if path is None:
        if DEFAULT_BUNDLE.is_dir():
            return DEFAULT_BUNDLE
        print("no bundle given and none in runs/: building one from a briefly trained student")
        return build_bundle(scratch)
    bundle = Path(path)
    if bundle.is_file():
        with tarfile.open(bundle) as tar:
            tar.extractall(scratch / "extracted", filter="data")
        return next((scratch / "extracted").iterdir())
    return bundle


def detect(bundle: Path, log: Path, *args: str) -> dict:
    """Run the bundle's detect.py in a child Python with no toolchain on its path; return its JSON summary."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", str(bundle / "detect.py"), str(log), "--json", "--quiet", *args],
                          cwd=bundle, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"detect.py failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(name: str, r: dict) -> str:
    lat = r["latency_ms"]
    return (f"| {name} | {r['frames']:,} | {r['frames_per_s']:,.0f} | {r['real_time_factor']:.1f}x | "
            f"{lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {r['mean_batch']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", help="bundle folder or .tar.gz (default: runs/ids-lsfidm or build one)")
    parser.add_argument("--attack", default="fuzzy", choices=["none", "dos", "fuzzy", "gear", "rpm"])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the generated log")
    parser.add_argument("--replay", type=float, default=10.0, help="paced run at this multiple of real time")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads per batch")
    parser.add_argument("--workers", type=int, default=2, help="batches in flight at once")
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--max-latency-ms", type=float, default=5.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from compressor.distill.data.can_generator import (
        GeneratorConfig,
        generate,
        write_log,
    )

    with tempfile.TemporaryDirectory(prefix="ids-stream-") as tmp:
        scratch = Path(tmp)
        bundle = resolve_bundle(args.bundle, scratch)
        attack = None if args.attack == "none" else args.attack
        frames = generate(GeneratorConfig(duration_s=args.seconds, attack=attack, seed=2024))
        log = write_log(frames, scratch / f"{args.attack}-{args.seconds:.0f}s.csv")
        options = ["--threads", str(args.threads), "--workers", str(args.workers), "--max-batch", str(args.max_batch),
                   "--max-latency-ms", str(args.max_latency_ms)]
        full = detect(bundle, log, *options)
        paced = detect(bundle, log, *options, "--replay", str(args.replay))
    print(f"bundle {bundle}\nload average before: {os.getloadavg()[0]:.2f}\nlog: {args.seconds:.0f} s, {args.attack} bursts, {len(frames):,} frames, "
          f"{int(frames.flag.sum()):,} injected, bus rate {full['bus_rate_frames_per_s']:,.0f} frames/s; "
          f"{os.cpu_count()} CPUs, {args.workers} workers x {args.threads} runtime thread(s), max batch {args.max_batch}, "
          f"max wait {args.max_latency_ms} ms\n")
    print("| run | frames | frames/s | real-time factor | p50 ms | p90 ms | p99 ms | max ms | mean batch |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(row("as fast as the file reads", full))
    print(row(f"paced at {args.replay:g}x real time", paced))
    flags = full.get("against_log_flags")
    if flags:
        print(f"\nagainst the log's T/R flags: precision {flags['precision']:.4f}, recall {flags['recall']:.4f} "
              f"(tp {flags['tp']}, fp {flags['fp']}, fn {flags['fn']})")
    verdict = "keeps up" if full["real_time_factor"] >= 10 else "does NOT keep up"
    print(f"\n{verdict} with 10x the bus rate: {full['real_time_factor']:.1f}x "
          f"({full['frames_per_s']:,.0f} frames/s against {full['bus_rate_frames_per_s']:,.0f} frames/s)")


if __name__ == "__main__":
    main()
