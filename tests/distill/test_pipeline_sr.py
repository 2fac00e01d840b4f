"""`compress run` end to end on a tiny recipe and a DIV2K-style folder the test writes."""
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY = """
name: tiny-sr
task: super-resolution
seed: 3
data: {scale: 4, repeat: 2, val_max_size: 64}
teacher: {model: span_28, train: {iterations: 4, batch: 2, patch: 32}}
student: {model: span_tiny, train: {iterations: 4, batch: 2, patch: 32}}
distill:
  train: {iterations: 3, batch: 2, patch: 32}
  loss: {reconstruction: 1.0, output: 0.5, affinity: 0.01}
  pairs: [[block_1, block_1], [block_6, block_6]]
  max_positions: 64
export_input: image:Nx3xH=16xW=16:float32:0..1
profile_input: image:1x3x16x16:float32:0..1
deploy:
  targets: [{target: onnxruntime}, {target: openvino, precision: fp16}, {target: onnxruntime, precision: int8}]
  int8_budget: 0.5
  calibration_samples: 4
  qat_iterations: 3
  qat_scheme: openvino
  static_shapes: true
  compare_batches: [1, 2]
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
"""


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("div2k")
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        (root / split).mkdir()
        for i in range(count):
            base = np.linspace(0, 255, 96)[None, :, None] * np.ones((80, 1, 3))
            noise = rng.normal(0, 20, size=(80, 96, 3))
            Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(root / split / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, image_folders):
    from compressor.cli import main

    folder = tmp_path_factory.mktemp("run")
    recipe = folder / "tiny.yaml"
    recipe.write_text(textwrap.dedent(TINY))
    code = main(["run", str(recipe), "--out", str(folder / "out"), "--data", str(image_folders)])
    assert code == 0
    return folder / "out"


def test_report_has_every_measured_field(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["recipe"] == "tiny-sr" and report["seed"] == 3 and "torch" in report["versions"]
    for role in ("teacher", "student", "baseline"):
        model = report["models"][role]
        assert model["params"] > 0 and model["macs"] > 0 and np.isfinite(model["metric"]["psnr_y"])
    assert report["models"]["student"]["params"] == 130_828  # merged LoRA: exactly SPAN-Tiny
    assert report["models"]["teacher"]["params"] == 150_688
    artifacts = report["artifacts"]
    assert {(a["role"], a["target"], a["precision"]) for a in artifacts} == {
        ("student", "onnxruntime", "fp32"), ("student", "openvino", "fp16"), ("student", "onnxruntime", "int8"),
        ("teacher", "onnxruntime", "fp32"), ("baseline", "onnxruntime", "fp32")}
    for a in artifacts:
        assert a["parity"]["passed"] and a["size_bytes"] > 0
        assert a["parity"]["inputs"] == ("task data" if a["precision"] == "int8" else "random")
        assert 0 < a["latency_ms"]["median"] <= a["latency_ms"]["p90"] <= a["latency_ms"]["p99"]
        assert a["throughput_fps"] > 0 and "psnr_y" in a["metric"]
    summary = report["summary"]
    assert summary["teacher_to_student_latency_ratio"] > 0
    assert summary["student_minus_baseline"] == pytest.approx(
        report["models"]["student"]["metric"]["psnr_y"] - report["models"]["baseline"]["metric"]["psnr_y"])
    int8 = next(a for a in artifacts if a["precision"] == "int8")
    gate = int8["int8_gate"]
    assert gate["budget"] == 0.5 and gate["tries"][0]["kept_in_float"] == []
    assert gate["passed"] == (gate["reference_metric"] - gate["tries"][-1]["metric"] <= 0.5)
    assert gate["qat"]["iterations"] == 3 and gate["qat"]["samples"] == 4 and gate["qat"]["layers"] > 0
    text = (tiny_run / "report.md").read_text()
    assert ("after 3 QAT iterations" in text) == gate["qat"]["used"]  # else the gate fell back to the FP32 export
    assert (tiny_run / "onnx" / "student_qat.onnx").is_file()
    matrix = {(r["target"], r["precision"]) for r in report["precision_matrix"]}
    assert matrix == {("onnxruntime", "fp32"), ("openvino", "fp16"), ("onnxruntime", "int8")}
    assert {r["precision"]: r["quantizer"] for r in report["precision_matrix"]}["int8"] == "qdq"
    assert "| onnxruntime | int8 (qdq) |" in text
    assert "## Engines" in text and "## Precision matrix (student)" in text and "pass (task data, SQNR " in text
    assert gate["qat"]["scheme"] == "openvino"
    from compressor.targets.base import Artifact

    openvino = Artifact.load(next(Path(a["path"]) for a in artifacts if a["target"] == "openvino"))
    assert openvino.options["static_shapes"] is True  # the engine (and its bundle) compile per input shape


def test_run_bundle_verifies(tiny_run):
    from compressor.targets.bundle import verify_bundle

    archive = tiny_run / "bundle" / "tiny-sr-student.tar.gz"
    assert verify_bundle(archive)["selftest"]["selftest"] is True


def test_checkpoints_load_with_weights_only(tiny_run):
    from compressor.models import create_model

    state = torch.load(tiny_run / "checkpoints" / "student.pt", weights_only=True)
    model = create_model("span_tiny")
    model.load_state_dict(state)


def test_training_is_deterministic_for_a_seed(image_folders, tmp_path):
    from compressor.distill.recipe import load_recipe
    from compressor.distill.tasks import TASKS
    from compressor.distill.tasks.base import RunContext

    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(textwrap.dedent(TINY))
    recipe = load_recipe(str(recipe_path))

    def train_once():
        context = RunContext(out_dir=tmp_path, seed=5, quick=False, data=image_folders, stage=lambda _: None)
        task = TASKS.get(recipe.task)(recipe.settings, context)
        return task._train_or_load("student", recipe.settings.student).model.state_dict()

    first, second = train_once(), train_once()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_device_profile_merges_into_the_report(tiny_run, cli, tmp_path):
    engine = tiny_run / "engines" / "student_onnxruntime_fp32.onnx"
    saved = tmp_path / "device.json"
    assert cli("profile", engine, "--duration", "0.05", "--iterations", "3", "--save", saved).code == 0
    merged = cli("report", tiny_run, "--device-profile", saved, "--device", "orin-nano")
    assert merged.code == 0, merged.err
    report = json.loads((tiny_run / "report.json").read_text())
    (row,) = report["device_profiles"]
    assert row["device"] == "orin-nano" and row["latency_ms"]["median"] > 0
    assert "## Measured on devices" in (tiny_run / "report.md").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = cli("report", tiny_run, "--device-profile", bad)
    assert result.code == 2 and "not a profile" in result.err


def test_int8_parity_feeds_are_task_data_batched_like_the_random_ones():
    from types import SimpleNamespace

    from compressor.core.tensor_spec import TensorSpec
    from compressor.distill.report.build import parity_feeds

    samples = [{"image": np.full((1, 3, 4, 4), i, np.float32)} for i in range(6)]
    task = SimpleNamespace(calibration_feeds=lambda count: samples[:count])
    deploy = SimpleNamespace(compare_count=2, compare_batches=(1, 2))
    spec = TensorSpec.parse("image:Nx3x4x4:float32:0..1")
    int8 = SimpleNamespace(precision="int8", inputs=[spec])
    feeds, kind = parity_feeds(int8, task, deploy, seed=0)
    assert kind == "task data" and [f["image"].shape[0] for f in feeds] == [1, 1, 2, 2]
    assert [f["image"][:, 0, 0, 0].tolist() for f in feeds] == [[0], [1], [2, 3], [4, 5]]
    feeds, kind = parity_feeds(SimpleNamespace(precision="fp32", inputs=[spec]), task, deploy, seed=0)
    assert kind == "random" and [f["image"].shape[0] for f in feeds] == [1, 1, 2, 2]
    assert all(0 <= f["image"].min() and f["image"].max() <= 1 and f["image"].std() > 0.1 for f in feeds)
