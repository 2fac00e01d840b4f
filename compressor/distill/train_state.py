"""What a training checkpoint holds, and how it is read back exactly.

A checkpoint is enough to continue as if the process had never stopped: the trained parameters, the
optimiser's moments, the learning-rate schedule, every module's state (buffers, a loss's own step counter via
``get_extra_state``), the number of batches drawn (the data-order position), the loss history so far, and every
random state: torch's, numpy's and Python's global generators, CUDA's where used, and the ``torch.Generator`` /
``numpy.random.Generator`` objects a loss or objective keeps for itself. It is written atomically (temporary
name, then renamed) and read with ``torch.load(weights_only=True)``: plain tensors, numbers, strings, lists and
dicts, no pickled code.

A checkpoint also records the training's *setup* (processes, precision, device type): exactness holds only on
the same setup, so a finished training is reused and a killed one resumed only when it matches.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from compressor.core.errors import CompressError
from compressor.core.files import atomic_path
from compressor.distill.tensor_tree import tensors_in

FORMAT = 2  # 2: the setup (processes, precision, device) is recorded, no longer part of the key
REQUIRED = ("desc", "key", "complete", "step", "drawn", "data_rng", "batch_digest", "setup", "modules", "params",
            "optimizer", "scheduler", "scaler", "rng", "on_step", "result")


class CheckpointError(CompressError):
    """A training checkpoint that cannot be used (unreadable, or from another configuration)."""


# ------------------------------------------------------------------ random states
def global_rng_state() -> dict[str, Any]:
    """torch's, numpy's and Python's global generators (and CUDA's when initialised), as checkpointable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def owned_generators(objects: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(path, generator)`` for every ``torch.Generator`` and ``numpy.random.Generator`` held as an attribute
    by ``objects`` or their submodules (a loss's sampler, an objective's masking generator), in a stable order."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        if isinstance(obj, (torch.Generator, np.random.Generator)):
            found.append((path, obj))
            return
        if isinstance(obj, nn.Module):
            children = {**{k: v for k, v in vars(obj).items() if not k.startswith("_")}, **obj._modules}
        elif type(obj).__module__.startswith("compressor.") and hasattr(obj, "__dict__"):
            children = vars(obj)  # our own objectives (plain objects holding a generator)
        else:
            return
        for name in sorted(children):
            visit(children[name], f"{path}.{name}", depth + 1)

    for index, obj in enumerate(objects):
        visit(obj, str(index), 0)
    return found


def generator_states(generators: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The states of :func:`owned_generators`' generators, by path."""
    return {path: gen.get_state() if isinstance(gen, torch.Generator) else json.dumps(gen.bit_generator.state)
            for path, gen in generators}


def set_generator_states(generators: Sequence[tuple[str, Any]], states: dict[str, Any]) -> None:
    """Restore :func:`generator_states` into the same generators (same paths)."""
    paths = {path for path, _ in generators}
    if paths != set(states):
        raise CheckpointError(f"the checkpoint's random generators ({sorted(states)}) are not this run's "
                              f"({sorted(paths)})")
    for path, gen in generators:
        if isinstance(gen, torch.Generator):
            gen.set_state(states[path])
        else:
            gen.bit_generator.state = json.loads(states[path])


# ------------------------------------------------------------------ fingerprints
def state_digest(params: Sequence[torch.Tensor], modules: Sequence[nn.Module]) -> str:
    """SHA-256 of the trained parameters and every module's tensors: the starting point of a training."""
    digest = hashlib.sha256()
    for index, tensor in enumerate(params):
        _hash_tensor(digest, f"param{index}", tensor)
    for index, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            if isinstance(tensor, torch.Tensor):
                _hash_tensor(digest, f"{index}.{name}", tensor)
    return digest.hexdigest()


def batch_digest(batch: Any) -> str:
    """SHA-256 of a batch's tensors (a tensor, or tuples/lists/dicts of them): tells two data orders apart."""
    digest = hashlib.sha256()
    for index, tensor in enumerate(tensors_in(batch)):
        _hash_tensor(digest, str(index), tensor)
    return digest.hexdigest()


def _hash_tensor(digest, name: str, tensor: torch.Tensor) -> None:
    data = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")


def fingerprint(parts: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ------------------------------------------------------------------ files
def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (serialised in memory first, then renamed into place)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``); one line when unusable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: name it in one line
        raise CheckpointError(f"training checkpoint {path} is unreadable ({type(exc).__name__}); remove it or "
                              f"run with --fresh") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"training checkpoint {path} is not in this toolchain's format {FORMAT}; remove it "
                              f"or run with --fresh")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"training checkpoint {path} lacks {', '.join(missing)}; remove it or run with "
                              f"--fresh")
    return payload


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what a process killed while writing ``path`` left beside it (``atomic_path``'s temporary files,
    ``.NAME.XXXX.tmp.pt``); returns them. Only one run writes a run folder at a time."""
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


def module_states(modules: Sequence[nn.Module]) -> list[dict[str, Any]]:
    """Each module's full ``state_dict`` (parameters, buffers, extra state), detached copies on the CPU."""
    return [{k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
             for k, v in m.state_dict().items()} for m in modules]


def module_buffers(modules: Sequence[nn.Module]) -> list[dict[str, Any]]:
    """Each module's ``state_dict`` without its parameters (buffers such as BatchNorm's running statistics, and
    extra state): what differs between processes, each computing it from its own shard of the batches."""
    return [{k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
             for k, v in m.state_dict(keep_vars=True).items() if not isinstance(v, nn.Parameter)} for m in modules]


def load_module_buffers(modules: Sequence[nn.Module], states: Sequence[dict[str, Any]]) -> None:
    """Load :func:`module_buffers` back (the parameters stay as they are)."""
    if len(states) != len(modules):
        raise CheckpointError(f"the checkpoint holds {len(states)} modules' buffers, this training {len(modules)}")
    for module, state in zip(modules, states):
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected:
            raise CheckpointError(f"the checkpoint's buffers {unexpected} are not this training's")


def load_module_states(modules: Sequence[nn.Module], states: Sequence[dict[str, Any]]) -> None:
    """Load :func:`module_states` back, strictly (same modules, same tensors)."""
    if len(states) != len(modules):
        raise CheckpointError(f"the checkpoint holds {len(states)} modules' state, this training {len(modules)}")
    for module, state in zip(modules, states):
        module.load_state_dict(state, strict=True)
