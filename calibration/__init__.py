"""INT8 calibration data: one contract, a list of feed dicts ``{input_name: np.ndarray}``.

``sources`` builds and validates them (arrays, folders, callables, a task's data), ``ort_reader`` hands
them to ONNX Runtime's quantizer, ``cache`` keys calibration statistics by model and data hashes. This package
imports only :mod:`compressor.core`: TensorRT's calibrator and NNCF's dataset live with their targets.
"""
from compressor.calibration.sources import (
    CalibrationError,
    from_callable,
    from_folder,
    representative,
    validate_feeds,
)

__all__ = ["CalibrationError", "from_callable", "from_folder", "representative", "validate_feeds"]
