"""A training process for tests/distill/test_resume.py's two-process case, started by torchrun (one per rank).

``python resume_worker.py STATE_DIR RESULTS MODE``: train a small model with dropout and BatchNorm on sharded
batches (the run's TrainingRuntime: process group, checkpoints in STATE_DIR every 4 iterations). MODE ``crash``
stops every rank drawing batch 11 (exit status 3, the partial checkpoint of iteration 8 left behind), ``resume``
continues from it, ``straight`` trains without stopping. Each rank saves its weights and loss curve to
``RESULTS/<mode><rank>.pt``; the test writes these files, not the product.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ITERATIONS = 17
CRASH_AT = 11


def batches(crash: bool):
    rng = np.random.default_rng(0)
    for index in range(1, 10_000):
        if crash and index == CRASH_AT:
            raise SystemExit(3)
        x = torch.from_numpy(rng.normal(size=(10, 5)).astype(np.float32))
        yield x, x[:, :1] * 2 - x[:, 1:2]


def main(state_dir: str, results: str, mode: str) -> None:
    from compressor.distill.distributed import context_from_env, process_group
    from compressor.distill.train_runtime import TrainingRuntime, training_runtime
    from compressor.distill.trainer import TrainSchedule, train

    dist = context_from_env()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    runtime = TrainingRuntime(dist=dist, state_dir=Path(state_dir), run_key="two", resume=mode == "resume",
                              checkpoint_every=4)

    def loss(batch):
        x, y = batch
        value = (model(x) - y).pow(2).mean()
        return value, {"mse": value.item()}

    with process_group(dist), training_runtime(runtime):
        result = train(loss, model.parameters(), batches(mode == "crash"), TrainSchedule(ITERATIONS, lr=0.02),
                       desc="student", state=[model])
    torch.save({"weights": model.state_dict(), "losses": result.losses, "resumed_at": result.resumed_at},
               Path(results) / f"{mode}{dist.rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:4])
