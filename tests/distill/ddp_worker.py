"""A training process for tests/distill/test_distributed.py, started alone or by torchrun (one per rank).

``train RECIPE OUT RESULTS``: build the recipe's task and train every role the way ``compress run`` does
(``pipeline._training_runtime``, then ``task.train()`` inside ``process_group`` and ``training_runtime``, as
``pipeline.run_recipe`` does on every rank), then save this rank's trained weights to ``RESULTS/rank<r>.pt``.

``map RESULTS COUNT``: ``distributed.map_sharded`` over COUNT chunks; saves the results and which chunks this
rank computed to ``RESULTS/map<r>.pt``.

The test writes these files, not the product: the product's ranks other than 0 write nothing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch


def train(recipe_path: str, out_dir: str, results: str) -> None:
    from compressor.distill import pipeline
    from compressor.distill.distributed import context_from_env, process_group
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext
    from compressor.distill.train_runtime import training_runtime

    recipe = load_recipe(recipe_path)
    context = RunContext(out_dir=Path(out_dir), seed=recipe.seed, quick=False, stage=lambda text: None)
    task = TASKS.get(recipe.task)(recipe.settings, context)
    task.check_inputs()
    dist = context_from_env(context.device)
    runtime = pipeline._training_runtime(recipe, context, dist)
    torch.manual_seed(context.seed)
    with process_group(dist), training_runtime(runtime):
        roles = task.train()
    saved = {role: {k: v.detach().clone() for k, v in rm.model.state_dict().items()} for role, rm in roles.items()}
    training = {role: rm.training for role, rm in roles.items()}
    torch.save({"rank": dist.rank, "world": dist.world_size, "weights": saved, "training": training},
               Path(results) / f"rank{dist.rank}.pt")


def map_chunks(results: str, count: int) -> None:
    from compressor.distill.distributed import (
        context_from_env,
        map_sharded,
        process_group,
    )

    dist = context_from_env()
    computed: list[int] = []

    def square(index: int) -> torch.Tensor:
        computed.append(index)
        return torch.full((index + 1,), float(index)) ** 2  # results of different sizes, in order

    with process_group(dist):
        out = map_sharded(square, range(count), dist)
    torch.save({"out": out, "computed": computed}, Path(results) / f"map{dist.rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "train":
        train(*sys.argv[2:5])
    elif sys.argv[1] == "map":
        map_chunks(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
