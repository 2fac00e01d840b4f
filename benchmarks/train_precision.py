"""Training at fp32 against bf16 autocast on this CPU: the text-minilm recipe's distillation of its student.

The same student initialisation, data order, steps and seed in both arms; only ``--train-precision`` differs
(the run's TrainingRuntime, as ``compress run`` sets it). Each arm trains the student with the task's own code
(embedding alignment to the pretrained MiniLM teacher) and is scored in PyTorch, in float32, on the recipe's
held-out text. Prints iterations per second, the final training loss and the held-out agreement of each arm, and
the bf16 / fp32 ratio. bf16 needs a CPU reporting avx512_bf16 or amx_bf16 (the arm is skipped elsewhere).

    python benchmarks/train_precision.py                       # 300 iterations on 6000 training sentences
    python benchmarks/train_precision.py --iterations 1000 --sentences 20000 --threads 2
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compressor.core.errors import CompressError  # noqa: E402
from compressor.distill.recipe import load_recipe  # noqa: E402
from compressor.distill.tasks import TASKS  # noqa: E402
from compressor.distill.tasks.base import RunContext  # noqa: E402
from compressor.distill.tasks.text_embedding import _torch_embed  # noqa: E402
from compressor.distill.train_runtime import (  # noqa: E402
    TrainingRuntime,
    resolve_precision,
    training_runtime,
)

METRICS = ("cosine_to_teacher", "similarity_rank_agreement", "retrieval_top1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--sentences", type=int, default=6000, help="training sentences (the recipe has 60000)")
    parser.add_argument("--heldout", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe("text-minilm")
    s = recipe.settings
    student = dataclasses.replace(s.student, train=dataclasses.replace(s.student.train, iterations=args.iterations))
    data = dataclasses.replace(s.data, train_sentences=args.sentences, heldout_sentences=args.heldout,
                               retrieval_pairs=min(s.data.retrieval_pairs, args.heldout))
    settings = dataclasses.replace(s, student=student, data=data)
    with tempfile.TemporaryDirectory() as tmp:
        task = TASKS.get(recipe.task)(settings, RunContext(out_dir=Path(tmp), seed=recipe.seed, quick=False,
                                                           stage=lambda text: None))
        teacher = task._teacher()
        task._teacher_model = teacher.model
        print(f"teacher embeddings of {args.sentences} training sentences ...", flush=True)
        targets = torch.from_numpy(task._embed_all(_torch_embed(teacher.model), task.corpus().train))
        rows = []
        for precision in args.precisions:
            try:
                chosen = resolve_precision(precision, torch.device("cpu"))
            except CompressError as exc:
                print(f"{precision}: skipped ({exc})")
                continue
            with training_runtime(TrainingRuntime(precision=chosen)):
                trained = task._student(targets, kd=True)
            metrics = task.agreement(_torch_embed(trained.model))
            t = trained.training
            rows.append((chosen, t["iterations"], t["seconds"], t["iterations"] / t["seconds"], t["final_loss"],
                         *(metrics[k] for k in METRICS)))
            print(f"{chosen}: {t['iterations'] / t['seconds']:.2f} it/s", flush=True)
    print(f"\ntext-minilm student distillation, {args.sentences} training sentences, batch "
          f"{student.train.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| precision | iterations | seconds | it/s | final loss | " + " | ".join(METRICS) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(METRICS))
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]:.1f} | {row[3]:.2f} | {row[4]:.5f} | "
              + " | ".join(f"{v:.4f}" for v in row[5:]) + " |")
    if len(rows) == 2:
        (_, _, _, fast, loss0, *m0), (_, _, _, other, loss1, *m1) = rows
        print(f"\n{rows[1][0]} / {rows[0][0]}: {other / fast:.2f}x iterations/s; "
              + ", ".join(f"{k} {b - a:+.4f}" for k, a, b in zip(METRICS, m0, m1)))


if __name__ == "__main__":
    main()
