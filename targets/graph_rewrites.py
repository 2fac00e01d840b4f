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


def _concat_convs(model: onnx.ModelProto, keep: Iterable[str] = ()) -> list[tuple[int, int, list[int]]]:
    """(conv index, concat index, part channel counts) for every Conv over a channel Concat that can be split."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = list(graph.node)
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    consumers: dict[str, int] = defaultdict(int)
    for node in nodes:
        for name in node.input:
            consumers[name] += 1
    outputs, channels, keep, found = {o.name for o in graph.output}, _channels(model), set(keep), []
    for index, node in enumerate(nodes):
        source = producer.get(node.input[0]) if node.op_type == "Conv" else None
        concat = None if source is None else nodes[source]
        if (concat is None or concat.op_type != "Concat" or node.name in keep or len(concat.input) < 2
                or _attribute(node, "group", 1) != 1 or node.input[1] not in weights
                or consumers[concat.output[0]] != 1 or concat.output[0] in outputs):
            continue
        shape = weights[node.input[1]].dims
        sizes = [channels.get(part) for part in concat.input]
        if _attribute(concat, "axis", None) in (1, 1 - len(shape)) and None not in sizes and sum(sizes) == shape[1]:
            found.append((index, source, sizes))
    return found


def concat_conv_parts(model: onnx.ModelProto, keep: Iterable[str] = ()) -> dict[str, list[int]]:
    """``{weight initializer name: channels of each concatenated part}`` for the convs
    :func:`split_concat_convs` splits (a PyTorch export names weights after modules: ``conv_cat.weight``)."""
    nodes = list(model.graph.node)
    return {nodes[index].input[1]: sizes for index, _, sizes in _concat_convs(model, keep)}


def split_concat_convs(model: onnx.ModelProto, *, keep: Iterable[str] = ()) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with each Conv over a channel Concat split into one Conv per part plus a Sum; returns the
    new model and the names of the convs split. Convs named in ``keep`` (e.g. kept in float) are left alone."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = list(graph.node)
    replacement, dropped, split = {}, set(), []
    for index, source, sizes in _concat_convs(model, keep):
        node, concat = nodes[index], nodes[source]
        weight = numpy_helper.to_array(weights[node.input[1]])
        parts, offset = [], 0
        for i, (part, size) in enumerate(zip(concat.input, sizes)):
            w_name = f"{node.input[1]}_part{i}"
            graph.initializer.append(numpy_helper.from_array(weight[:, offset:offset + size].copy(), w_name))
            offset += size
            inputs = [part, w_name] + ([node.input[2]] if i == 0 and len(node.input) > 2 and node.input[2] else [])
            conv = helper.make_node("Conv", inputs, [f"{node.output[0]}_part{i}"], name=f"{node.name}_part{i}")
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
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)
    return model, split
