"""The report's per-layer sections from layer profiles, the CLI command, and gate layers named by module."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from torch import nn

from compressor.core.tensor_spec import TensorSpec
from compressor.distill.report.layers import (
    float_layer_modules,
    layer_section,
    render_layer_section,
)
from compressor.targets.layers.records import LayerProfile, LayerTime
from compressor.targets.onnx import ExportOptions, export_onnx


def _profile(target, precision, times, *, executed=None, kept=()):
    layers = tuple(LayerTime(layer=f"{m}/Conv", op_type="Conv", onnx_node=f"n_{m}", module=m, time_ms=t,
                             precision=(executed or {}).get(m, precision)) for m, t in times.items())
    return LayerProfile(target=target, precision=precision, artifact="a", layers=layers, runs=3,
                        total_ms=sum(times.values()), kept_in_float=tuple(kept),
                        quantizer="nncf" if precision == "int8" else "")


def test_sections_rank_modules_compare_engines_and_audit():
    fp32 = _profile("openvino", "fp32", {"heavy.0": 6.0, "heavy.2": 2.0, "stem": 1.0, "": 1.0})
    int8 = _profile("openvino", "int8", {"heavy.0": 1.0, "heavy.2": 0.5, "stem": 0.5},
                    executed={"stem": "fp32", "heavy.2": "fp32"}, kept=("n_stem",))
    report = layer_section([fp32, int8], top=2, depth=1)
    assert [(m.module, round(m.share, 2)) for m in report.slowest[0].modules] == [("heavy", 0.8), ("", 0.1)]
    assert report.engines == ("openvino fp32", "openvino int8 (nncf)")
    assert report.comparison[0].module == "heavy" and report.comparison[0].times_ms == (8.0, 1.5)
    assert report.audits[1].float_modules == ("heavy.2", "stem")
    assert report.warnings == ("openvino int8 (nncf): 1 layer(s) asked for int8 ran fp32: heavy.2",)
    lines = render_layer_section(report)
    text = "\n".join(lines)
    assert lines[0] == "## Where the time goes" and "## Precision audit" in lines
    assert "| heavy | 8.000 | 80% | 2 | fp32 |" in lines and "| (model) | 1.000 | 10% | 1 | fp32 |" in lines
    assert "| heavy | 8.000 (80%) | 1.500 (75%) |" in lines
    assert "| openvino int8 (nncf) | int8 | 2 fp32, 1 int8 | stem |" in lines
    assert "- warning: openvino int8 (nncf): 1 layer(s) asked for int8 ran fp32: heavy.2" in text
    assert json.loads(json.dumps(report.to_dict()))["precision_audit"][1]["float_modules"] == ["heavy.2", "stem"]
    assert render_layer_section(layer_section([])) == []


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body = nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x):
        return self.body(self.stem(x))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("net")
    return export_onnx(Net(), [TensorSpec.parse("image:Nx3x16x16")], ["out"], folder / "net.onnx", ExportOptions())


def test_gate_layers_are_named_by_module(exported):
    import onnx

    nodes = [n.name for n in onnx.load(str(exported.path)).graph.node if n.op_type == "Conv"]
    named = float_layer_modules([nodes[1], f"{nodes[0]}", "gone"], [exported.path, None])
    assert named == (f"body.0 ({nodes[1]})", f"stem ({nodes[0]})", "gone")


def test_the_precision_matrix_names_the_gates_float_layers_by_module(exported, tmp_path):
    import dataclasses

    import numpy as np
    import onnx

    from compressor.distill.report.build import precision_matrix
    from compressor.distill.report.model import EngineReport, Latency, Parity
    from compressor.distill.report.render import precision_matrix_table
    from compressor.targets.quantize import Int8Options
    from compressor.targets.table import load_target
    from tests.distill.test_report import GATE_PASSED

    first = next(n.name for n in onnx.load(str(exported.path)).graph.node if n.op_type == "Conv")
    engine = load_target("onnxruntime").build(exported.path, precision="int8", out_dir=tmp_path, name="q",
                                              calibration=[{"image": np.random.default_rng(i).random(
                                                  (1, 3, 16, 16), dtype="float32")} for i in range(4)],
                                              int8=Int8Options(exclude=(first,)))
    record = dataclasses.replace(GATE_PASSED, kept_in_float=(first,))
    latency = Latency(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    report = EngineReport(role="student", target="onnxruntime", precision="int8", path=str(engine.path),
                          size_bytes=1, parity=Parity(True, 0.0, "task data"), metric={"top1": 0.9},
                          latency=latency, throughput_fps=1.0, cov=0.0, profile={}, profile_input=(), int8=record)
    (row,) = precision_matrix([report], 0.9, "top1")
    assert row.kept_in_float == (first,) and row.kept_in_float_modules == (f"stem ({first})",)
    assert f"stem ({first})" in "\n".join(precision_matrix_table((row,), "top1"))


def test_layers_command_prints_modules_and_json(exported, tmp_path):
    from compressor.cli.layers_cmd import layers
    from compressor.targets.table import load_target

    artifact = load_target("openvino").build(exported.path, precision="fp32", out_dir=tmp_path)
    runner = CliRunner()
    result = runner.invoke(layers, [str(artifact.path), "--runs", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {m["module"] for m in data["slowest"][0]["modules"]} >= {"stem", "body.0"}
    assert data["precision_audit"][0]["executed"] == {"fp32": 2}
    text = runner.invoke(layers, [str(artifact.path), "--runs", "2", "--depth", "1"])
    assert text.exit_code == 0 and "| body |" in text.stdout and "## Precision audit" in text.stdout
