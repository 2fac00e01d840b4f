"""Inference backends of a bundle: ONNX Runtime and OpenVINO, and opening the one a manifest names.

The toolchain runs its ONNX Runtime and OpenVINO artifacts through these same classes, so the device runs
exactly what was measured on the desktop. Each backend has ``run(feed) -> {output: array}`` and
``bind(feed) -> call`` (inputs bound once, for timing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
STATIC_SHAPE_CACHE = 8  # OpenVINO static-shape compilations kept per model


class OnnxRuntimeBackend:
    """An ONNX Runtime session; ``provider`` is 'auto' (TensorRT, CUDA, CPU as available) or one name."""

    runtime = "onnxruntime"

    def __init__(self, path, options=None, threads=None):
        import onnxruntime as ort

        options = options or {}
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        self.providers = select_providers(ort.get_available_providers(), str(options.get("provider", "auto")))
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=self.providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.version = ort.__version__

    def run(self, feed):
        """Outputs by name for ``feed``."""
        return dict(zip(self.output_names, self.session.run(self.output_names, dict(feed))))

    def bind(self, feed):
        """Bind inputs once (IOBinding); return a no-argument call that runs on them."""
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        session = self.session
        return lambda: session.run_with_iobinding(binding)


def select_providers(available, requested="auto"):
    """Providers in preference order; a named one that is absent raises ValueError."""
    if requested == "auto":
        return [p for p in PROVIDER_ORDER if p in available]
    aliases = {p.lower().replace("executionprovider", ""): p for p in available}
    name = aliases.get(requested.lower(), requested)
    if name not in available:
        raise ValueError(f"ONNX Runtime provider '{requested}' is not available; available: {', '.join(available)}")
    return [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]


class OpenVinoBackend:
    """A compiled OpenVINO model with an explicit inference precision, read back and checked.

    ``static_shapes`` (an artifact option): compile one static-shape model per input shape seen (the last
    ``STATIC_SHAPE_CACHE`` kept), which OpenVINO's CPU plugin runs markedly faster than the dynamic-shape
    model (SPAN-Tiny at 128x128: about 13 vs 16 ms FP32, 7 vs 10 ms INT8). For fixed-size inputs (camera
    frames, tracker crops); leave it off where shapes vary per call (the IDS detector's batches).
    """

    runtime = "openvino"

    def __init__(self, path, options=None, threads=None):
        import openvino as ov

        options = options or {}
        self.device = str(options.get("device", "CPU"))
        self.config = {"INFERENCE_PRECISION_HINT": str(options.get("inference_precision", "f32")),
                       "PERFORMANCE_HINT": str(options.get("performance_hint", "LATENCY"))}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = str(int(threads))
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.static_shapes = bool(options.get("static_shapes", False))
        self._by_shape = {}  # input shapes -> (compiled, request), most recent last
        self.compiled, self.request = (None, None) if self.static_shapes else self._compile(self.model)
        self.output_names = [o.get_any_name() for o in self.model.outputs]
        self.version = ov.get_version()

    def _compile(self, model):
        compiled = self.core.compile_model(model, self.device, self.config)
        actual = compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = actual.to_string() if hasattr(actual, "to_string") else str(actual)
        if actual != self.config["INFERENCE_PRECISION_HINT"]:
            raise ValueError(f"OpenVINO on {self.device} runs {actual}, not the requested "
                             f"{self.config['INFERENCE_PRECISION_HINT']}")
        return compiled, compiled.create_infer_request()

    def _for_shapes(self, feed):
        """The (compiled, request) to run ``feed`` on: the dynamic model, or one compiled for these shapes."""
        if not self.static_shapes:
            return self.compiled, self.request
        key = tuple(sorted((name, tuple(np.shape(array))) for name, array in feed.items()))
        if key not in self._by_shape:
            model = self.model.clone()
            model.reshape({name: list(shape) for name, shape in key})
            self._by_shape[key] = self._compile(model)
            while len(self._by_shape) > STATIC_SHAPE_CACHE:
                self._by_shape.pop(next(iter(self._by_shape)))
        self._by_shape[key] = self._by_shape.pop(key)  # most recently used last
        return self._by_shape[key]

    def run(self, feed):
        """Outputs by name for ``feed``."""
        compiled, request = self._for_shapes(feed)
        result = request.infer(dict(feed))
        return {name: np.array(result[port]) for name, port in zip(self.output_names, compiled.outputs)}

    def bind(self, feed):
        """Set input tensors once (shared memory); return a no-argument call that runs on them."""
        import openvino as ov

        _, request = self._for_shapes(feed)
        self._bound = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        for name, array in self._bound.items():
            request.set_tensor(name, ov.Tensor(array, shared_memory=True))
        return lambda: request.infer()


BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "onnx": OnnxRuntimeBackend, "openvino": OpenVinoBackend}


def open_backend(folder, manifest, threads=None):
    """The backend named by the manifest, over the bundle's model file."""
    return BACKENDS[manifest["target"]](Path(folder) / manifest["model"]["path"], manifest["model"].get("options"),
                                        threads)
