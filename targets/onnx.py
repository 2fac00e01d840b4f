"""ONNX export: torch -> ONNX with dynamic axes verified at batch 1, 2 and 3, checked, simplified, annotated."""
from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch

from compressor.core.errors import CompressError, ExportError
from compressor.core.feeds import random_feed
from compressor.core.files import atomic_path, ensure_writable_dir
from compressor.core.tensor_spec import TensorSpec
from compressor.core.version import __version__
from compressor.targets.base import Artifact
from compressor.targets.compare import Tolerance, compare_outputs, nonfinite_summary
from compressor.targets.onnx_io import graph_specs, write_metadata
from compressor.targets.torch_runner import outputs_to_dict

log = logging.getLogger(__name__)
EXPORTERS = ("dynamo", "torchscript")
TWO_GB = 2 * 1024**3


@dataclass(frozen=True)
class ExportOptions:
    """How to export. ``exporter`` is tried first; the other is the fallback when it fails or verifies wrong."""

    opset: int | None = None
    simplify: bool = True
    exporter: str = "dynamo"
    verify_batches: tuple[int, ...] = (1, 2, 3)
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(1e-4, 1e-3))
    preprocessing: str | None = None  # default: the model's ``preprocessing`` attribute
    source: str | None = None


def export_onnx(model: torch.nn.Module, inputs: Sequence[TensorSpec], output_names: Sequence[str],
                out_path: str | Path, options: ExportOptions = ExportOptions()) -> Artifact:
    """Export ``model`` to one ONNX file at ``out_path`` and return its artifact (sidecar written).

    >>> export_onnx(create_model("tiny_convnet"), [TensorSpec.parse("image:Nx3x32x32")], ["out"], "m.onnx")
    """
    if options.exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{options.exporter}'; choose from: {', '.join(EXPORTERS)}")
    out_path = Path(out_path)
    model = model.eval()
    example = random_feed(inputs, batch=2 if _batch_dynamic(inputs) else None, rng=np.random.default_rng(0))
    order = [options.exporter] + [e for e in EXPORTERS if e != options.exporter]
    problems = []
    for exporter in order:
        try:
            proto = _export_once(model, inputs, output_names, example, exporter, options.opset)
            proto = _finish(proto, options.simplify)
            _verify(model, proto, inputs, output_names, options)
        except ExportError as exc:
            problems.append(f"{exporter}: {exc}")
            log.info("export with %s failed: %s", exporter, exc)
            continue
        notes = options.preprocessing if options.preprocessing is not None else getattr(model, "preprocessing", "")
        return _save(proto, inputs, out_path, exporter, replace(options, preprocessing=str(notes)))
    raise ExportError("export failed; " + " | ".join(problems))


def _batch_dynamic(inputs: Sequence[TensorSpec]) -> bool:
    return all(isinstance(s.shape[0], str) for s in inputs)


def _example_args(inputs: Sequence[TensorSpec], feed: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(feed[s.name]) for s in inputs)


def _export_once(model, inputs, output_names, example, exporter: str, opset: int | None) -> onnx.ModelProto:
    args = _example_args(inputs, example)
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = dict(input_names=[s.name for s in inputs], output_names=list(output_names),
                                  opset_version=opset)
    if exporter == "dynamo":
        dims = {sym: torch.export.Dim(sym, min=1) for s in inputs for sym in s.shape if isinstance(sym, str)}
        shapes = tuple({axis: dims[d] for axis, d in enumerate(s.shape) if isinstance(d, str)} or None for s in inputs)
        kwargs.update(dynamo=True, external_data=False, dynamic_shapes=shapes, verbose=False, optimize=True)
    else:
        axes = {s.name: {a: d for a, d in enumerate(s.shape) if isinstance(d, str)} for s in inputs}
        kwargs.update(dynamo=False, dynamic_axes={k: v for k, v in axes.items() if v})
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, args, buffer if exporter != "dynamo" else None, **kwargs)
    except Exception as exc:  # exporters raise many types; report the first line
        raise ExportError(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    if exporter == "dynamo":
        return program.model_proto
    return onnx.load_from_string(buffer.getvalue())


def _finish(proto: onnx.ModelProto, simplify: bool) -> onnx.ModelProto:
    """Simplify with onnxslim, infer shapes, run the full checker."""
    if simplify:
        import onnxslim

        from compressor.targets.layers.scopes import keep_module_scopes

        with contextlib.redirect_stdout(io.StringIO()):  # onnxslim drops the module scopes the exporter recorded
            proto = keep_module_scopes(proto, onnxslim.slim(proto))
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # checker and shape inference errors
        raise ExportError(f"exported model fails the ONNX checker: {str(exc).splitlines()[0]}") from None
    return proto


def _verify(model, proto: onnx.ModelProto, inputs, output_names, options: ExportOptions) -> None:
    """Run the ONNX in ONNX Runtime at each batch size and compare with PyTorch."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    batches = options.verify_batches if _batch_dynamic(inputs) else (None,)
    rng = np.random.default_rng(1)
    for batch in batches:
        feed = random_feed(inputs, batch=batch, rng=rng)
        with torch.inference_mode():
            ref = outputs_to_dict(model(*_example_args(inputs, feed)), output_names)
        try:
            got = dict(zip(output_names, session.run(None, feed)))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ExportError(f"ONNX Runtime fails at batch {batch}: {str(exc).splitlines()[0]}") from None
        try:
            report = compare_outputs([(ref, got)], options.tolerance)
        except CompressError as exc:
            raise ExportError(f"ONNX output differs from PyTorch at batch {batch}: {exc}") from None
        nonfinite = nonfinite_summary(report)
        if nonfinite:  # NaN in both would otherwise compare as "max abs 0"
            named = nonfinite.replace("the candidate", "ONNX").replace("the reference", "PyTorch")
            raise ExportError(f"non-finite outputs{f' at batch {batch}' if batch else ''}: {named}")
        if not report.passed:
            raise ExportError(f"ONNX output differs from PyTorch at batch {batch} (max abs {report.max_abs:.3g})")


def _versions() -> dict[str, str]:
    import onnxslim

    return {"edge_compress": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxslim": onnxslim.__version__, "python": platform.python_version()}


def _save(proto, inputs, out_path: Path, exporter: str, options: ExportOptions) -> Artifact:
    proto.producer_name, proto.producer_version = "edge-compress", __version__
    write_metadata(proto, {"inputs": [s.to_dict() for s in inputs], "preprocessing": options.preprocessing,
                           "exporter": exporter, "versions": _versions(), "source": options.source or ""})
    files = [out_path.name]
    ensure_writable_dir(Path(out_path).parent)
    with atomic_path(out_path) as tmp:
        if proto.ByteSize() < TWO_GB:
            onnx.save(proto, str(tmp))
        else:  # protobuf cannot hold more than 2 GB in one message
            files.append(out_path.name + ".data")
            onnx.save(proto, str(tmp), save_as_external_data=True, location=files[1])
    spec_in, spec_out = graph_specs(proto)
    artifact = Artifact(target="onnx", precision="fp32", path=out_path.resolve(), files=tuple(files),
                        inputs=tuple(spec_in), outputs=tuple(spec_out), source=options.source,
                        metadata={"exporter": exporter, "opset": _opset(proto), "nodes": len(proto.graph.node),
                                  "versions": _versions(), "preprocessing": options.preprocessing})
    artifact.save()
    return artifact


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
