"""Per-layer time and executed precision of an engine, mapped to ONNX nodes and PyTorch modules
(:func:`~compressor.targets.layers.profile.profile_layers`), and the precision audit."""
