"""Ablations of the track-ortrack recipe: ORR on/off for the teacher, AFKD on/off for the student.

Same data, seeds and steps in every arm; only the switch under test changes. Each arm is trained with the
task's own training code and evaluated by one-pass tracking of the held-out sequences (PyTorch runner;
the engines match it to ~1e-6, see `compress run`). Prints a table of success AUC and precision@20 on all
frames and on occluded frames (occluded fraction >= the recipe's threshold), per seed and averaged.

    python benchmarks/track_orr.py                       # the quick recipe's sizes, seeds 0 and 1
    python benchmarks/track_orr.py --seeds 0 --scale 0.5 # half the iterations
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor.distill.recipe import load_recipe  # noqa: E402
from compressor.distill.tasks.base import RunContext  # noqa: E402
from compressor.distill.tasks.tracking import TrackingTask  # noqa: E402
from compressor.targets.torch_runner import TorchRunner  # noqa: E402

COLUMNS = ("auc", "auc_occluded", "precision", "precision_occluded")


def scaled(settings, scale: float):
    """Settings with every training run's iterations multiplied by ``scale``."""
    def run(model):
        return dataclasses.replace(model, train=dataclasses.replace(
            model.train, iterations=max(1, round(model.train.iterations * scale))))

    return dataclasses.replace(settings, teacher=run(settings.teacher), student=run(settings.student))


def evaluate(task: TrackingTask, role_model) -> dict[str, float]:
    with TorchRunner(role_model.model, task.input_specs(), role_model.output_names) as runner:
        metrics = task.evaluate(runner)
    return {k: metrics[k] for k in COLUMNS}


def run_seed(settings, seed: int, out: Path) -> dict[str, dict[str, float]]:
    """The four arms for one seed: teacher with/without ORR, student with/without AFKD (ORR teacher)."""
    context = RunContext(out_dir=out, seed=seed, quick=True, stage=lambda text: print(f"  [{seed}] {text}"))
    results = {}
    without = dataclasses.replace(settings, orr=dataclasses.replace(settings.orr, enabled=False))
    task_without = TrackingTask(without, context)
    results["teacher without ORR"] = evaluate(task_without, task_without._teacher())
    task = TrackingTask(settings, context)
    teacher = task._teacher()
    results["teacher with ORR"] = evaluate(task, teacher)
    results["student with AFKD (+ORR)"] = evaluate(task, task._student(teacher, kd=True))
    results["student without KD (+ORR)"] = evaluate(task, task._student(teacher, kd=False))
    return results


def table(rows: dict[str, list[dict[str, float]]], seeds: list[int]) -> str:
    head = f"| arm | {' | '.join(f'{c} (seed {s})' for s in seeds for c in ('auc_occ', 'auc'))} | mean auc_occ | " \
           "mean auc | mean prec | mean prec_occ |"
    lines = [head, "|---|" + "---:|" * (2 * len(seeds) + 4)]
    for arm, per_seed in rows.items():
        cells = " | ".join(f"{r['auc_occluded']:.4f} | {r['auc']:.4f}" for r in per_seed)
        mean = {k: float(np.mean([r[k] for r in per_seed])) for k in COLUMNS}
        lines.append(f"| {arm} | {cells} | {mean['auc_occluded']:.4f} | {mean['auc']:.4f} | "
                     f"{mean['precision']:.4f} | {mean['precision_occluded']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="track-ortrack", help="recipe name or .yaml (its quick form is used)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every run's iterations")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/track_orr")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, quick=True)
    settings = scaled(recipe.settings, args.scale)
    print(f"recipe {recipe.name} (quick), teacher {settings.teacher.model} {settings.teacher.train.iterations} it, "
          f"student {settings.student.model} {settings.student.train.iterations} it, ORR weight "
          f"{settings.orr.weight}, AFKD weight {settings.distill.afkd.weight}, seeds {args.seeds}")
    start, rows = time.perf_counter(), {}
    for seed in args.seeds:
        for arm, metrics in run_seed(settings, seed, Path(args.out)).items():
            rows.setdefault(arm, []).append(metrics)
            print(f"  seed {seed} {arm}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
    print()
    print(table(rows, args.seeds))
    print(f"\nheld-out sequences: {len(TrackingTask(settings, RunContext(Path(args.out), 0, True)).sequences()[1])}, "
          f"occluded = occluded fraction >= {settings.data.occluded_threshold}; "
          f"wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
