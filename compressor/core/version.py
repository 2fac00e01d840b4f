"""The toolchain's version, recorded in every ONNX file, artifact sidecar, bundle and report."""

__version__ = "0.1.0"
