"""The INT8 accuracy gate on a model built to break per-tensor INT8: an outlier channel."""
import numpy as np
import pytest
import torch
from torch import nn

from targets.accuracy_gate import _growing, gate_int8, rank_sensitive_nodes
from targets.onnx import ExportOptions, export_onnx
from targets.quantize import Int8Options, quantize_qdq
from targets.tensor_spec import TensorSpec


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
