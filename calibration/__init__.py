"""INT8 calibration data: one contract, a list of feed dicts ``{input_name: np.ndarray}``.

``sources`` builds and validates them (arrays, folders, callables, a task's data), ``adapters`` hands
them to ONNX Runtime, NNCF and TensorRT, ``cache`` keys calibration statistics by model and data hashes.
"""
from compressor.calibration.sources import CalibrationError, from_callable, from_folder, representative, validate_feeds

__all__ = ["CalibrationError", "from_callable", "from_folder", "representative", "validate_feeds"]
