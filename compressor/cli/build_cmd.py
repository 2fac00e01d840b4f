"""``compress build``: ONNX -> an artifact for one target and precision."""
from __future__ import annotations

import click

from compressor.cli.options import emit, json_option


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Target runtime (see 'compress list targets').")
@click.option("--precision", default="fp32", show_default=True, help="Precision the target builds.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--name", default=None, help="File stem (default: <onnx stem>_<precision>).")
@click.option("--provider", default=None, help="onnxruntime only: execution provider (default: auto).")
@json_option
def build(model, target, precision, out_dir, name, provider, as_json) -> None:
    """Build MODEL (an .onnx file) for --target at --precision; writes the artifact and its sidecar JSON."""
    from pathlib import Path

    from compressor.errors import BuildError
    from targets.files import ensure_writable_dir
    from targets.onnx_io import load_onnx
    from targets.table import load_target

    builder = load_target(target)
    builder.check_precision(precision)
    if provider and target != "onnxruntime":
        raise BuildError("--provider applies to the onnxruntime target only")
    load_onnx(model)
    folder = ensure_writable_dir(out_dir)
    options = {"provider": provider} if provider else None
    artifact = builder.build(Path(model), precision=precision, out_dir=folder, name=name, options=options)
    emit(artifact.to_dict() | {"path": str(artifact.path), "sidecar": str(artifact.sidecar)}, as_json,
         f"built {artifact.target} {artifact.precision}: {artifact.path}\n"
         f"next:  compress compare {model} {artifact.path}")
