"""``compress compare``: parity of an artifact against PyTorch or the FP32 ONNX reference."""
from __future__ import annotations

import sys

import click

from compressor.cli.options import artifact_argument, emit, json_option


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> (1, 2, 3)."""
    try:
        batches = tuple(int(b) for b in text.split(","))
    except ValueError:
        batches = ()
    if not batches or min(batches) < 1:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of positive batch sizes",
                                 param_hint="--batch")
    return batches


def reference_runner(reference: str, artifact, model_args: dict):
    """A runner for REFERENCE: an .onnx file (ONNX Runtime, CPU) or a MODEL_SPEC (PyTorch)."""
    from pathlib import Path

    from compressor.targets.backend_runner import BackendRunner
    from compressor.targets.base import Artifact
    from compressor.targets.onnx_io import graph_specs, load_onnx

    refuse_non_reference(reference)
    if reference.endswith(".onnx"):
        inputs, outputs = graph_specs(load_onnx(reference))
        ref = Artifact("onnxruntime", "fp32", Path(reference).resolve(), (Path(reference).name,), tuple(inputs),
                       tuple(outputs), options={"provider": "CPUExecutionProvider"})
        return BackendRunner(ref)
    from compressor.models.spec import load_model_spec
    from compressor.targets.torch_runner import TorchRunner

    loaded = load_model_spec(reference, **model_args)
    names = loaded.output_names or [o.name for o in artifact.outputs]
    return TorchRunner(loaded.model, artifact.inputs, names)


# Files that are artifacts or data, not references: a reference runs the model as it was before building
NOT_REFERENCES = {".xml": "an OpenVINO IR", ".bin": "OpenVINO weights", ".engine": "a TensorRT engine",
                  ".plan": "a TensorRT engine", ".json": "a JSON file", ".npz": "a data file", ".npy": "a data file",
                  ".tar": "an archive", ".gz": "an archive", ".pt": "a checkpoint", ".pth": "a checkpoint"}


def refuse_non_reference(reference: str) -> None:
    """A one-line error when REFERENCE names a built artifact or another file that is no reference."""
    from pathlib import Path

    from compressor.core.errors import ModelSpecError

    path = Path(reference)
    what = NOT_REFERENCES.get(path.suffix.lower())
    if what is None and path.is_file() and path.suffix.lower() not in (".onnx", ".py"):
        what = f"a {path.suffix or 'suffix-less'} file"
    if what:
        raise ModelSpecError(f"reference {reference} is {what}; the reference must be a MODEL_SPEC "
                             f"(file.py:factory, package.module:factory or a model name) or an FP32 .onnx")


def read_input_feeds(inputs_file: str, specs) -> list:
    """Feeds from a user ``.npz`` (one line for an empty or unreadable file, no samples, NaN or Inf)."""
    from pathlib import Path

    import numpy as np

    from compressor.core.errors import InputSpecError
    from compressor.core.feeds import load_npz_feeds

    path = Path(inputs_file)
    if path.is_file() and path.stat().st_size == 0:
        raise InputSpecError(f"inputs file {path} is empty")
    try:
        feeds = load_npz_feeds(path, specs)
    except EOFError:  # numpy's reading of a cut-off file; click would report it as "aborted"
        raise InputSpecError(f"{path} is not a readable .npz file (truncated)") from None
    if not feeds:
        raise InputSpecError(f"{path} holds no input samples")
    for index, feed in enumerate(feeds):
        for name, array in feed.items():
            array = np.asarray(array)
            if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
                count = int(array.size - np.isfinite(array).sum())
                raise InputSpecError(f"{path}: input '{name}' of sample {index} holds {count} NaN or Inf value(s); "
                                     f"parity needs finite inputs")
    return feeds


def check_tolerance_flags(**values) -> None:
    """Refuse a negative, NaN or infinite ``--atol``/``--rtol``/``--min-sqnr`` naming the flag."""
    import math

    from compressor.core.errors import CompressError

    for flag, value in values.items():
        if value is not None and (not math.isfinite(value) or value < 0):
            raise CompressError(f"--{flag} must be a finite number >= 0, not {value}")


@click.command()
@click.argument("reference")
@artifact_argument()
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help=".npz of inputs (default: random).")
@click.option("--count", type=click.IntRange(min=1, max=10_000), default=4, show_default=True, help="Random inputs per batch size.")
@click.option("--batch", "batch_text", default=None, help="Batch sizes, e.g. 1,2,3 (default: 1,2,3 when dynamic).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance (default: per precision).")
@click.option("--rtol", type=float, default=None, help="Relative tolerance (default: per precision).")
@click.option("--min-sqnr", "min_sqnr_db", type=float, default=None,
              help="Pass when each output's signal-to-noise ratio is at least this many dB (default for INT8: 20).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--arg", "model_args", multiple=True, metavar="KEY=VALUE", help="Factory argument for a MODEL_SPEC.")
@json_option
def compare(reference, artifact, inputs_file, count, batch_text, atol, rtol, min_sqnr_db, seed, model_args,
            as_json) -> None:
    """Compare ARTIFACT with REFERENCE (a MODEL_SPEC or an FP32 .onnx); exit 1 when parity fails."""
    from compressor.cli.export_cmd import parse_model_args
    from compressor.core.feeds import random_feeds
    from compressor.targets.base import Artifact
    from compressor.targets.compare import Tolerance, compare_runners
    from compressor.targets.table import open_runner

    check_tolerance_flags(atol=atol, rtol=rtol, **{"min-sqnr": min_sqnr_db})
    refuse_non_reference(reference)
    candidate = Artifact.load(artifact)
    tolerance = Tolerance.for_precision(candidate.precision, atol, rtol, min_sqnr_db)
    dynamic = all(isinstance(s.shape[0], str) for s in candidate.inputs)
    batches = parse_batches(batch_text) if batch_text else ((1, 2, 3) if dynamic else (None,))
    if inputs_file:
        feeds = read_input_feeds(inputs_file, candidate.inputs)
    else:
        feeds = random_feeds(candidate.inputs, count=count, batches=batches, seed=seed)
    with reference_runner(reference, candidate, parse_model_args(model_args)) as ref, \
            open_runner(candidate) as run:
        report = compare_runners(ref, run, feeds, tolerance)
    lines = [f"{'PASS' if report.passed else 'FAIL'} {candidate.target} {candidate.precision} vs {reference} "
             f"on {report.feeds} input(s), {tolerance.describe()}"]
    for o in report.outputs:
        lines.append(f"  {o.name:<16} max abs {o.max_abs:.3e}  mean abs {o.mean_abs:.3e}  max rel {o.max_rel:.3e}"
                     f"  SQNR {o.sqnr_db:.1f} dB  non-finite {o.nonfinite + o.ref_nonfinite}"
                     f"  {'ok' if o.passed else _why(o)}")
    emit(report.to_dict(), as_json, "\n".join(lines))
    if not report.passed:
        sys.exit(1)


def _why(o) -> str:
    """Why one output failed, in the terms of its statistic."""
    if o.ref_nonfinite:
        return f"the reference outputs {o.ref_nonfinite} non-finite (NaN/Inf) value(s)"
    if o.nonfinite:
        return f"{o.nonfinite} non-finite (NaN/Inf) value(s)"
    if o.stat == "sqnr":
        return f"SQNR below {o.min_sqnr_db:g} dB"
    if o.stat == "mean":
        return f"mean abs over {o.mean_bound:.3e}"
    return f"{o.violations} over tolerance"
