"""ONNX node -> PyTorch module path, from what the exporter left in the graph.

Four sources, best first: the dynamo exporter's node metadata (``pkg.torch.onnx.name_scopes``: ``['', 'heavy',
'heavy.0', 'conv2d_1']`` -> ``heavy.0``); the parameter a node reads (``heavy.0.weight``, also through the
DequantizeLinear / Cast nodes a Q/DQ or FP16 conversion puts in front of it); the TorchScript exporter's scoped
node name (``/encoder/layer.0/attention/MatMul`` -> ``encoder.layer.0.attention``); else the node's own name.
Engines rename and fuse nodes (``node_conv2d_1_token_17``, ``relu_nchwc``, ``node_conv2d/WithoutBiases``):
:meth:`ModuleIndex.resolve` maps such a layer name back to the ONNX node it ran.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import onnx

SCOPE_KEYS = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy")
"""Node metadata the dynamo exporter writes that the module mapping reads (kept through rewrites by
:func:`keep_module_scopes`)."""
ROOT = ""
"""The module path of operations written in the top-level ``forward`` itself."""
COMPUTE_WORDS = ("conv", "matmul", "gemm", "fullyconnected", "attention", "inner_product", "innerproduct")
_THROUGH = {"DequantizeLinear", "QuantizeLinear", "Cast", "Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze",
            "DynamicQuantizeLinear"}
_TENSOR_SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Output", "_quantized", "_float", "_fp16")
_ENGINE_PREFIXES = ("InsertedPrecisionFreeCast_",)
_ENGINE_SUFFIXES = (re.compile(r"_token_\d+$"), re.compile(r"_nchwc$"), re.compile(r"_(De)?[Qq]uantizeLinear$"),
                    re.compile(r"_quant$"), re.compile(r"_part\d+$"), re.compile(r"_Output$"),
                    re.compile(r"/fq_(in|out)put_\d+$"), re.compile(r"/sink_port_\d+$"))


def is_compute(op_type: str) -> bool:
    """Whether an op or engine layer type is a convolution, matrix product or attention (the layers precision
    is about; element-wise ops, reorders and quantizers are not)."""
    lowered = op_type.lower()
    return any(word in lowered for word in COMPUTE_WORDS)


def module_from_scopes(scopes: str) -> str | None:
    """The module path in a dynamo ``name_scopes`` value (``"['', 'heavy', 'heavy.0', 'conv2d_1']"``: the last
    entry is the op itself, the one before it the module's full path); None when it does not parse."""
    try:
        parts = ast.literal_eval(scopes)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
        return None
    return parts[-2]


def module_from_scoped_name(name: str) -> str | None:
    """The module path in a TorchScript-exporter node name (``/head/conv/Conv`` -> ``head.conv``;
    ``/heavy/heavy.0/Conv`` -> ``heavy.0``; ``/Relu`` -> the root); None for other names."""
    if not name.startswith("/"):
        return None
    path = ""
    for part in name.split("/")[1:-1]:
        if not part:
            continue
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


def module_from_parameter(tensor: str) -> str | None:
    """The module owning a parameter tensor (``heavy.0.weight_quantized`` -> ``heavy.0``); None without a dot."""
    for suffix in _TENSOR_SUFFIXES:
        tensor = tensor.removesuffix(suffix)
    tensor = re.sub(r"_part\d+$", "", tensor)
    if "." not in tensor or "::" in tensor or tensor.startswith("/"):
        return None
    module, _, attribute = tensor.rpartition(".")
    return module if module and attribute and not attribute.isdigit() else None


@dataclass(frozen=True)
class ModuleIndex:
    """Node names, their op types and producers, and the module path of each node of one ONNX graph."""

    modules: Mapping[str, str]
    op_types: Mapping[str, str]
    producers: Mapping[str, str]
    first_inputs: Mapping[str, str]
    sources: Mapping[str, str]

    @classmethod
    def from_models(cls, models: Iterable[onnx.ModelProto]) -> ModuleIndex:
        """One index over ``models`` (the exported ONNX first: what it knows wins over a rewritten copy's)."""
        modules: dict[str, str] = {}
        op_types: dict[str, str] = {}
        producers: dict[str, str] = {}
        first_inputs: dict[str, str] = {}
        sources: dict[str, str] = {}
        for model in models:
            graph = model.graph
            initializers = {t.name for t in graph.initializer}
            producer = {out: node for node in graph.node for out in node.output}
            for node in graph.node:
                if not node.name:
                    continue
                op_types.setdefault(node.name, node.op_type)
                for out in node.output:
                    producers.setdefault(out, node.name)
                if node.input:
                    first_inputs.setdefault(node.name, node.input[0])
                module, source = _module_of(node, producer, initializers)
                if module is not None and (node.name not in modules or sources[node.name] == "name"):
                    modules[node.name], sources[node.name] = module, source
        return cls(modules, op_types, producers, first_inputs, sources)

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path | None]) -> ModuleIndex:
        """An index over the ONNX files among ``paths`` that exist (weights not loaded)."""
        models = [onnx.load(str(p), load_external_data=False) for p in paths
                  if p and Path(p).suffix == ".onnx" and Path(p).is_file()]
        return cls.from_models(models)

    def module_of(self, node: str) -> str:
        """The module path of ONNX node ``node``; a node the graph records none for (a parameterless op of a
        graph without scopes, a quantizer) counts with the nearest layer feeding it, else its own name."""
        current = node
        for _ in range(6):
            if current in self.modules:
                return self.modules[current]
            parent = self.producers.get(self.first_inputs.get(current, ""))
            if parent is None:
                break
            current = parent
        return node

    def resolve(self, layer: str, op_type: str = "") -> str | None:
        """The ONNX node an engine layer named ``layer`` (of type ``op_type``) ran, or None.

        Tries the name and the names it is made from (engine suffixes and prefixes removed, trailing
        ``/segments`` dropped) as node names, then as tensor names (their producer). A compute layer that
        lands on an activation fused into it (``relu_nchwc`` is the Conv that writes ``relu``) walks up to
        the convolution or product that feeds it.
        """
        for candidate in _candidates(layer):
            node = candidate if candidate in self.op_types else self.producers.get(candidate)
            if node is not None:
                return self._compute_ancestor(node) if is_compute(op_type) else node
        return None

    def _compute_ancestor(self, node: str, steps: int = 4) -> str:
        current = node
        for _ in range(steps):
            if is_compute(self.op_types.get(current, "")):
                return current
            parent = self.producers.get(self.first_inputs.get(current, ""))
            if parent is None:
                break
            current = parent
        return node


def _module_of(node: onnx.NodeProto, producer: Mapping[str, onnx.NodeProto],
               initializers: set[str]) -> tuple[str | None, str]:
    props = {p.key: p.value for p in node.metadata_props}
    if SCOPE_KEYS[0] in props:
        module = module_from_scopes(props[SCOPE_KEYS[0]])
        if module is not None:
            return module, "metadata"
    for tensor in node.input[1:]:
        source = _parameter_source(tensor, producer, initializers)
        module = module_from_parameter(source) if source else None
        if module is not None:
            return module, "parameter"
    scoped = module_from_scoped_name(node.name)
    if scoped is not None:
        return scoped, "scoped name"
    return None, "name"


def _parameter_source(tensor: str, producer: Mapping[str, onnx.NodeProto], initializers: set[str]) -> str | None:
    """The initializer a node input comes from, through Q/DQ, Cast and layout nodes."""
    for _ in range(4):
        if tensor in initializers:
            return tensor
        node = producer.get(tensor)
        if node is None or node.op_type not in _THROUGH or not node.input:
            return None
        tensor = node.input[0]
    return None


def _candidates(layer: str) -> list[str]:
    """``layer`` and the names it may be made from, most specific first."""
    out, pending = [], [layer]
    while pending:
        name = pending.pop(0)
        if not name or name in out:
            continue
        out.append(name)
        for prefix in _ENGINE_PREFIXES:
            if name.startswith(prefix):
                pending.append(name[len(prefix):])
        for pattern in _ENGINE_SUFFIXES:
            stripped = pattern.sub("", name)
            if stripped != name:
                pending.append(stripped)
        if "/" in name.strip("/"):
            pending.append(name.rsplit("/", 1)[0])
    return out


def keep_module_scopes(before: onnx.ModelProto, after: onnx.ModelProto) -> onnx.ModelProto:
    """Copy the exporter's module scopes (:data:`SCOPE_KEYS`) from ``before`` onto the nodes of ``after`` that
    kept their names (onnxslim and other rewrites drop node metadata); returns ``after``."""
    scopes = {node.name: [(p.key, p.value) for p in node.metadata_props if p.key in SCOPE_KEYS]
              for node in before.graph.node if node.name}
    for node in after.graph.node:
        present = {p.key for p in node.metadata_props}
        for key, value in scopes.get(node.name, ()):
            if key not in present:
                entry = node.metadata_props.add()
                entry.key, entry.value = key, value
    return after
