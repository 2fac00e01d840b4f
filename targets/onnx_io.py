"""Reading ONNX files safely: clear errors for missing, non-ONNX and truncated files; specs from a graph."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterator

import onnx
from google.protobuf.message import DecodeError

from compressor.core.errors import ModelFileError
from compressor.core.tensor_spec import TensorSpec

META_PREFIX = "edge_compress."
MAX_EXTERNAL_BYTES = 64 * 1024**3  # no single tensor of a model we build is larger
_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool",
}


def load_onnx(path: str | Path, *, check: bool = True) -> onnx.ModelProto:
    """Load and check an ONNX file, raising ModelFileError with one line for any problem.

    External data is checked before any of it is read: every tensor's file must lie inside the model's
    folder and hold the bytes the tensor declares (see :func:`check_external_data`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path} is not an ONNX model or is truncated ({type(exc).__name__})") from None
    if check_external_data(model, path):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except (ValueError, OSError, RuntimeError) as exc:
            raise ModelFileError(f"cannot read the external data of {path}: {exc}") from None
    if check:
        try:
            onnx.checker.check_model(str(path) if model.ByteSize() > 2**30 else model)
        except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{path} is not a valid ONNX model (truncated or corrupt?): {first}") from None
    return model


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and tensor attributes of ``graph`` and of every subgraph."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_tensors(sub)


_FOUR_BIT = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)}


def _declared_bytes(tensor: onnx.TensorProto) -> int:
    """Bytes the tensor's shape and type need (4-bit types pack two to a byte)."""
    count = math.prod(tensor.dims)
    if tensor.data_type in _FOUR_BIT:
        return (count + 1) // 2
    try:
        return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return count


def _size(count: int) -> str:
    """``16 bytes``, or ``50.0 GiB (53687091200 bytes)`` for large counts."""
    return f"{count / 1024**3:.1f} GiB ({count} bytes)" if count >= 1024**3 else f"{count} bytes"


def check_external_data(model: onnx.ModelProto, path: str | Path) -> int:
    """Check the external-data entries of a model loaded without its external data; return how many tensors
    use it. Refuses (ModelFileError, one line) a location outside the model's folder, a missing file, and
    a tensor whose declared size is absurd or larger than the bytes its file holds."""
    path = Path(path)
    folder = path.parent.resolve()
    count = 0
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        count += 1
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        where = f"{path}: tensor '{tensor.name}'"
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(folder):
            raise ModelFileError(f"{where} keeps its data at '{location}', outside the model's folder; "
                                 f"external data must lie beside the model")
        if not target.is_file():
            raise ModelFileError(f"{where} keeps its data in {location}, which does not exist")
        try:
            offset, length = int(entries.get("offset", 0)), entries.get("length")
            length = None if length is None else int(length)
        except ValueError:
            raise ModelFileError(f"{where} has a non-numeric external data offset or length") from None
        declared = _declared_bytes(tensor)
        size = target.stat().st_size
        if offset < 0 or (length is not None and length < 0) or declared < 0:
            raise ModelFileError(f"{where} declares a negative external data offset, length or shape")
        needed = declared if length is None else max(length, declared)
        if needed > MAX_EXTERNAL_BYTES:
            raise ModelFileError(f"{where} declares {needed / 1024**3:.1f} GiB of external data, more than "
                                 f"the {MAX_EXTERNAL_BYTES // 1024**3} GiB limit")
        if offset + needed > size:
            raise ModelFileError(f"{where} declares {_size(needed)} at offset {offset} of {location}, "
                                 f"which holds {size} bytes (truncated or crafted?)")
    return count


def uses_external_data(path: str | Path) -> bool:
    """True when the ONNX file at ``path`` keeps any tensor in external data."""
    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(model.graph))


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
