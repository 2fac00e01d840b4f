"""A bundle folder's own records: its manifest, its golden inputs and outputs, and the self-test on them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .backends import open_backend


def load_manifest(folder):
    """The bundle's ``manifest.json`` as a dict."""
    return json.loads((Path(folder) / "manifest.json").read_text())


def read_golden(folder):
    """(inputs, outputs) dicts from the bundle's golden.npz."""
    with np.load(Path(folder) / "golden.npz", allow_pickle=False) as data:
        inputs = {k[len("input."):]: data[k] for k in data.files if k.startswith("input.")}
        outputs = {k[len("output."):]: data[k] for k in data.files if k.startswith("output.")}
    return inputs, outputs


def selftest(folder):
    """Run the golden inputs; return (passed, {output: max abs error})."""
    manifest = load_manifest(folder)
    tol = manifest["selftest_tolerance"]
    inputs, expected = read_golden(folder)
    missing = [s["name"] for s in manifest.get("outputs", []) if s["name"] not in expected]
    if not expected or missing:
        raise ValueError(f"golden.npz lacks golden output(s): {', '.join(missing) or 'all'}")
    got = open_backend(folder, manifest).run(inputs)
    errors, passed = {}, True
    for name, want in expected.items():
        have = np.asarray(got[name], dtype=np.float64)
        diff = np.abs(have - want.astype(np.float64))
        errors[name] = float(diff.max()) if diff.size else 0.0
        passed = passed and bool(np.all(np.isfinite(have))) and _within(diff, want, tol)
    return passed, errors


def _within(diff, want, tol) -> bool:
    """The toolchain's parity rule (``compressor.targets.compare``) for one output."""
    stat = tol.get("stat", "elementwise")
    if stat == "sqnr":
        noise, signal = float(np.square(diff).sum()), float(np.square(want.astype(np.float64)).sum())
        return noise == 0.0 or (signal > 0.0 and 10.0 * np.log10(signal / noise) >= tol["min_sqnr_db"])
    bound = tol["atol"] + tol["rtol"] * float(np.abs(want).max(initial=0.0))
    return bool(np.all(diff <= bound)) if stat == "elementwise" else bool(diff.mean() <= bound)
