"""edge-compress: distil a compact student from a teacher, export it, build engines, verify and profile them.

One import root, one floor per layer (enforced by the import-linter contracts in ``setup.cfg``):
``core`` (errors, registry, tensor specs, feeds, files) and ``runtime`` (what ships to a device) at the bottom,
then ``models`` and ``calibration``, then ``targets``, then ``distill`` (training, the pipeline) and ``cli``.
"""
from compressor.core.version import __version__

__all__ = ["__version__"]
