"""Exact ONNX graph rewrites that make a float model quantize better.

``split_concat_convs``: a convolution over a channel-wise ``Concat`` sees one activation scale for all the
concatenated tensors, so when their ranges differ (SPAN's ``conv_cat`` joins the first conv's features,
range ~42, with block outputs of range ~2-8) the small ones are crushed to a few INT8 levels. Since a
convolution is linear in its input channels, ``Conv(Concat(a, b, ...), W) == Sum(Conv(a, W_a), Conv(b, W_b), ...)``
with ``W`` sliced along its input channels; each part then gets its own scale. Float results are unchanged
up to summation order.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import onnx
from onnx import helper, numpy_helper


def _attribute(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _channels(model: onnx.ModelProto) -> dict[str, int]:
    """Dimension 1 of every tensor whose shape inference knows it."""
    inferred = onnx.shape_inference.infer_shapes(model)
    channels = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value"):
            channels[info.name] = dims[1].dim_value
    return channels


def split_concat_convs(model: onnx.ModelProto, *, keep: Iterable[str] = ()) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with each Conv over a channel Concat split into one Conv per part plus a Sum; returns the
    new model and the names of the convs split. Convs named in ``keep`` (e.g. kept in float) are left alone."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = list(graph.node)
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    consumers: dict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            consumers[name] += 1
    outputs = {o.name for o in graph.output}
    channels = _channels(model)
    keep, split, replacement, dropped = set(keep), [], {}, set()
    for index, node in enumerate(nodes):
        source = producer.get(node.input[0]) if node.op_type == "Conv" else None
        concat = None if source is None else nodes[source]
        if (concat is None or concat.op_type != "Concat" or node.name in keep or len(concat.input) < 2
                or _attribute(node, "group", 1) != 1 or node.input[1] not in weights
                or consumers[concat.output[0]] != 1 or concat.output[0] in outputs):
            continue
        rank = len(numpy_helper.to_array(weights[node.input[1]]).shape)
        if _attribute(concat, "axis", None) not in (1, 1 - rank):
            continue
        sizes = [channels.get(part) for part in concat.input]
        weight = numpy_helper.to_array(weights[node.input[1]])
        if None in sizes or sum(sizes) != weight.shape[1]:
            continue
        parts, offset = [], 0
        for i, (part, size) in enumerate(zip(concat.input, sizes)):
            w_name = f"{node.input[1]}_part{i}"
            graph.initializer.append(numpy_helper.from_array(weight[:, offset:offset + size].copy(), w_name))
            offset += size
            inputs = [part, w_name] + ([node.input[2]] if i == 0 and len(node.input) > 2 and node.input[2] else [])
            out = f"{node.output[0]}_part{i}"
            conv = helper.make_node("Conv", inputs, [out], name=f"{node.name}_part{i}")
            conv.attribute.extend(node.attribute)
            parts.append(conv)
        replacement[index] = parts + [helper.make_node("Sum", [p.output[0] for p in parts], list(node.output),
                                                       name=f"{node.name}_sum")]
        dropped.add(source)
        split.append(node.name)
    if not split:
        return model, []
    rebuilt = []
    for index, node in enumerate(nodes):
        if index in replacement:
            rebuilt.extend(replacement[index])
        elif index not in dropped:
            rebuilt.append(node)
    del graph.node[:]
    graph.node.extend(rebuilt)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return model, split
