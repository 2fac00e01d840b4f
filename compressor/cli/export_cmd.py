"""``compress export``: PyTorch model -> verified ONNX file with a sidecar."""
from __future__ import annotations

import re

import click

from compressor.cli.options import emit, json_option


def parse_model_args(pairs: tuple[str, ...]) -> dict[str, object]:
    """``KEY=VALUE`` pairs for the model factory; values are read as YAML scalars (numbers, booleans, text)."""
    import yaml

    from compressor.core.errors import ModelSpecError

    kwargs: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ModelSpecError(f"model argument '{pair}' is not KEY=VALUE")
        kwargs[key] = yaml.safe_load(value) if value else ""
    return kwargs


def default_stem(spec: str) -> str:
    """A file stem from a MODEL_SPEC: the registered name or the factory name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", spec.rpartition(":")[2] or spec)


@click.command()
@click.argument("model_spec")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE[:LOW..HIGH]]",
              help="Declare an input, e.g. image:Nx3xH=64xW=64:float32:0..1 (repeat per input).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--name", default=None, help="File stem of the ONNX (default: the model's name).")
@click.option("--arg", "model_args", multiple=True, metavar="KEY=VALUE", help="Keyword argument for the factory.")
@click.option("--output-name", "output_names", multiple=True, help="Name the outputs (default: the model's own).")
@click.option("--opset", type=click.IntRange(min=7, max=99), default=None, callback=lambda _c, _p, v: _known_opset(v),
              help="ONNX opset (default: the exporter's; at most the installed onnx package's newest).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="Tried first; the other one is the fallback.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim simplification.")
@click.option("--preprocessing", default=None, help="Preprocessing notes stored in the ONNX metadata.")
@json_option
def export(model_spec, inputs, out_dir, name, model_args, output_names, opset, exporter, no_simplify,
           preprocessing, as_json) -> None:
    """Export MODEL_SPEC (file.py:factory, package.module:factory or a model name) to ONNX.

    Dynamic axes (symbols such as N) are verified in ONNX Runtime at batch 1, 2 and 3 against PyTorch.
    """
    from pathlib import Path

    from compressor.core.files import ensure_writable_dir
    from compressor.models.spec import load_model_spec, resolve_input_specs
    from compressor.targets.onnx import ExportOptions, export_onnx

    folder = ensure_writable_dir(out_dir)
    loaded = load_model_spec(model_spec, **parse_model_args(model_args))
    specs = resolve_input_specs(loaded, inputs)
    names = list(output_names) or loaded.output_names or ["output"]
    options = ExportOptions(opset=opset, simplify=not no_simplify, exporter=exporter, source=model_spec,
                            preprocessing=preprocessing if preprocessing is not None else loaded.preprocessing)
    artifact = export_onnx(loaded.model, specs, names, Path(folder) / f"{name or default_stem(model_spec)}.onnx",
                           options)
    emit(artifact.to_dict() | {"path": str(artifact.path), "sidecar": str(artifact.sidecar)}, as_json,
         f"exported {artifact.path} ({artifact.metadata['nodes']} nodes, opset {artifact.metadata['opset']}, "
         f"{artifact.metadata['exporter']} exporter)\n"
         f"inputs:  {', '.join(s.format() for s in artifact.inputs)}\n"
         f"next:    compress build {artifact.path} --target onnxruntime --precision fp32 --out {folder}")


def _known_opset(opset: int | None) -> int | None:
    """``opset`` when the installed onnx package knows it (checked lazily: importing onnx is slow)."""
    if opset is None:
        return None
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise click.BadParameter(f"{opset} is newer than this onnx package knows (at most {newest})",
                                 param_hint="--opset")
    return opset
