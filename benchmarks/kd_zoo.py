"""The KD loss zoo on the example project (examples/digits): each loss against the no-KD baseline, 3 seeds.

Same teacher (trained once per seed with the recipe's settings), same student initialisation, data, steps and
seed in every arm; only the student's loss changes. The baseline is the recipe's own: cross-entropy alone.
Each arm is trained with the classification task's own training code and evaluated on the held-out digits
through PyTorch (the engines match it: see `compress run examples/digits/recipe.yaml`). Prints a table of the
headline metric (top-1) per loss: mean, spread (max - min) and change from the baseline over the seeds.

    python benchmarks/kd_zoo.py                          # 3 seeds, the recipe's full iterations
    python benchmarks/kd_zoo.py --seeds 0 --iterations 150 --losses hinton dkd

Losses that need what this task does not have are listed with the reason (Margin-MSE needs ranking scores,
AFKD a box IoU, LEAF an embedding output). ND reads the last conv block's maps (class means fitted on the
teacher's over the training split).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits"
sys.path.insert(0, str(ROOT))

from compressor.core.user_code import load_file  # noqa: E402
from compressor.distill.recipe import parse_recipe  # noqa: E402
from compressor.distill.tasks import TASKS  # noqa: E402
from compressor.distill.tasks.base import RunContext  # noqa: E402
from compressor.targets.torch_runner import TorchRunner  # noqa: E402

CE = {"name": "ce", "weight": 1.0}
# Each arm's student loss, with the reference code's weights (see shared kd-losses notes / each loss's docstring).
ARMS: dict[str, list[dict]] = {
    "hinton": [{"name": "hinton", "weight": 0.9, "temperature": 4.0}, {"name": "ce", "weight": 0.1}],
    "dkd": [{"name": "dkd", "weight": 1.0, "alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_steps": 20},
            CE],
    "fitnets": [{"name": "fitnets", "weight": 100.0, "layers": [["features.6", "features.6"]]}, CE],
    "attention": [{"name": "attention", "weight": 1000.0,
                   "layers": [["features.6", "features.6"], ["features.10", "features.10"]]}, CE],
    "affinity": [{"name": "affinity", "weight": 10.0, "layers": [["features.6", "features.6"]]}, CE],
    "nd": [{"name": "nd", "weight": 1.0, "layers": [["features.10", "features.10"]]}, CE],
    "pld": [{"name": "pld", "weight": 1.0, "temperature": 1.0}],
    "taid": [{"name": "taid", "weight": 1.0}],
    "meal": [{"name": "meal", "weight": 1.0}],
}
NOT_APPLICABLE = {"margin_mse": "needs positive/negative ranking scores", "afkd": "needs a box IoU per sample",
                  "leaf": "needs an embedding output (the example's models output logits)"}


def recipe_mapping(iterations: int | None) -> dict:
    """The example recipe, with every training run at ``iterations`` when given."""
    mapping = yaml.safe_load((EXAMPLE / "recipe.yaml").read_text())
    mapping.pop("quick", None)
    if iterations:
        mapping["teacher"]["train"]["iterations"] = iterations
        mapping["distill"]["train"]["iterations"] = iterations
    return mapping


def top1(task, model, names) -> float:
    with TorchRunner(model, task.input_specs(), names) as runner:
        return task.evaluate(runner)[task.metric]


def run_arm(mapping: dict, losses: list[dict], data: Path, seed: int, folder: Path,
            teacher_weights: Path | None) -> tuple[dict, object]:
    """Train the teacher (or load it), the student with ``losses`` and the baseline; their top-1."""
    arm = dict(mapping, distill=dict(mapping["distill"], losses=losses))
    recipe = parse_recipe(arm, str(EXAMPLE / "recipe.yaml"), base=EXAMPLE)
    weights = {"teacher": str(teacher_weights)} if teacher_weights else {}
    context = RunContext(out_dir=folder, seed=seed, quick=False, data=data, weights=weights, stage=lambda _: None)
    task = TASKS.get(recipe.task)(recipe.settings, context)
    task.check_inputs()
    roles = task.train()
    return {role: top1(task, rm.model, rm.output_names) for role, rm in roles.items()}, roles["teacher"].model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=None, help="every training run (default: the recipe's)")
    parser.add_argument("--losses", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--val-per-class", type=int, default=120)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mapping = recipe_mapping(args.iterations)
    make_data = load_file(EXAMPLE / "make_data.py", what="example data script")
    started = time.perf_counter()
    scores: dict[str, list[float]] = {"no KD (ce)": [], "teacher": []}
    scores.update({name: [] for name in args.losses})
    with tempfile.TemporaryDirectory(prefix="kd-zoo-") as tmp:
        data = Path(tmp) / "data"
        counts = make_data.write_digits(data, args.train_per_class, args.val_per_class)
        for seed in args.seeds:
            teacher_path = None
            for name in args.losses:
                result, teacher = run_arm(mapping, ARMS[name], data, seed, Path(tmp), teacher_path)
                if teacher_path is None:  # the first arm trained the teacher: the others load it
                    teacher_path = Path(tmp) / f"teacher-{seed}.pt"
                    torch.save(teacher.state_dict(), teacher_path)
                    scores["teacher"].append(result["teacher"])
                    scores["no KD (ce)"].append(result["baseline"])
                scores[name].append(result["student"])
                print(f"seed {seed} {name:10s} student {result['student']:.4f} baseline {result['baseline']:.4f}",
                      flush=True)
    baseline = np.mean(scores["no KD (ce)"])
    iterations = mapping["distill"]["train"]["iterations"]
    print(f"\nexamples/digits: {counts['train']} training / {counts['val']} held-out images, {iterations} "
          f"iterations, seeds {args.seeds}, {time.perf_counter() - started:.0f} s\n")
    print("| loss | top-1 mean | spread (max-min) | vs no KD |")
    print("|---|---:|---:|---:|")
    for name, values in scores.items():
        delta = "" if name in ("no KD (ce)", "teacher") else f"{np.mean(values) - baseline:+.4f}"
        print(f"| {name} | {np.mean(values):.4f} | {np.ptp(values):.4f} | {delta} |")
    for name, why in NOT_APPLICABLE.items():
        print(f"| {name} | n/a | | {why} |")


if __name__ == "__main__":
    main()
