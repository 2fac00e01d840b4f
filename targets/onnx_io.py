"""Reading ONNX files safely: clear errors for missing, non-ONNX and truncated files; specs from a graph."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from compressor.core.errors import ModelFileError
from compressor.core.tensor_spec import TensorSpec

META_PREFIX = "edge_compress."
_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool",
}


def load_onnx(path: str | Path, *, check: bool = True) -> onnx.ModelProto:
    """Load and check an ONNX file, raising ModelFileError with one line for any problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path} is not an ONNX model or is truncated ({type(exc).__name__})") from None
    if check:
        try:
            onnx.checker.check_model(str(path) if model.ByteSize() > 2**30 else model)
        except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{path} is not a valid ONNX model (truncated or corrupt?): {first}") from None
    return model


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Our metadata entries (prefix stripped)."""
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def write_metadata(model: onnx.ModelProto, entries: dict[str, object]) -> None:
    """Set our metadata entries; non-string values are stored as JSON."""
    keep = [p for p in model.metadata_props
            if not (p.key.startswith(META_PREFIX) and p.key[len(META_PREFIX):] in entries)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in entries.items():
        model.metadata_props.add(key=META_PREFIX + key, value=value if isinstance(value, str) else json.dumps(value))


def _graph_spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or f"d{i}")
                 for i, d in enumerate(tensor_type.shape.dim))
    return TensorSpec(value_info.name, dims, _ONNX_DTYPES.get(tensor_type.elem_type, "float32"))


def graph_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs: from our metadata when present (it keeps ranges and examples), else the graph."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_graph_spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_graph_spec(v) for v in model.graph.output]
    meta = read_metadata(model)
    if "inputs" in meta:
        declared = {d["name"]: TensorSpec.from_dict(d) for d in json.loads(meta["inputs"])}
        inputs = [declared.get(s.name, s) for s in inputs]
    return inputs, outputs


def read_specs(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of an ONNX file (loaded and checked)."""
    return graph_specs(load_onnx(path))
