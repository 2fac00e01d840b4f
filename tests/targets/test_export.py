import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from compressor.core.errors import ExportError, ModelSpecError
from compressor.core.tensor_spec import TensorSpec
from compressor.models.spec import load_model_spec, resolve_input_specs
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.onnx_io import read_metadata
from tests.support import MODEL_KINDS


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_export_is_single_checked_file_with_metadata(exported, name):
    artifact = exported[name]
    assert artifact.files == (artifact.path.name,)
    assert not list(artifact.folder.glob("*.data"))
    model = onnx.load(str(artifact.path))
    onnx.checker.check_model(model, full_check=True)
    meta = read_metadata(model)
    assert model.producer_name == "edge-compress"
    assert [TensorSpec.from_dict(s) for s in json.loads(meta["inputs"])] == list(artifact.inputs)
    assert {"torch", "onnx", "onnxslim", "edge_compress"} <= set(json.loads(meta["versions"]))
    assert meta["preprocessing"]


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_batch_axis_stays_dynamic(exported, name):
    session = ort.InferenceSession(str(exported[name].path), providers=["CPUExecutionProvider"])
    for graph_input in session.get_inputs():
        assert isinstance(graph_input.shape[0], str), graph_input.shape


def test_spatial_symbols_export_dynamic(exported):
    session = ort.InferenceSession(str(exported["tiny_convnet"].path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": np.random.rand(3, 3, 20, 28).astype(np.float32)})[0]
    assert out.shape == (3, 3, 40, 56)


class BatchBakingNet(torch.nn.Module):
    """A model whose reshape bakes the example's batch into the graph under tracing."""

    def forward(self, x):
        return x.reshape(int(x.shape[0]), -1).sum(1, keepdim=True)


def test_batch_baked_into_graph_is_caught():
    with pytest.raises(ExportError, match="batch"):
        export_onnx(BatchBakingNet(), [TensorSpec.parse("x:Nx4")], ["y"], "unused.onnx",
                    ExportOptions(exporter="torchscript"))


def test_user_file_factory_with_example_inputs(tmp_path):
    source = tmp_path / "my_model.py"
    source.write_text(textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def forward(self, a, b):
                return a * 2 + b.float().sum(-1, keepdim=True)
        def build(scale=1):
            return Net(), (torch.rand(2, 5), torch.zeros(2, 7, dtype=torch.int64))
    """))
    loaded = load_model_spec(f"{source}:build")
    specs = resolve_input_specs(loaded, [])
    # an integer input takes its value range from the example values (zeros: 0..1), and says so
    assert [s.format() for s in specs] == ["a:N=2x5:float32", "b:N=2x7:int64:0..1"]
    artifact = export_onnx(loaded.model, specs, ["y"], tmp_path / "m.onnx")
    assert [i.name for i in artifact.inputs] == ["a", "b"]


def test_package_module_factory_and_bad_specs():
    assert isinstance(load_model_spec("compressor.models.tiny:tiny_convnet").model, torch.nn.Module)
    with pytest.raises(ModelSpecError, match="cannot import"):
        load_model_spec("no_such_package.mod:build")
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model_spec("missing/file.py:build")
    with pytest.raises(Exception, match="did you mean 'tiny_convnet'"):
        load_model_spec("tiny_convnett")


def test_no_simplify_keeps_more_nodes(tmp_path):
    loaded = load_model_spec("tiny_pair_transformer")
    specs = resolve_input_specs(loaded, [])
    raw = export_onnx(loaded.model, specs, loaded.output_names, tmp_path / "raw.onnx",
                      ExportOptions(simplify=False, verify_batches=(2,)))
    slim = export_onnx(loaded.model, specs, loaded.output_names, tmp_path / "slim.onnx",
                       ExportOptions(verify_batches=(2,)))
    assert slim.metadata["nodes"] <= raw.metadata["nodes"]
