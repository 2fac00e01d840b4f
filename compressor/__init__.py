"""edge-compress: distil a compact student from a teacher, export it, build engines, verify and profile them."""

__version__ = "0.1.0"
