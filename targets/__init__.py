"""Targets: ONNX export and the runtimes we build for (one module each), parity, profiling, bundles."""
