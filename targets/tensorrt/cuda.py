"""The GPU through torch's CUDA runtime: its name (engines are tied to it) and device buffers for TensorRT's
(<= 10) calibrator from torch's allocator, so no extra CUDA binding is needed."""
from __future__ import annotations

import numpy as np

from compressor.core.errors import MissingDependencyError


def gpu_name() -> str:
    """Name of GPU 0 (recorded with each engine); MissingDependencyError when torch sees none."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError("target 'tensorrt' needs an NVIDIA GPU; none is visible to torch")
    return torch.cuda.get_device_name(0)


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
