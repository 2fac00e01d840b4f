"""Losses in float32 under mixed-precision training.

Under ``torch.autocast`` (``--train-precision bf16``/``fp16``) the models run their matrix products in 16 bits,
and on CPUs autocast also leaves ``softmax``, ``log_softmax``, norms and ``layer_norm`` in bf16. A loss that
normalises, exponentiates or sums many small terms (KL, affinities, focal loss) loses most of its digits there,
and ``1 - 1e-4`` rounds to 1 in bf16 (``log(1 - p)`` becomes ``-inf``). :func:`float32_loss` runs a loss with
autocast off and its 16-bit tensors widened to float32; with float32 inputs and no autocast it changes nothing
(the same tensors, the same operations), so full-precision training is bit for bit what it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import Tensor

LOW_PRECISION = (torch.bfloat16, torch.float16)
AUTOCAST_DEVICES = ("cpu", "cuda")

F = TypeVar("F", bound=Callable[..., Any])


def widen(value: Any) -> Any:
    """``value`` with every bf16/fp16 tensor (also inside lists, tuples, dicts and dataclasses) as float32;
    anything else, float64 and float32 tensors included, is returned as the same object."""
    if isinstance(value, Tensor):
        return value.float() if value.dtype in LOW_PRECISION else value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        widened = [widen(v) for v in value]
        return value if all(a is b for a, b in zip(widened, value)) else type(value)(widened)
    if isinstance(value, dict):
        widened = {k: widen(v) for k, v in value.items()}
        return value if all(widened[k] is v for k, v in value.items()) else widened
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: widen(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if all(changes[name] is getattr(value, name) for name in changes):
            return value
        return dataclasses.replace(value, **changes)
    return value


@contextlib.contextmanager
def autocast_off() -> Iterator[None]:
    """Inside the block no autocast is active (on any device type where one was); a no-op otherwise."""
    with contextlib.ExitStack() as stack:
        for device_type in AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def float32_loss(fn: F) -> F:
    """Decorate a loss (a function or a ``forward``) to run with autocast off and its bf16/fp16 tensor
    arguments widened to float32 (see the module's docstring).

    >>> @float32_loss
    ... def kl(a, b): return (a.softmax(-1) * (a.log_softmax(-1) - b.log_softmax(-1))).sum()
    >>> kl(torch.zeros(2, 3, dtype=torch.bfloat16), torch.zeros(2, 3, dtype=torch.bfloat16)).dtype
    torch.float32
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with autocast_off():
            return fn(*widen(args), **widen(kwargs))
    return wrapper  # type: ignore[return-value]
