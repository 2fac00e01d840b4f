"""Batches and optimiser states as trees: a tensor, or dicts, lists and tuples (named tuples too) of them."""
from __future__ import annotations

from typing import Any, Callable, Iterator

from torch import Tensor


def tensors_in(tree: Any) -> Iterator[Tensor]:
    """Every tensor in ``tree``, depth first, in the containers' own order."""
    if isinstance(tree, Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from tensors_in(value)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            yield from tensors_in(value)


def map_tensors(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    """``tree`` with every tensor replaced by ``fn(tensor)``; containers rebuilt as their own type, anything
    else (None, numbers, strings) kept."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: map_tensors(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a named tuple takes its fields by position
        return type(tree)(*(map_tensors(fn, v) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_tensors(fn, v) for v in tree)
    return tree
