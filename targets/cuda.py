"""Device buffers for TensorRT's (<= 10) calibrator, from torch's CUDA allocator."""
from __future__ import annotations

import numpy as np


class DeviceBuffers:
    """One CUDA tensor per input, reused for every calibration batch."""

    def __init__(self, example: dict[str, np.ndarray]) -> None:
        import torch

        self.torch = torch
        self.tensors = {k: torch.empty(v.shape, dtype=torch.from_numpy(v[:0]).dtype, device="cuda")
                        for k, v in example.items()}

    def upload(self, name: str, array: np.ndarray) -> int:
        """Copy ``array`` into ``name``'s buffer and return its device pointer."""
        tensor = self.tensors[name]
        tensor.copy_(self.torch.from_numpy(np.ascontiguousarray(array)))
        return int(tensor.data_ptr())
