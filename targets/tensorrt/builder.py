"""Builds a serialized TensorRT engine from an ONNX file following a :class:`BuildPlan` (needs TensorRT and a GPU)."""
from __future__ import annotations

from pathlib import Path

from compressor.core.errors import BuildError
from compressor.core.files import atomic_path
from compressor.targets.tensorrt.plan import BuildPlan


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
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer precision and ONNX names (inspector)
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
        from compressor.targets.tensorrt.calibrator import tensorrt_calibrator

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
