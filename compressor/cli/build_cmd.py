"""``compress build``: ONNX -> an artifact for one target and precision."""
from __future__ import annotations

import click

from compressor.cli.options import emit, json_option


def load_calibration(source: str, onnx_path: str, samples: int):
    """Calibration feeds from a folder (.npy/.npz/images) or a ``module:function`` / ``file.py:function``."""
    from pathlib import Path

    from compressor.calibration import from_callable, from_folder, representative
    from compressor.targets.onnx_io import read_specs

    specs, _ = read_specs(onnx_path)
    if Path(source).is_dir():
        feeds = from_folder(source, specs)
    elif ":" in source:
        feeds = from_callable(source, specs)
    else:
        from compressor.calibration import CalibrationError

        raise CalibrationError(f"calibration source '{source}' is neither a folder nor module:function")
    return representative(feeds, samples)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Target runtime (see 'compress list targets').")
@click.option("--precision", default="fp32", show_default=True, help="Precision the target builds.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--name", default=None, help="File stem (default: <onnx stem>_<precision>).")
@click.option("--provider", default=None, help="onnxruntime only: execution provider (default: auto).")
@click.option("--calibration", default=None,
              help="int8: a folder of .npy/.npz/images, or module:function / file.py:function returning feeds.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True)
@click.option("--quantizer", type=click.Choice(["qdq", "nncf"]), default="qdq", show_default=True,
              help="openvino int8: the shared Q/DQ ONNX, or NNCF's own post-training quantization.")
@click.option("--keep-float", multiple=True, help="int8: a node to keep in float (repeat).")
@click.option("--static-shapes", is_flag=True,
              help="openvino: compile one static-shape model per input shape (faster for fixed-size inputs).")
@click.option("--float-layers", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="openvino int8: precision of the layers left out of INT8 (--keep-float ones included).")
@json_option
def build(model, target, precision, out_dir, name, provider, calibration, calibration_samples, calibration_method,
          quantizer, keep_float, static_shapes, float_layers, as_json) -> None:
    """Build MODEL (an .onnx file) for --target at --precision; writes the artifact and its sidecar JSON."""
    from pathlib import Path

    from compressor.core.errors import BuildError
    from compressor.core.files import ensure_writable_dir
    from compressor.targets.onnx_io import load_onnx
    from compressor.targets.quantize import Int8Options
    from compressor.targets.table import load_target

    builder = load_target(target)
    builder.check_precision(precision)
    if provider and target != "onnxruntime":
        raise BuildError("--provider applies to the onnxruntime target only")
    if static_shapes and target != "openvino":
        raise BuildError("--static-shapes applies to the openvino target only")
    if float_layers != "fp32" and target != "openvino":
        raise BuildError("--float-layers applies to the openvino target only")
    load_onnx(model)
    folder = ensure_writable_dir(out_dir)
    options = {"provider": provider} if provider else {}
    if target == "openvino":
        options["quantizer"] = quantizer
        if static_shapes:
            options["static_shapes"] = True
        if float_layers != "fp32":
            options["float_layers"] = float_layers
    feeds = load_calibration(calibration, model, calibration_samples) if calibration else None
    artifact = builder.build(Path(model), precision=precision, out_dir=folder, name=name, options=options or None,
                             calibration=feeds, int8=Int8Options(method=calibration_method, exclude=tuple(keep_float)))
    emit(artifact.to_dict() | {"path": str(artifact.path), "sidecar": str(artifact.sidecar)}, as_json,
         f"built {artifact.target} {artifact.precision}: {artifact.path}\n"
         f"next:  compress compare {model} {artifact.path}")
