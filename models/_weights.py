"""Load a checkpoint file into a model strictly, turning every failure into one-line ModelSpecError.

Checkpoints are read without unpickling code: ``torch.load(..., weights_only=True)``, or safetensors for
``*.safetensors`` files."""
from __future__ import annotations

import pickle
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

    Unwraps the usual containers (``params_ema``, ``params``, ``state_dict``).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"weights file not found: {path}")
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
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSpecError(f"cannot read weights {path}: {first_line}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelSpecError(f"weights {path} do not hold a state dict of tensors")
    return dict(obj)


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
