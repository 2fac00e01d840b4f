"""Small ONNX graphs in the style of the ONNX Model Zoo (as older converters wrote them): IR version 3, opset 9,
every initializer also listed as a graph input, tensor names with ``/``, a Reshape whose target shape is an
initializer (``..._SHAPE``), and opset-9 forms of Unsqueeze, Squeeze, Dropout and Softmax that later opsets
changed. Written with ``onnx.helper`` so the tests need no downloads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _old_style_model(nodes, inputs, outputs, initializers: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    """A graph with every initializer also declared as an input, at opset 9 and IR version 3."""
    listed = [helper.make_tensor_value_info(key, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
              for key, value in initializers.items()]
    graph = helper.make_graph(nodes, name, [*inputs, *listed], outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="zoo-style")
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def zoo_convnet(path: Path) -> Path:
    """Conv - BatchNorm - Relu - MaxPool - Conv - Relu - GlobalAveragePool - Reshape (shape initializer) - Gemm:
    an image classifier of input ``data/0`` (1x3x32x32 in [0, 1]) with output ``prob/out`` (1x10)."""
    rng = np.random.default_rng(0)
    weights = {
        "conv1/W": rng.normal(0, 0.3, (8, 3, 3, 3)), "conv1/b": rng.normal(0, 0.1, 8),
        "bn1/scale": rng.uniform(0.5, 1.5, 8), "bn1/B": rng.normal(0, 0.1, 8),
        "bn1/mean": rng.normal(0, 0.1, 8), "bn1/var": rng.uniform(0.5, 1.5, 8),
        "conv2/W": rng.normal(0, 0.2, (16, 8, 3, 3)), "conv2/b": rng.normal(0, 0.1, 16),
        "fc/W": rng.normal(0, 0.3, (10, 16)), "fc/b": rng.normal(0, 0.1, 10),
    }
    initializers = {k: v.astype(np.float32) for k, v in weights.items()} | {
        "OC2_DUMMY_1/reshape_SHAPE": np.array([1, 16], np.int64)}
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["data/0", "conv1/W", "conv1/b"], ["conv1/out"], name="conv1", **conv),
        helper.make_node("BatchNormalization", ["conv1/out", "bn1/scale", "bn1/B", "bn1/mean", "bn1/var"],
                         ["bn1/out"], name="bn1"),
        helper.make_node("Relu", ["bn1/out"], ["relu1/out"], name="relu1"),
        helper.make_node("MaxPool", ["relu1/out"], ["pool1/out"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1/out", "conv2/W", "conv2/b"], ["conv2/out"], name="conv2", **conv),
        helper.make_node("Relu", ["conv2/out"], ["relu2/out"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2/out"], ["gap/out"], name="gap"),
        helper.make_node("Reshape", ["gap/out", "OC2_DUMMY_1/reshape_SHAPE"], ["flatten/out"], name="flatten"),
        helper.make_node("Gemm", ["flatten/out", "fc/W", "fc/b"], ["prob/out"], name="fc", transB=1),
    ]
    model = _old_style_model(nodes, [helper.make_tensor_value_info("data/0", TensorProto.FLOAT, [1, 3, 32, 32])],
                             [helper.make_tensor_value_info("prob/out", TensorProto.FLOAT, [1, 10])],
                             initializers, "zoo_convnet")
    onnx.save(model, str(path))
    return path


def zoo_reshape_mlp(path: Path) -> Path:
    """MatMul - Add - Relu - Reshape (shape initializer) - Transpose - Reshape - Unsqueeze/Squeeze (axes as
    attributes) - Dropout (ratio attribute) - Gemm - Softmax: input ``input/features`` (1x64 in [0, 1]),
    output ``output/probs`` (1x10)."""
    rng = np.random.default_rng(1)
    initializers = {
        "dense1/W": rng.normal(0, 0.25, (64, 64)).astype(np.float32),
        "dense1/b": rng.normal(0, 0.1, 64).astype(np.float32),
        "split_heads/reshape_SHAPE": np.array([1, 4, 16], np.int64),
        "merge_heads/reshape_SHAPE": np.array([1, 64], np.int64),
        "dense2/W": rng.normal(0, 0.1, (10, 64)).astype(np.float32),
        "dense2/b": rng.normal(0, 0.1, 10).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["input/features", "dense1/W"], ["dense1/mm"], name="dense1/MatMul"),
        helper.make_node("Add", ["dense1/mm", "dense1/b"], ["dense1/out"], name="dense1/Add"),
        helper.make_node("Relu", ["dense1/out"], ["relu/out"], name="relu"),
        helper.make_node("Reshape", ["relu/out", "split_heads/reshape_SHAPE"], ["split/out"], name="split_heads"),
        helper.make_node("Transpose", ["split/out"], ["swap/out"], name="swap", perm=[0, 2, 1]),
        helper.make_node("Reshape", ["swap/out", "merge_heads/reshape_SHAPE"], ["merge/out"], name="merge_heads"),
        helper.make_node("Unsqueeze", ["merge/out"], ["expand/out"], name="expand", axes=[2]),
        helper.make_node("Squeeze", ["expand/out"], ["squeeze/out"], name="squeeze", axes=[2]),
        helper.make_node("Dropout", ["squeeze/out"], ["dropout/out"], name="dropout", ratio=0.1),
        helper.make_node("Gemm", ["dropout/out", "dense2/W", "dense2/b"], ["logits/out"], name="dense2", transB=1),
        helper.make_node("Softmax", ["logits/out"], ["output/probs"], name="softmax", axis=1),
    ]
    model = _old_style_model(nodes, [helper.make_tensor_value_info("input/features", TensorProto.FLOAT, [1, 64])],
                             [helper.make_tensor_value_info("output/probs", TensorProto.FLOAT, [1, 10])],
                             initializers, "zoo_reshape_mlp")
    onnx.save(model, str(path))
    return path


ZOO_MODELS = {"zoo_convnet": zoo_convnet, "zoo_reshape_mlp": zoo_reshape_mlp}


def task_like_samples(name: str, count: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs the graph was made for (one sample each, batch axis included): smooth images in [0, 1] for the
    conv net (neighbouring pixels correlate, as in photographs), features in [0, 1] for the MLP."""
    rng = np.random.default_rng(seed)
    if name == "zoo_convnet":
        coarse = rng.random((count, 3, 8, 8), dtype=np.float32)
        return [np.kron(c, np.ones((4, 4), np.float32))[None] for c in coarse]
    return [rng.random((1, 64), dtype=np.float32) for _ in range(count)]
