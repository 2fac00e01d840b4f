"""The device's self-test judges outputs by the toolchain's own parity rule, for every precision's tolerance."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.runtime.bundle import _within
from compressor.targets.compare import Tolerance, compare_outputs

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@settings(max_examples=200, deadline=None)
@given(precision=st.sampled_from(PRECISIONS), seed=st.integers(0, 2**31 - 1),
       noise=st.sampled_from([0.0, 1e-6, 1e-3, 3e-2, 0.3]), steps=st.integers(0, 20))
def test_runtime_rule_agrees_with_the_toolchains(precision, seed, noise, steps):
    rng = np.random.default_rng(seed)
    want = rng.normal(size=64).astype(np.float32)
    have = want.astype(np.float64) + rng.normal(scale=noise, size=64)
    have[rng.integers(0, 64, size=steps)] += 0.05  # a few whole-step errors
    tol = Tolerance.for_precision(precision)
    expected = compare_outputs([({"y": want}, {"y": have})], tol).passed
    diff = np.abs(have - want.astype(np.float64))
    assert _within(diff, want, tol.to_dict()) == expected
