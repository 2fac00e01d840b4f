"""Per-layer profiling on real runtimes: time attributed to the PyTorch module that does the work, the
precision each layer executed, and the audit against what the artifact asked for."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from compressor.core.tensor_spec import TensorSpec
from compressor.targets.layers.profile import (
    LayerOptions,
    LayerProfileError,
    profile_layers,
)
from compressor.targets.layers.records import (
    audit_precision,
    module_times,
    precision_name,
)
from compressor.targets.layers.scopes import (
    ModuleIndex,
    keep_module_scopes,
    module_from_scoped_name,
    module_from_scopes,
)
from compressor.targets.layers.tensorrt import layers_from_inspector
from compressor.targets.onnx import ExportOptions, export_onnx
from compressor.targets.quantize import Int8Options
from compressor.targets.table import load_target

SPEC = TensorSpec.parse("image:Nx3x32x32")
LEAVES = {"stem", "heavy.0", "heavy.2", "head.conv"}


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class HeavyNet(nn.Module):
    """``heavy`` does ~98 % of the multiply-accumulates."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.heavy = nn.Sequential(nn.Conv2d(8, 96, 5, padding=2), nn.ReLU(), nn.Conv2d(96, 8, 5, padding=2))
        self.head = Head()

    def forward(self, x):
        return self.head(self.heavy(torch.relu(self.stem(x))))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("heavy")
    return export_onnx(HeavyNet(), [SPEC], ["out"], folder / "heavy.onnx", ExportOptions(source="heavy"))


@pytest.fixture(scope="module")
def calibration():
    rng = np.random.default_rng(0)
    return [{"image": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(4)]


def _node_of(exported, module: str) -> str:
    index = ModuleIndex.from_paths([exported.path])
    return next(node for node, op in index.op_types.items() if op == "Conv" and index.module_of(node) == module)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_heavy_module_is_the_slowest(exported, tmp_path, target):
    artifact = load_target(target).build(exported.path, precision="fp32", out_dir=tmp_path)
    profile = profile_layers(artifact, LayerOptions(runs=7, warmup_runs=2, statistic="min"))  # a shared CPU
    top = module_times(profile, depth=1)[0]
    assert top.module == "heavy" and top.share > 0.5, module_times(profile, depth=1)
    convs = [layer for layer in profile.layers if "conv" in layer.op_type.lower()]
    assert {layer.module for layer in convs} == LEAVES
    assert {layer.precision for layer in convs} == {"fp32"}
    assert profile.runs == 7 and profile.total_ms > 0 and profile.layers_ms > 0
    assert audit_precision(profile).warnings == ()
    assert json.loads(json.dumps(profile.to_dict()))["layers"][0]["module"] == profile.layers[0].module


@pytest.mark.parametrize("target,quantizer", [("onnxruntime", "qdq"), ("openvino", "qdq"), ("openvino", "nncf")])
def test_audit_names_the_layer_kept_in_float(exported, calibration, tmp_path, target, quantizer):
    head = _node_of(exported, "head.conv")
    options = {"quantizer": quantizer} if target == "openvino" else None
    artifact = load_target(target).build(exported.path, precision="int8", out_dir=tmp_path, calibration=calibration,
                                         int8=Int8Options(exclude=(head,), use_cache=False), options=options)
    profile = profile_layers(artifact, LayerOptions(runs=3, warmup_runs=1))
    audit = audit_precision(profile)
    executed = {layer.module: layer.executed for layer in audit.layers}
    assert executed == {"stem": "int8", "heavy.0": "int8", "heavy.2": "int8", "head.conv": "fp32"}
    assert audit.float_modules == ("head.conv",)
    assert [x.module for x in audit.layers if x.kept_in_float] == ["head.conv"]
    assert audit.warnings == ()  # the gate asked for it
    unasked = audit_precision(dataclasses.replace(profile, kept_in_float=()))  # as if nothing were kept in float
    assert len(unasked.warnings) == 1
    assert "asked for int8 ran fp32: head.conv" in unasked.warnings[0]


def test_onnxruntime_fp16_on_cpu_is_reported_as_the_fp32_it_runs(exported, tmp_path):
    """ONNX Runtime's CPU provider has no fp16 convolution: it casts back to fp32; the audit says so."""
    artifact = load_target("onnxruntime").build(exported.path, precision="fp16", out_dir=tmp_path,
                                                options={"provider": "cpu"})
    profile = profile_layers(artifact, LayerOptions(runs=2, warmup_runs=1))
    audit = audit_precision(profile)
    ran = {layer.executed for layer in audit.layers}
    assert {layer.module for layer in audit.layers} == LEAVES
    assert ran == {"fp32"}, ran
    assert len(audit.warnings) == 1 and "asked for fp16 ran fp32" in audit.warnings[0]
    assert all(module in audit.warnings[0] for module in LEAVES)


def test_dynamo_scopes_survive_onnxslim_with_keep_module_scopes():
    import onnxslim

    program = torch.onnx.export(HeavyNet().eval(), (torch.randn(1, 3, 32, 32),), dynamo=True,
                                input_names=["image"], output_names=["out"], verbose=False)
    raw = program.model_proto
    assert ModuleIndex.from_models([onnxslim.slim(raw)]).sources.get("node_relu_1") != "metadata"  # why it exists
    kept = keep_module_scopes(raw, onnxslim.slim(raw))
    index = ModuleIndex.from_models([kept])
    modules = {index.module_of(n) for n in index.op_types}
    assert {"stem", "heavy.0", "heavy.1", "heavy.2", "head.conv", "head.act"} <= modules
    assert all(source == "metadata" for source in index.sources.values())


def test_torchscript_names_map_to_module_paths(tmp_path):
    artifact = export_onnx(HeavyNet(), [SPEC], ["out"], tmp_path / "ts.onnx", ExportOptions(exporter="torchscript"))
    index = ModuleIndex.from_paths([artifact.path])
    convs = {index.module_of(n) for n, op in index.op_types.items() if op == "Conv"}
    assert convs == LEAVES
    assert module_from_scoped_name("/encoder/layer.0/attention/self/query/MatMul") == \
        "encoder.layer.0.attention.self.query"
    assert module_from_scoped_name("/heavy/heavy.0/Conv") == "heavy.0"
    assert module_from_scoped_name("/Relu") == "" and module_from_scoped_name("node_relu") is None
    assert module_from_scopes("['', 'head', 'head.conv', 'conv2d_3']") == "head.conv"
    assert module_from_scopes("__import__('os')") is None


def test_precision_names():
    assert [precision_name(t) for t in ("float16", "u8", "brgconv_avx512_I8", "jit_avx512_FP32", "bf16",
                                        "Row major linear FP16 format", "Int8 NC/32HW32", "tensor")] == \
        ["fp16", "int8", "int8", "fp32", "bf16", "fp16", "int8", ""]


def test_tensorrt_inspector_json_maps_layers_to_modules(exported, tmp_path):
    """The GPU path's parser on a saved inspector JSON (DETAILED verbosity) and a trtexec per-layer profile."""
    index = ModuleIndex.from_paths([exported.path])
    nodes = {index.module_of(n): n for n, op in index.op_types.items() if op == "Conv"}
    relu = next(n for n, op in index.op_types.items()
                if op == "Relu" and index.module_of(n) in ("heavy.0", "heavy.1"))
    info = {"Layers": [
        {"Name": f"{nodes['heavy.0']} + {relu}", "LayerType": "CaskConvolution",
         "Metadata": f"[ONNX Layer: {nodes['heavy.0']}]\x1e[ONNX Layer: {relu}]",
         "Inputs": [{"Name": "x", "Format/Datatype": "Int8 NC/32HW32"}], "TacticName": "sm90_xmma_int8"},
        {"Name": nodes["head.conv"], "LayerType": "CaskConvolution", "Metadata": f"[ONNX Layer: {nodes['head.conv']}]",
         "Inputs": [{"Name": "y", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
        {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
         "Inputs": [{"Name": "image", "Format/Datatype": "Row major linear FP32"}]}]}
    profile = [{"count": 10}, {"name": info["Layers"][0]["Name"], "timeMs": 5.0, "averageMs": 0.5, "medianMs": 0.4},
               {"name": nodes["head.conv"], "timeMs": 1.0, "averageMs": 0.1}]
    saved = tmp_path / "engine.json"
    saved.write_text(json.dumps(info))
    layers = layers_from_inspector(saved.read_text(), index, profile)
    got = [(x.module, x.precision, x.time_ms, x.onnx_node) for x in layers]
    assert got == [("heavy.0", "int8", 0.4, nodes["heavy.0"]), ("head.conv", "fp16", 0.1, nodes["head.conv"]),
                   ("(Reformat)", "fp32", 0.0, "")]


def test_unprofilable_target_is_one_line(exported):
    with pytest.raises(LayerProfileError, match="runs where the engine runs"):
        profile_layers(dataclasses.replace(exported, target="tensorrt"))
    assert onnx.load(str(exported.path)).graph.node  # the export itself is untouched
