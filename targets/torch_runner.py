"""A Runner over a PyTorch module: the reference that every engine is compared against."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from compressor.core.errors import ExportError
from compressor.core.tensor_spec import TensorSpec
from compressor.targets.base import Feed, Runner


def outputs_to_dict(outputs: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Map a module's outputs (tensor, tuple/list or dict of tensors) to ``{name: array}``."""
    if isinstance(outputs, dict):
        values = list(outputs.values())
    elif isinstance(outputs, (tuple, list)):
        values = list(outputs)
    else:
        values = [outputs]
    if len(values) != len(names):
        raise ExportError(f"model returned {len(values)} output(s) but {len(names)} output name(s) are declared")
    return {n: v.detach().cpu().numpy() for n, v in zip(names, values)}


class TorchRunner(Runner):
    """Run an ``nn.Module`` in eval mode with gradients off; inputs are passed positionally in spec order."""

    def __init__(self, model: torch.nn.Module, inputs: Sequence[TensorSpec], output_names: Sequence[str],
                 *, threads: int | None = None) -> None:
        outputs = [TensorSpec(n, ("?",), "float32") for n in output_names]
        super().__init__(inputs, outputs, name="pytorch")
        self.model = model
        self.output_names = list(output_names)
        self.threads = threads

    def _activate(self) -> None:
        self.model.eval()
        if self.threads:
            torch.set_num_threads(self.threads)

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[s.name])) for s in self.input_specs]
        with torch.inference_mode():
            return outputs_to_dict(self.model(*args), self.output_names)
