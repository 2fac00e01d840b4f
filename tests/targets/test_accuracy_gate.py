"""The INT8 accuracy gate on a model built to break per-tensor INT8: an outlier channel."""
import numpy as np
import pytest
import torch
from torch import nn

from compressor.core.tensor_spec import TensorSpec
from compressor.targets.accuracy_gate import _growing, gate_int8, rank_sensitive_nodes
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.quantize import Int8Options, quantize_qdq


class OutlierNet(nn.Module):
    """conv1 produces one channel ~1000x larger than the rest; conv2 reads all of them. Quantizing
    conv2's input per tensor leaves the small channels a handful of int8 steps: the output breaks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 3, 3, padding=1)
        with torch.no_grad():
            self.conv1.weight[0] *= 2000.0
            self.conv2.weight[:, 0] /= 2000.0

    def forward(self, x):
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


def psnr(ref, got):
    mse = float(np.mean((ref - got) ** 2))
    return 10 * np.log10(float(np.max(ref ** 2)) / max(mse, 1e-20))


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    spec = TensorSpec.parse("x:Nx3x16x16:float32:0..1")
    artifact = export_onnx(OutlierNet().eval(), [spec], ["y"], folder / "outlier.onnx",
                           ExportOptions(verify_batches=(1, 2)))
    rng = np.random.default_rng(0)
    calib = [{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(8)]
    evalset = [{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)]
    return folder, artifact.path, calib, evalset


def test_gate_keeps_the_outlier_layer_in_float_and_restores_the_budget(outlier_model, tmp_path):
    import onnxruntime as ort

    folder, fp32, calib, evalset = outlier_model
    ref_session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    references = [ref_session.run(None, f)[0] for f in evalset]

    def build(exclude):
        path = tmp_path / f"int8_{len(exclude)}.onnx"
        return quantize_qdq(fp32, path, calib, Int8Options(exclude=exclude))

    def evaluate(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return float(np.mean([psnr(r, session.run(None, f)[0]) for r, f in zip(references, evalset)]))

    reference_metric = 60.0  # fp32 vs itself is infinite; ask for INT8 within 20 dB of 60 dB
    plain = evaluate(build(()))
    assert plain < reference_metric - 20.0, "the outlier must break plain INT8 for this test to mean anything"
    artifact, result = gate_int8(build, evaluate, reference=reference_metric, budget=20.0,
                                 rank=lambda qdq: rank_sensitive_nodes(fp32, qdq, calib))
    assert result.passed and 0 < len(result.kept_in_float) < 3
    assert result.tries[-1]["metric"] >= reference_metric - 20.0 > result.tries[0]["metric"]
    ranking = rank_sensitive_nodes(fp32, build(()), calib)
    assert ranking[0][0] == result.kept_in_float[0]


def test_growing_sizes():
    assert _growing(5) == [1, 2, 4, 5] and _growing(4) == [1, 2, 4] and _growing(1) == [1] and _growing(0) == []


def test_gate_bisects_to_the_fewest_float_nodes_and_returns_their_artifact():
    nodes = [f"n{i}" for i in range(16)]
    built = []

    def build(keep):
        built.append(keep)
        return keep

    def evaluate(keep):  # each node in float recovers 1 point of a 10-point INT8 loss
        return 100.0 - max(0, 10 - len(keep))

    artifact, result = gate_int8(build, evaluate, reference=100.0, budget=5.0,
                                 rank=lambda _a: [(n, 1.0) for n in nodes])
    assert result.passed and result.kept_in_float == tuple(nodes[:5]) and artifact == tuple(nodes[:5])
    counts = [len(t["kept_in_float"]) for t in result.tries]
    assert counts[:5] == [0, 1, 2, 4, 8] and 5 in counts and len(built) == len(counts) + (counts[-1] != 5)


def test_node_macs_counts_output_elements_times_the_reduction():
    from onnx import helper, numpy_helper

    from compressor.targets.accuracy_gate import node_macs

    weight = numpy_helper.from_array(np.zeros((8, 4, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    assert node_macs(conv, {"w": weight}, np.zeros((1, 8, 5, 5)), np.zeros((1, 4, 5, 5))) == 8 * 25 * 4 * 9
    matrix = numpy_helper.from_array(np.zeros((6, 10), np.float32), "m")
    matmul = helper.make_node("MatMul", ["a", "m"], ["b"], name="mm")
    assert node_macs(matmul, {"m": matrix}, np.zeros((2, 3, 10)), np.zeros((2, 3, 6))) == 60 * 6
    attention = helper.make_node("MatMul", ["q", "k"], ["s"], name="qk")  # two activations: inner dim of q
    assert node_macs(attention, {}, np.zeros((1, 4, 4)), np.zeros((1, 4, 16))) == 16 * 16


def test_float_gain_ranking_finds_the_outlier_reader_and_one_node_restores_the_budget(outlier_model, tmp_path):
    """NNCF-placed quantizers (layer inputs only): keeping the outlier's reader in float gives the error
    back, the leave-one-out ranking puts it first, and the gate needs that node alone."""
    import onnx
    import onnxruntime as ort

    from compressor.targets.accuracy_gate import (
        _output_error,
        _with_float_node,
        rank_by_float_gain,
    )
    from compressor.targets.openvino.nncf import nncf_like_qdq_options

    _, fp32, calib, evalset = outlier_model
    build = lambda exclude: quantize_qdq(fp32, tmp_path / f"q{len(exclude)}.onnx", calib,  # noqa: E731
                                         nncf_like_qdq_options(exclude=exclude, use_cache=False))
    qdq = onnx.load(str(build(())))
    conv2 = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"][1]
    floated = _with_float_node(qdq, {t.name: t for t in onnx.load(str(fp32)).graph.initializer}, conv2)
    node = next(n for n in onnx.ModelProto.FromString(floated).graph.node if n.name == conv2)
    assert not any("quantized" in name or "DequantizeLinear" in name for name in node.input)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    reference = [[np.asarray(v, np.float64) for v in session.run(None, f)] for f in evalset]
    full = _output_error(qdq.SerializeToString(), evalset, reference)
    assert _output_error(floated, evalset, reference) < 0.1 * full
    ranking = rank_by_float_gain(fp32, build(()), calib)
    assert ranking[0][0] == conv2 and ranking[0][1] > 0 and all(score < ranking[0][1] for _, score in ranking[1:])
    # the floated variant is what excluding the node builds (its only quantizer is its own input's)
    excluded = _output_error(onnx.load(str(build((conv2,)))).SerializeToString(), evalset, reference)
    assert excluded == pytest.approx(_output_error(floated, evalset, reference), rel=1e-3)


def test_nncf_like_qdq_quantizes_layer_inputs_only_with_zero_points(outlier_model, tmp_path):
    import onnx
    from onnx import numpy_helper

    from compressor.targets.openvino.nncf import nncf_like_qdq_options

    _, fp32, calib, _ = outlier_model
    graph = onnx.load(str(quantize_qdq(fp32, tmp_path / "q.onnx", calib, nncf_like_qdq_options(use_cache=False)))).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) == 3 and all(values[q.input[2]].dtype == np.uint8 for q in quantizers)
    assert all(producer.get(q.input[0]) is None or producer[q.input[0]].op_type != "Conv" for q in quantizers)
