"""Random model inputs from a manifest's input specs, for profiling on the device.

The same arrays as the toolchain's ``compressor.core.feeds.random_feed`` for the same specs, batch and
seed (tests/runtime/test_random_feed_parity.py checks it): a spec here is the JSON dict a manifest stores
(``TensorSpec.to_dict``: ``name``, ``shape``, ``dtype``, optional ``range`` and ``examples``).
"""
from __future__ import annotations

import numpy as np


def concrete_shape(spec, batch=None):
    """``spec``'s shape with symbols replaced: a symbolic axis 0 by ``batch``, others by their example size."""
    examples = spec.get("examples") or {}
    shape = []
    for axis, dim in enumerate(spec["shape"]):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0 and batch is not None:
            shape.append(int(batch))
        elif dim in examples:
            shape.append(int(examples[dim]))
        elif axis == 0:
            shape.append(1)
        else:
            raise ValueError(f"input '{spec['name']}': symbolic dimension '{dim}' has no example size")
    return tuple(shape)


def value_range(spec):
    """(low, high) for random values: the declared range, else [0, 1) for floats, {0, 1} for integers."""
    declared = spec.get("range")
    if declared:
        return float(declared[0]), float(declared[1])
    dtype = spec.get("dtype", "float32")
    return (0.0, 1.0) if dtype.startswith("float") else (0.0, 1.0 if dtype == "bool" else 2.0)


def random_feed(specs, batch=None, seed=0):
    """Inputs drawn uniformly from each spec's range (integers: [low, high)), symbolic dims at their examples."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape, dtype = concrete_shape(spec, batch), spec.get("dtype", "float32")
        low, high = value_range(spec)
        if dtype.startswith("float"):
            feed[spec["name"]] = rng.uniform(low, high, size=shape).astype(dtype)
        elif dtype == "bool":
            feed[spec["name"]] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feed[spec["name"]] = rng.integers(int(low), max(int(high), int(low) + 1), size=shape).astype(dtype)
    return feed
