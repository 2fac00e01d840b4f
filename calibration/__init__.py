"""INT8 calibration data: one contract, an iterable of feed dicts ``{input_name: np.ndarray}``."""
