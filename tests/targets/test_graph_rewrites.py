"""The Concat -> Conv split: exact in float, and it rescues INT8 when the concatenated ranges differ."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from compressor.core.tensor_spec import TensorSpec
from compressor.targets.graph_rewrites import split_concat_convs
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.quantize import Int8Options, quantize_qdq


class ConcatNet(nn.Module):
    """Like SPAN's ``conv_cat``: a 1x1 conv over features of range ~40 joined with features of range ~0.1."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.wide = nn.Conv2d(3, 6, 3, padding=1)
        self.narrow = nn.Conv2d(3, 6, 3, padding=1)
        self.cat_conv = nn.Conv2d(12, 3, 1)
        with torch.no_grad():
            self.wide.weight *= 100.0
            self.narrow.weight *= 0.25
            self.cat_conv.weight[:, :6] *= 0.002

    def forward(self, x):
        return self.cat_conv(torch.cat([self.wide(x), self.narrow(x)], dim=1))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def concat_onnx(tmp_path_factory):
    spec = TensorSpec.parse("x:Nx3x16x16:float32:0..1")
    return export_onnx(ConcatNet().eval(), [spec], ["y"], tmp_path_factory.mktemp("split") / "concat.onnx",
                       ExportOptions()).path


def test_split_is_exact_in_float_and_leaves_kept_convs_alone(concat_onnx):
    model = onnx.load(str(concat_onnx))
    (conv,) = [n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) and "cat" in n.input[1]]
    split, names = split_concat_convs(model)
    assert names == [conv]
    onnx.checker.check_model(split, full_check=True)
    ops = [n.op_type for n in split.graph.node]
    assert "Concat" not in ops and ops.count("Conv") == 4 and ops.count("Sum") == 1
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(_run(split, x), _run(model, x), rtol=1e-5, atol=1e-5)
    unchanged, none = split_concat_convs(model, keep=[conv])
    assert none == [] and [n.op_type for n in unchanged.graph.node] == [n.op_type for n in model.graph.node]


def test_split_gives_each_part_its_own_int8_scale(concat_onnx, tmp_path):
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(8)]
    x = rng.random((4, 3, 16, 16), dtype=np.float32)
    reference = _run(onnx.load(str(concat_onnx)), x)
    errors = {}
    for split in (False, True):
        path = quantize_qdq(concat_onnx, tmp_path / f"q{split}.onnx", feeds,
                            Int8Options(split_concat=split, use_cache=False))
        errors[split] = float(np.abs(_run(onnx.load(str(path)), x) - reference).mean() / np.abs(reference).mean())
    assert errors[True] < 0.02 < errors[False] and errors[True] * 5 < errors[False]


def test_layer_ranking_works_on_a_split_model(concat_onnx, tmp_path):
    from compressor.targets.accuracy_gate import rank_sensitive_nodes

    rng = np.random.default_rng(2)
    feeds = [{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)]
    qdq = quantize_qdq(concat_onnx, tmp_path / "q.onnx", feeds, Int8Options(use_cache=False))
    ranking = rank_sensitive_nodes(concat_onnx, qdq, feeds)
    convs = [n.name for n in onnx.load(str(concat_onnx)).graph.node if n.op_type == "Conv"]
    assert sorted(name for name, _ in ranking) == sorted(convs)
