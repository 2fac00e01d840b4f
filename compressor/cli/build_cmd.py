"""``compress build``: ONNX -> an artifact for one target and precision."""
from __future__ import annotations

import click

from compressor.cli.options import FILE_STEM, emit, json_option


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


def gather_options(spellings: dict[str, object], pairs: tuple[str, ...]) -> dict[str, object]:
    """One mapping of target options from the flags that spell them and ``--option KEY=VALUE`` pairs (values
    stay text; the target's options class parses and validates them). A key given twice is an error."""
    from compressor.core.errors import BuildError

    options = {key: value for key, value in spellings.items() if value is not None}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BuildError(f"--option takes KEY=VALUE, got '{pair}'")
        key = key.strip()
        if key in options:
            raise BuildError(f"option '{key}' is given twice")
        options[key] = value.strip()
    return options


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Target runtime (see 'compress list targets').")
@click.option("--precision", default="fp32", show_default=True, help="Precision the target builds.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--name", type=FILE_STEM, default=None, help="File stem (default: <onnx stem>_<precision>).")
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="A build option of the target (repeat; 'compress list targets' names each target's options).")
@click.option("--provider", default=None, help="Same as --option provider=...: ONNX Runtime's execution provider.")
@click.option("--calibration", default=None,
              help="int8: a folder of .npy/.npz/images, or module:function / file.py:function returning feeds.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True)
@click.option("--quantizer", default=None,
              help="Same as --option quantizer=...: int8 from the shared Q/DQ ONNX (qdq), NNCF (nncf, OpenVINO) "
                   "or dynamic quantization (dynamic, ONNX Runtime: no --calibration needed).")
@click.option("--keep-float", multiple=True, help="int8: a node to keep in float (repeat).")
@click.option("--static-shapes", is_flag=True, default=None,
              help="Same as --option static_shapes=true: OpenVINO compiles one static-shape model per input shape.")
@click.option("--float-layers", default=None,
              help="Same as --option float_layers=...: OpenVINO int8, precision of the layers left out of INT8 "
                   "(fp32 or bf16).")
@json_option
def build(model, target, precision, out_dir, name, option_pairs, provider, calibration, calibration_samples,
          calibration_method, quantizer, keep_float, static_shapes, float_layers, as_json) -> None:
    """Build MODEL (an .onnx file) for --target at --precision; writes the artifact and its sidecar JSON."""
    from pathlib import Path

    from compressor.core.files import ensure_writable_dir
    from compressor.targets.onnx_io import load_onnx
    from compressor.targets.quantize import Int8Options
    from compressor.targets.staged_build import build_staged
    from compressor.targets.table import load_target

    builder = load_target(target)
    builder.check_precision(precision)
    spellings = {"provider": provider, "quantizer": quantizer, "static_shapes": static_shapes or None,
                 "float_layers": float_layers}
    options = builder.read_options(builder.options_class.from_mapping(gather_options(spellings, option_pairs),
                                                                      from_text=True), precision)
    load_onnx(model)
    folder = ensure_writable_dir(out_dir)
    feeds = load_calibration(calibration, model, calibration_samples) if calibration else None
    # staged: a concurrent build of the same name, or an interrupted one, never leaves mixed or half-built files
    artifact = build_staged(builder, Path(model), precision=precision, out_dir=folder, name=name, options=options,
                            calibration=feeds, int8=Int8Options(method=calibration_method, exclude=tuple(keep_float)))
    emit(artifact.to_dict() | {"path": str(artifact.path), "sidecar": str(artifact.sidecar)}, as_json,
         f"built {artifact.target} {artifact.precision}: {artifact.path}\n"
         f"next:  compress compare {model} {artifact.path}")
