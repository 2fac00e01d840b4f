"""TensorRT target: an engine built from ONNX through the TensorRT Python API, and its runner.

TensorRT 11+: strongly typed networks from the FP16 (casts) or Q/DQ ONNX. TensorRT 10: builder flags, or
implicit INT8 calibration with a cache (``options={"calibration": "implicit"}``). A timing cache is kept
beside the engine; dynamic axes get an optimisation profile. Device memory comes from torch's CUDA
allocator, so no extra CUDA binding is needed. Engines are tied to the GPU and TensorRT version: the
sidecar records both and the runner refuses a mismatch.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compressor.core.errors import BuildError, MissingDependencyError
from compressor.core.files import atomic_path
from compressor.targets.base import Artifact, Feed, Runner, Target, default_name
from compressor.targets.onnx_io import graph_specs, load_onnx
from compressor.targets.tensorrt_plan import PRECISIONS, BuildPlan, make_plan, parse_version


def tensorrt_version() -> tuple[int, int]:
    """The installed TensorRT (major, minor); MissingDependencyError when absent."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("target 'tensorrt' needs TensorRT and an NVIDIA GPU (pip install tensorrt)") from None
    return parse_version(trt.__version__)


def _gpu_name() -> str:
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError("target 'tensorrt' needs an NVIDIA GPU; none is visible to torch")
    return torch.cuda.get_device_name(0)


class TensorRtTarget(Target):
    """Builds ``<name>.engine`` (+ ``<name>.timing.cache``) from an ONNX model."""

    name = "tensorrt"
    precisions = PRECISIONS

    def build(self, onnx_path: Path, *, precision: str, out_dir: Path, name: str | None = None,
              options: Mapping[str, Any] | None = None, calibration: Sequence[Feed] | None = None,
              int8: Any = None) -> Artifact:
        from compressor.targets.quantize import Int8Options

        options = dict(options or {})
        implicit = options.pop("calibration", "qdq") == "implicit"
        self.check_precision(precision)
        self.require_calibration(precision, calibration)
        inputs, outputs = graph_specs(load_onnx(onnx_path))
        plan = make_plan(inputs, precision, tensorrt_version(), implicit_calibration=implicit,
                         max_batch=int(options.pop("max_batch", 4)))
        gpu = _gpu_name()
        stem = name or default_name(Path(onnx_path), precision)
        engine, cache = Path(out_dir) / f"{stem}.engine", Path(out_dir) / f"{stem}.timing.cache"
        int8 = int8 or Int8Options()
        with tempfile.TemporaryDirectory(prefix="trt-") as tmp:
            source = _onnx_for_plan(Path(onnx_path), plan, Path(tmp), calibration, int8)
            data = build_serialized(source, plan, cache, calibration=calibration if plan.implicit_calibration else None,
                                    calibration_cache=Path(out_dir) / f"{stem}.calibration.cache")
        with atomic_path(engine) as tmp_engine:
            tmp_engine.write_bytes(data)
        artifact = Artifact(target=self.name, precision=precision, path=engine.resolve(),
                            files=(engine.name, cache.name), inputs=tuple(inputs), outputs=tuple(outputs),
                            options=options, source=str(Path(onnx_path).resolve()),
                            metadata={"plan": _plan_dict(plan), "gpu": gpu, "tensorrt": ".".join(map(str, plan.trt_version)),
                                      **({"int8": asdict(int8)} if precision == "int8" else {})})
        artifact.save()
        return artifact

    def load_runner(self, artifact: Artifact, *, threads: int | None = None) -> Runner:
        return TensorRtRunner(artifact)


def _plan_dict(plan: BuildPlan) -> dict:
    data = asdict(plan)
    data["profiles"] = [{k: [list(s) for s in v] for k, v in p["shapes"].items()} for p in data["profiles"]]
    return data


def _onnx_for_plan(onnx_path: Path, plan: BuildPlan, folder: Path, calibration, int8) -> Path:
    """The graph the plan parses: the FP32 ONNX, its FP16 conversion, or its Q/DQ quantization."""
    from compressor.targets.quantize import quantize_qdq, to_fp16

    if plan.onnx_kind == "fp16":
        return to_fp16(onnx_path, folder / "fp16.onnx")
    if plan.onnx_kind == "qdq":
        return quantize_qdq(onnx_path, folder / "qdq.onnx", calibration, int8)
    return onnx_path


def build_serialized(onnx_path: Path, plan: BuildPlan, timing_cache: Path, *, calibration=None,
                     calibration_cache: Path | None = None) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine following ``plan``; the timing cache is reused and updated."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if plan.trt_version[0] < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    if hasattr(trt.BuilderFlag, "TF32") and plan.precision == "fp32" and not plan.strongly_typed:
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32, not TF32
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for profile_spec in plan.profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in profile_spec.shapes.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
        if plan.implicit_calibration:
            config.set_calibration_profile(profile)
    if plan.implicit_calibration:
        from compressor.calibration.adapters import tensorrt_calibrator

        config.int8_calibrator = tensorrt_calibrator(calibration, calibration_cache,
                                                     [network.get_input(i).name for i in range(network.num_inputs)])
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path.name} (see its log above)")
    with atomic_path(timing_cache) as tmp:
        tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(serialized)


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

        built_on, here = self.artifact.metadata.get("gpu"), _gpu_name()
        if built_on and built_on != here:
            raise BuildError(f"engine {self.artifact.path.name} was built on {built_on}; this GPU is {here}: rebuild it")
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
