"""Runs a TensorRT engine with torch CUDA tensors as bindings."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from compressor.core.errors import BuildError
from compressor.targets.base import Artifact, Feed, Runner
from compressor.targets.tensorrt.cuda import gpu_name


class TensorRtRunner(Runner):
    """Runs an engine with torch CUDA tensors as bindings; outputs are copied back to numpy."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact.inputs, artifact.outputs, name=f"tensorrt:{artifact.path.name}")
        self.artifact = artifact

    @property
    def runtime_version(self) -> str:
        return self.artifact.metadata.get("tensorrt", "")

    def _activate(self) -> None:
        import tensorrt as trt
        import torch

        built_on, here = self.artifact.metadata.get("gpu"), gpu_name()
        if built_on and built_on != here:
            raise BuildError(f"engine {self.artifact.path.name} was built on {built_on}; "
                             f"this GPU is {here}: rebuild it")
        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.artifact.path.read_bytes())
        if self.engine is None:
            raise BuildError(f"TensorRT cannot load {self.artifact.path.name} (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.trt = trt

    def _deactivate(self) -> None:
        self.context = self.engine = None

    def _prepare(self, feed: Feed) -> dict[str, Any]:
        torch, trt = self.torch, self.trt
        device = {}
        for name, array in feed.items():
            device[name] = torch.from_numpy(np.ascontiguousarray(array)).cuda()
            self.context.set_input_shape(name, tuple(array.shape))
            self.context.set_tensor_address(name, device[name].data_ptr())
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            device[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, device[name].data_ptr())
        return device

    def _infer_impl(self, feed: Feed) -> dict[str, np.ndarray]:
        device = self._prepare(feed)
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return {name: device[name].cpu().numpy() for name in self.output_names}

    def _bind_impl(self, feed: Feed) -> Callable[[], None]:
        """Inputs bound once on the device; a timed call is enqueue + synchronize (GPU compute latency)."""
        self._bound = self._prepare(feed)
        context, stream = self.context, self.stream

        def call() -> None:
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()

        return call
