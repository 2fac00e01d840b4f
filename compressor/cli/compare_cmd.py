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
        raise click.BadParameter(f"'{text}' is not a comma-separated list of positive batch sizes")
    return batches


def reference_runner(reference: str, artifact, model_args: dict):
    """A runner for REFERENCE: an .onnx file (ONNX Runtime, CPU) or a MODEL_SPEC (PyTorch)."""
    from pathlib import Path

    from compressor.targets.backend_runner import BackendRunner
    from compressor.targets.base import Artifact
    from compressor.targets.onnx_io import graph_specs, load_onnx

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


@click.command()
@click.argument("reference")
@artifact_argument()
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False), help=".npz of inputs (default: random).")
@click.option("--count", type=click.IntRange(min=1), default=4, show_default=True, help="Random inputs per batch size.")
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
    from compressor.core.feeds import load_npz_feeds, random_feeds
    from compressor.targets.base import Artifact
    from compressor.targets.compare import Tolerance, compare_runners
    from compressor.targets.table import open_runner

    candidate = Artifact.load(artifact)
    tolerance = Tolerance.for_precision(candidate.precision, atol, rtol, min_sqnr_db)
    dynamic = all(isinstance(s.shape[0], str) for s in candidate.inputs)
    batches = parse_batches(batch_text) if batch_text else ((1, 2, 3) if dynamic else (None,))
    if inputs_file:
        feeds = load_npz_feeds(inputs_file, candidate.inputs)
    else:
        feeds = random_feeds(candidate.inputs, count=count, batches=batches, seed=seed)
    with reference_runner(reference, candidate, parse_model_args(model_args)) as ref, \
            open_runner(candidate) as run:
        report = compare_runners(ref, run, feeds, tolerance)
    lines = [f"{'PASS' if report.passed else 'FAIL'} {candidate.target} {candidate.precision} vs {reference} "
             f"on {report.feeds} input(s), {tolerance.describe()}"]
    for o in report.outputs:
        lines.append(f"  {o.name:<16} max abs {o.max_abs:.3e}  mean abs {o.mean_abs:.3e}  max rel {o.max_rel:.3e}"
                     f"  SQNR {o.sqnr_db:.1f} dB  non-finite {o.nonfinite}  {'ok' if o.passed else _why(o)}")
    emit(report.to_dict(), as_json, "\n".join(lines))
    if not report.passed:
        sys.exit(1)


def _why(o) -> str:
    """Why one output failed, in the terms of its statistic."""
    if o.nonfinite:
        return f"{o.nonfinite} non-finite"
    if o.stat == "sqnr":
        return f"SQNR below {o.min_sqnr_db:g} dB"
    if o.stat == "mean":
        return f"mean abs over {o.mean_bound:.3e}"
    return f"{o.violations} over tolerance"
