"""TensorSpec: a named input or output with shape (ints or symbols), dtype and value range."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from compressor.core.errors import InputSpecError, did_you_mean

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's contract: ``shape`` holds ints or symbol names (``"N"``, ``"H"``).

    ``examples`` gives a concrete size for symbolic dims (``{"H": 64}``); ``low``/``high``
    bound the random values used for parity and profiling.
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None
    examples: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "TensorSpec":
        """Parse the CLI form ``name:SHAPE[:DTYPE[:LOW..HIGH]]``.

        >>> TensorSpec.parse("image:Nx3xH=64xW=64:float32:0..1").shape
        ('N', 3, 'H', 'W')
        """
        parts = text.split(":")
        if len(parts) < 2 or len(parts) > 4 or not parts[0]:
            raise InputSpecError(f"input '{text}' is not NAME:SHAPE[:DTYPE[:LOW..HIGH]] (e.g. image:1x3x64x64:float32)")
        name, shape_text = parts[0], parts[1]
        dtype = parts[2] if len(parts) > 2 and parts[2] else "float32"
        _check_dtype(dtype, text)
        shape, examples = _parse_shape(shape_text, text)
        low, high = _parse_range(parts[3], text) if len(parts) == 4 else (None, None)
        return cls(name, shape, dtype, low, high, examples)

    def format(self) -> str:
        """The CLI form of this spec (inverse of :meth:`parse`)."""
        dims = "x".join(f"{d}={self.examples[d]}" if isinstance(d, str) and d in self.examples else str(d)
                        for d in self.shape)
        text = f"{self.name}:{dims}:{self.dtype}"
        return text if self.low is None else f"{text}:{_num(self.low)}..{_num(self.high)}"

    @property
    def is_dynamic(self) -> bool:
        """True when any dimension is symbolic."""
        return any(isinstance(d, str) for d in self.shape)

    @property
    def value_range(self) -> tuple[float, float]:
        """(low, high) for random data: the declared range, else [0, 1) for floats, {0, 1} for integers."""
        if self.low is not None:
            return float(self.low), float(self.high)
        return (0.0, 1.0) if self.dtype.startswith("float") else (0.0, 1.0 if self.dtype == "bool" else 2.0)

    def concrete_shape(self, batch: int | None = None) -> tuple[int, ...]:
        """Shape with symbols replaced: the first symbolic axis 0 by ``batch``, others by their example size."""
        out = []
        for axis, dim in enumerate(self.shape):
            if isinstance(dim, int):
                out.append(dim)
            elif axis == 0 and batch is not None:
                out.append(batch)
            elif dim in self.examples:
                out.append(int(self.examples[dim]))
            elif axis == 0:
                out.append(1)
            else:
                raise InputSpecError(
                    f"input '{self.name}': symbolic dimension '{dim}' needs an example size; write {dim}=64 in its shape")
        return tuple(out)

    def with_batch(self, batch: int) -> "TensorSpec":
        """A copy whose axis 0 is fixed to ``batch`` (used when a runtime needs a static batch)."""
        return TensorSpec(self.name, (batch, *self.shape[1:]), self.dtype, self.low, self.high, dict(self.examples))

    def check(self, array: Any) -> str | None:
        """Return a one-line problem if ``array`` does not fit this spec, else None."""
        if not isinstance(array, np.ndarray):
            return f"input '{self.name}' must be a numpy array, got {type(array).__name__}"
        if array.dtype.name != self.dtype:
            return f"input '{self.name}' has dtype {array.dtype.name}, expected {self.dtype}"
        if array.ndim != len(self.shape):
            return f"input '{self.name}' has shape {list(array.shape)}, expected rank {len(self.shape)} ({self.shape_text})"
        for got, want in zip(array.shape, self.shape):
            if (isinstance(want, int) and got != want) or got < 1:
                return f"input '{self.name}' has shape {list(array.shape)}, expected {self.shape_text}"
        return None

    @property
    def shape_text(self) -> str:
        """Shape as ``Nx3x64x64``."""
        return "x".join(str(d) for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used in sidecars, ONNX metadata and bundle manifests)."""
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.low is not None:
            out["range"] = [self.low, self.high]
        if self.examples:
            out["examples"] = dict(self.examples)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpec":
        """Inverse of :meth:`to_dict`."""
        low, high = data.get("range") or (None, None)
        return cls(data["name"], tuple(data["shape"]), data.get("dtype", "float32"), low, high,
                   dict(data.get("examples") or {}))


def _check_dtype(dtype: str, text: str) -> None:
    if dtype not in DTYPES:
        raise InputSpecError(f"input '{text}': unknown dtype '{dtype}'{did_you_mean(dtype, DTYPES)}")


def _parse_shape(shape_text: str, text: str) -> tuple[tuple[Dim, ...], dict[str, int]]:
    dims: list[Dim] = []
    examples: dict[str, int] = {}
    for token in shape_text.split("x") if shape_text else []:
        symbol, _, example = token.partition("=")
        if symbol.isdigit() and not example and int(symbol) > 0:
            dims.append(int(symbol))
        elif _SYMBOL.match(symbol) and (not example or (example.isdigit() and int(example) > 0)):
            dims.append(symbol)
            if example:
                examples[symbol] = int(example)
        else:
            raise InputSpecError(f"input '{text}': bad dimension '{token}' (use a positive int, a symbol like N, or H=64)")
    if not dims:
        raise InputSpecError(f"input '{text}': empty shape")
    return tuple(dims), examples


def _parse_range(range_text: str, text: str) -> tuple[float, float]:
    low, sep, high = range_text.partition("..")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        lo = hi = None
    if not sep or lo is None or not lo < hi:
        raise InputSpecError(f"input '{text}': range '{range_text}' is not LOW..HIGH with LOW < HIGH")
    return lo, hi


def _num(value: float | None) -> str:
    return f"{value:g}"


def parse_specs(texts: list[str] | tuple[str, ...]) -> list[TensorSpec]:
    """Parse several CLI input declarations, refusing duplicate names."""
    specs = [s if isinstance(s, TensorSpec) else TensorSpec.parse(s) for s in texts]
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputSpecError(f"input name(s) declared twice: {', '.join(sorted(dup))}")
    return specs
