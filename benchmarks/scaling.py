"""How much faster is a recipe's distillation on two processes than on one, on this machine?

Times the distillation stage of sr-dsclora at its --quick sizes (SPAN-Tiny + ConvLoRA student against the SPAN-48
teacher, spatial-affinity KD; global batch 8 of 96x96 HR patches) in three set-ups with the same global batch:
one process on one thread, one process on two threads, and two processes on one thread each (torchrun,
DistributedDataParallel over gloo; torchrun gives each process OMP_NUM_THREADS=1). Teacher and student base
train for one iteration only (their time is not counted); the distillation's loop time is the trainer's own
clock (``TrainResult.seconds``: from the first batch to the last step, checkpoints off). Throughput is global
samples (HR patches) per second. Run:

    python benchmarks/scaling.py [--iterations 40] [--batch 8] [--patch 96] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "compressor" / "distill" / "recipes" / "sr-dsclora.yaml"
SETUPS = (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2), ("2 processes x 1 thread", 2, 1))


def recipe(iterations: int, batch: int, patch: int):
    """sr-dsclora at its quick sizes, teacher and student base cut to one iteration, the distillation to
    ``iterations`` of ``batch`` patches of ``patch`` pixels."""
    import yaml

    from compressor.distill.recipe import parse_recipe

    mapping = yaml.safe_load(RECIPE.read_text())
    quick = mapping["quick"]
    for role in ("teacher", "student"):
        quick[role]["train"].update(iterations=1, batch=2, patch=patch)
    quick["distill"]["train"].update(iterations=iterations, batch=batch, patch=patch)
    return parse_recipe(mapping, "benchmarks/scaling.py", quick=True)


def worker(args: argparse.Namespace) -> None:
    """One training process: the task's training under the run's process group; rank 0 writes the figures."""
    import torch

    from compressor.distill.distributed import context_from_env, process_group
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext
    from compressor.distill.train_runtime import TrainingRuntime, training_runtime

    torch.set_num_threads(args.threads)
    loaded = recipe(args.iterations, args.batch, args.patch)
    with tempfile.TemporaryDirectory() as folder:
        context = RunContext(out_dir=Path(folder), seed=0, quick=True, stage=lambda text: None)
        task = TASKS.get(loaded.task)(loaded.settings, context)
        task.check_inputs()
        dist = context_from_env()
        torch.manual_seed(0)
        with process_group(dist), training_runtime(TrainingRuntime(dist=dist)):
            roles = task.train()
    if dist.is_main:
        training = roles["student"].training  # the KD distillation (the baseline repeats it without KD)
        Path(args.result).write_text(json.dumps({"seconds": training["seconds"],
                                                 "iterations": training["iterations"],
                                                 "processes": training["setup"]["processes"],
                                                 "threads": torch.get_num_threads()}))


def measure(processes: int, threads: int, args: argparse.Namespace, folder: Path) -> dict:
    """Run the worker in ``processes`` processes of ``threads`` threads each and read rank 0's figures."""
    result = folder / f"{processes}x{threads}.json"
    options = ["--worker", "--threads", str(threads), "--result", str(result), "--iterations", str(args.iterations),
               "--batch", str(args.batch), "--patch", str(args.patch)]
    if processes == 1:
        command = [sys.executable, __file__, *options]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   __file__, *options]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(result.read_text())


def cpu_model() -> str:
    from compressor.runtime.measurement import cpu_model as read

    return read() or platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2, help="runs per set-up; the fastest counts")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"sr-dsclora distillation (KD student), global batch {args.batch} x {args.patch}x{args.patch} HR patches, "
          f"{args.iterations} iterations")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; 1-minute load average before: {os.getloadavg()[0]:.2f}"
          f" (other work on the machine slows every set-up; the fastest of {args.repeats} runs counts)")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, processes, threads in SETUPS:
            seconds = min(measure(processes, threads, args, Path(folder))["seconds"] for _ in range(args.repeats))
            rows.append((label, processes, threads, seconds, args.iterations * args.batch / seconds))
    base = {threads: rate for _, processes, threads, _, rate in rows if processes == 1}
    print(f"1-minute load average after: {os.getloadavg()[0]:.2f}")
    print(f"{'set-up':<24} {'processes':>9} {'threads/proc':>12} {'loop s':>8} {'samples/s':>10} "
          f"{'vs 1x1':>7} {'vs 1x2':>7}")
    for label, processes, threads, seconds, rate in rows:
        print(f"{label:<24} {processes:>9} {threads:>12} {seconds:>8.2f} {rate:>10.2f} {rate / base[1]:>6.2f}x "
              f"{rate / base[2]:>6.2f}x")


if __name__ == "__main__":
    main()
