"""A real (if tiny) task for the INT8 stage's tests: the built-in ``tiny_convnet`` on random images, scored by
how close a runner stays to the FP32 PyTorch model (negative mean absolute error: higher is better)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.tasks.base import RoleModel, RunContext, Task
from compressor.models import create_model
from compressor.targets.base import Runner

SPEC = TensorSpec.parse("image:Nx3x16x16:float32:0..1")


class FidelityTask(Task):
    """``tiny_convnet`` as the student; metric ``fidelity``: -mean |runner - FP32 model| on held-out images."""

    name = "tiny-fidelity"
    metric = "fidelity"

    def __init__(self, context: RunContext) -> None:
        super().__init__(None, context)
        self.model = create_model("tiny_convnet").eval()
        rng = np.random.default_rng(7)
        self.held_out = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(4)]
        with torch.no_grad():
            self.expected = [self.model(torch.from_numpy(x)).numpy() for x in self.held_out]

    def check_data(self) -> None:
        """Nothing to check: the data is generated."""

    def train(self) -> dict[str, RoleModel]:
        return {"student": RoleModel(self.model, ["sr"], "tiny_convnet")}

    def input_specs(self) -> list[TensorSpec]:
        return [SPEC]

    def profile_feed_specs(self) -> list[TensorSpec]:
        return [TensorSpec.parse("image:1x3x16x16:float32:0..1")]

    def evaluate(self, runner: Runner) -> dict[str, float]:
        errors = [float(np.abs(next(iter(runner.infer({"image": x}).values())) - y).mean())
                  for x, y in zip(self.held_out, self.expected)]
        return {"fidelity": -float(np.mean(errors))}

    def calibration_feeds(self, count: int) -> list[dict]:
        rng = np.random.default_rng(self.context.seed + 99)
        return [{"image": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(count)]


def fidelity_task(folder: Path, seed: int = 0) -> FidelityTask:
    """The task with its run folder and seed."""
    return FidelityTask(RunContext(out_dir=folder, seed=seed, quick=True, stage=lambda _text: None))
