"""Load a checkpoint file into a model strictly, turning every failure into one-line ModelSpecError.

Checkpoints are read without unpickling code: ``torch.load(..., weights_only=True)``, or safetensors for
``*.safetensors`` files."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from compressor.core.errors import ModelSpecError

# BasicSR saves {"params": ..., "params_ema": ...}; Lightning-style files use "state_dict".
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(..., map_location="cpu", weights_only=True)`` (safetensors for
    ``*.safetensors``).

    Unwraps the usual containers (``params_ema``, ``params``, ``state_dict``). A truncated, corrupt or foreign
    file is one line naming it (torch's own advice to retry without ``weights_only`` is never repeated: that
    would run the file's code).
    """
    path = Path(path)
    check_checkpoint(path)
    try:
        obj = _read_safetensors(path) if path.suffix == ".safetensors" else torch.load(
            path, map_location="cpu", weights_only=True)
    except ModelSpecError:
        raise
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # weights_only refused a class: a pickled object such as a model
            raise ModelSpecError(f"cannot read weights {path}: it holds a pickled object, not a state dict "
                                 f"(unpickling can run any code): save model.state_dict() or .safetensors") from None
        raise ModelSpecError(f"cannot read weights {path}: not a PyTorch checkpoint") from None
    except Exception as exc:  # zip and unsupported-type errors mean "not a checkpoint"
        raise ModelSpecError(f"cannot read weights {path}: {_reason(exc)}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelSpecError(f"weights {path} do not hold a state dict of tensors")
    return dict(obj)


def check_checkpoint(path: str | Path) -> None:
    """Cheap preflight of a checkpoint, before any training: it exists, is a file, and its container is whole
    (a zip checkpoint's central directory and member sizes, a safetensors header and length); a legacy pickle
    checkpoint is read. One-line ModelSpecError naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise ModelSpecError(f"weights file not found: {path}")
    if not path.is_file():
        raise ModelSpecError(f"weights {path} is not a file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelSpecError(f"cannot read weights {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise ModelSpecError(f"cannot read weights {path}: the file is empty")
    if path.suffix == ".safetensors":
        _check_safetensors(path, head, size)
    elif head.startswith(b"PK"):
        _check_zip(path, size)


def _check_zip(path: Path, size: int) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ModelSpecError(f"cannot read weights {path}: truncated or corrupt (not a complete zip "
                             f"checkpoint)") from None
    if any(m.header_offset + m.compress_size > size for m in members):
        raise ModelSpecError(f"cannot read weights {path}: truncated (its members end past the file)")


def _check_safetensors(path: Path, head: bytes, size: int) -> None:
    import json
    import struct

    if len(head) < 8:
        raise ModelSpecError(f"cannot read weights {path}: truncated safetensors file")
    header_len = struct.unpack("<Q", head)[0]
    if header_len > min(size - 8, 100 << 20):
        raise ModelSpecError(f"cannot read weights {path}: truncated or not a safetensors file")
    with open(path, "rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_len))
        except (ValueError, UnicodeDecodeError):
            raise ModelSpecError(f"cannot read weights {path}: not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ModelSpecError(f"cannot read weights {path}: not a safetensors file (bad header)")
    ends = [v.get("data_offsets", [0, 0])[-1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    ends = [e for e in ends if isinstance(e, int)]
    if ends and 8 + header_len + max(ends) > size:
        raise ModelSpecError(f"cannot read weights {path}: truncated (its tensors end past the file)")


def _reason(exc: Exception) -> str:
    """Why torch could not read a file, in one line, without torch's advice to load it unsafely."""
    damaged = ("Invalid argument", "central directory", "failed finding", "PytorchStreamReader", "Ran out of input",
               "unexpected EOF", "truncated")
    if isinstance(exc, (OSError, EOFError, RuntimeError)) and any(word in str(exc) for word in damaged):
        return "truncated or corrupt file"
    if isinstance(exc, EOFError):
        return "truncated or corrupt file"
    if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
        return "not a weights-only PyTorch checkpoint (it holds more than tensors)"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelSpecError(f"cannot read weights {path}: install safetensors to read .safetensors files") from None
    return load_file(str(path), device="cpu")


def _mismatch_message(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. '{missing[0]}')")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. '{unexpected[0]}')")
    if shapes:
        k = shapes[0]
        got, want = "x".join(map(str, state[k].shape)), "x".join(map(str, own[k].shape))
        parts.append(f"{len(shapes)} shape mismatches (e.g. '{k}' is {got}, model wants {want})")
    return ", ".join(parts) or None


def load_weights(model: nn.Module, path: str | Path, *, name: str,
                 state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Load ``path`` into ``model`` with strict key and shape checks; returns ``model``.

    ``name`` names the model in the error message; ``state`` (already read and adapted) skips the read.
    """
    state = read_state_dict(path) if state is None else state
    problem = _mismatch_message(model, state)
    if problem:
        raise ModelSpecError(f"weights {Path(path).name} do not fit model '{name}': {problem}")
    model.load_state_dict(state, strict=True)
    return model
