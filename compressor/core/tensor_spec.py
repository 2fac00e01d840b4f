"""TensorSpec: a named input or output with shape (ints or symbols), dtype and value range."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from compressor.core.errors import InputSpecError, did_you_mean

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
INTEGER_DTYPES = ("int64", "int32", "int8", "uint8")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Dim = int | str
MAX_DIM = 2**31 - 1  # one axis (ONNX Runtime, OpenVINO and TensorRT index with 32 bits in places)
MAX_INPUT_BYTES = 4 << 30  # one input at its concrete shape: beyond this no edge model's feed fits in memory


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
        if not isinstance(text, str):
            raise InputSpecError(f"input {text!r} is not text NAME:SHAPE[:DTYPE[:LOW..HIGH]]")
        if not text.isprintable():
            raise InputSpecError(f"input {text!r} holds control characters")
        parts = text.split(":")
        if len(parts) < 2 or len(parts) > 4 or not parts[0]:
            raise InputSpecError(f"input '{text}' is not NAME:SHAPE[:DTYPE[:LOW..HIGH]] (e.g. image:1x3x64x64:float32)")
        name, shape_text = parts[0], parts[1]
        if not name.isprintable() or name != name.strip():
            raise InputSpecError(f"input {text!r}: the name {name!r} holds spaces or control characters")
        dtype = parts[2] if len(parts) > 2 and parts[2] else "float32"
        _check_dtype(dtype, text)
        shape, examples = _parse_shape(shape_text, text)
        low, high = _parse_range(parts[3], text, dtype) if len(parts) == 4 else (None, None)
        spec = cls(name, shape, dtype, low, high, examples)
        spec.concrete_shape(None if spec.is_dynamic and spec.shape[0] not in spec.examples else 1, strict=False)
        return spec

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
    def needs_range(self) -> bool:
        """True for an integer input without a declared range (random test values would mean nothing)."""
        return self.dtype in INTEGER_DTYPES and self.low is None

    @property
    def value_range(self) -> tuple[float, float]:
        """(low, high) for random data: the declared range, else [0, 1) for floats, {0, 1} for integers
        (:func:`fill_value_ranges` refuses integer inputs without one where specs are declared)."""
        if self.low is not None:
            return float(self.low), float(self.high)
        return (0.0, 1.0) if self.dtype.startswith("float") else (0.0, 1.0 if self.dtype == "bool" else 2.0)

    def concrete_shape(self, batch: int | None = None, *, strict: bool = True) -> tuple[int, ...]:
        """Shape with symbols replaced: the first symbolic axis 0 by ``batch``, others by their example size.

        One-line InputSpecError when the shape holds more than :data:`MAX_INPUT_BYTES` (a batch or size that
        cannot fit in memory); ``strict=False`` skips symbols without an example (counted as 1)."""
        out = []
        for axis, dim in enumerate(self.shape):
            if isinstance(dim, int):
                out.append(dim)
            elif axis == 0 and batch is not None:
                out.append(batch)
            elif dim in self.examples:
                out.append(int(self.examples[dim]))
            elif axis == 0 or not strict:
                out.append(1)
            else:
                raise InputSpecError(
                    f"input '{self.name}': symbolic dimension '{dim}' needs an example size; write {dim}=64 in its shape")
        if any(not 0 < d <= MAX_DIM for d in out):
            raise InputSpecError(f"input '{self.name}': shape {'x'.join(map(str, out))} needs every size in 1.."
                                 f"{MAX_DIM}")
        size = math.prod(out) * np.dtype(self.dtype if self.dtype in DTYPES else "float32").itemsize
        if size > MAX_INPUT_BYTES:
            raise InputSpecError(f"input '{self.name}': shape {'x'.join(map(str, out))} of {self.dtype} is "
                                 f"{size / 2**30:.3g} GiB; one input is at most {MAX_INPUT_BYTES >> 30} GiB")
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
        if _is_size(symbol) and not example:
            dims.append(int(symbol))
        elif _SYMBOL.fullmatch(symbol) and (not example or _is_size(example)):
            dims.append(symbol)
            if example:
                examples[symbol] = int(example)
        else:
            raise InputSpecError(f"input '{text}': bad dimension '{token}' (use a positive int, a symbol like N, or H=64)")
    if not dims:
        raise InputSpecError(f"input '{text}': empty shape")
    return tuple(dims), examples


def _is_size(text: str) -> bool:
    """``text`` is a positive decimal axis size of at most :data:`MAX_DIM` (ASCII digits only)."""
    return text.isascii() and text.isdigit() and len(text) <= 10 and 0 < int(text) <= MAX_DIM


def _parse_range(range_text: str, text: str, dtype: str = "float32") -> tuple[float, float]:
    low, sep, high = range_text.partition("..")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        lo = hi = None
    if not sep or lo is None or not lo < hi:
        raise InputSpecError(f"input '{text}': range '{range_text}' is not LOW..HIGH with LOW < HIGH")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputSpecError(f"input '{text}': range '{range_text}' must be finite (e.g. -1..1)")
    if dtype in INTEGER_DTYPES:
        info = np.iinfo(dtype)
        if lo < info.min or hi > info.max + 1:
            raise InputSpecError(f"input '{text}': range '{range_text}' does not fit {dtype} "
                                 f"({info.min}..{info.max + 1})")
    elif dtype != "bool" and max(abs(lo), abs(hi)) > float(np.finfo(dtype).max):
        raise InputSpecError(f"input '{text}': range '{range_text}' does not fit {dtype}")
    return lo, hi


def _num(value: float | None) -> str:
    return f"{value:g}"


def fill_value_ranges(specs: Sequence[TensorSpec], *, declared: Sequence[TensorSpec | str] = (),
                      samples: Mapping[str, Any] | None = None, origin: str = "the model's input_specs",
                      note: Any = None) -> list[TensorSpec]:
    """``specs`` with every integer input given a value range: its own, else the one ``declared`` (e.g. the
    model's own specs) gives that input, else ``samples[name]``'s (example or data arrays: min..max+1). Each
    range taken is told to ``note(text)`` when given. An integer input left without one is a one-line
    InputSpecError asking for it (random test values would otherwise be only 0 and 1)."""
    known = {s.name: s for s in (d if isinstance(d, TensorSpec) else TensorSpec.parse(d) for d in declared)}
    out = []
    for spec in specs:
        if spec.needs_range and spec.name in known and known[spec.name].low is not None:
            other = known[spec.name]
            spec = TensorSpec(spec.name, spec.shape, spec.dtype, other.low, other.high, dict(spec.examples))
            if note:
                note(f"input '{spec.name}': value range {_num(spec.low)}..{_num(spec.high)} from {origin}")
        elif spec.needs_range and samples is not None and spec.name in samples:
            values = np.asarray(samples[spec.name])
            if values.size:
                low, high = float(values.min()), float(values.max()) + 1
                spec = TensorSpec(spec.name, spec.shape, spec.dtype, low, high, dict(spec.examples))
                if note:
                    note(f"input '{spec.name}': value range {_num(low)}..{_num(high)} from the example values")
        if spec.needs_range:
            example = TensorSpec(spec.name, spec.shape, spec.dtype, 0, 1000, dict(spec.examples)).format()
            raise InputSpecError(f"input '{spec.name}' is {spec.dtype} without a value range: give one, e.g. "
                                 f"{example.rsplit(':', 1)[0]}:0..999 (random test inputs are drawn from it)")
        out.append(spec)
    return out


def parse_specs(texts: list[str] | tuple[str, ...]) -> list[TensorSpec]:
    """Parse several CLI input declarations, refusing duplicate names."""
    specs = [s if isinstance(s, TensorSpec) else TensorSpec.parse(s) for s in texts]
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputSpecError(f"input name(s) declared twice: {', '.join(sorted(dup))}")
    return specs
