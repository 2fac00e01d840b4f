"""`compress run` end to end on a tiny tracking recipe and sequence folders the test writes (UAV123 and
GOT-10k styles), then the bundle's numpy-only tracker on frames."""
import json
import subprocess
import textwrap

import numpy as np
import pytest
from PIL import Image

from tests.distill.gate_checks import assert_int8_gate_measured

TINY = """
name: tiny-track
task: tracking
seed: 2
data: {max_interval: 5}
teacher: {model: ortrack_cpu, train: {iterations: 3, batch: 4}}
student: {model: ortrack_d_cpu, train: {iterations: 3, batch: 4}}
orr: {weight: 0.1}
distill: {afkd: {weight: 0.05}, init: teacher}
deploy:
  targets: [{target: onnxruntime}, {target: openvino, precision: fp16}, {target: onnxruntime, precision: int8}]
  select: {target: onnxruntime, precision: fp32}   # the bundle's tracker runs below where only onnxruntime is
  int8_budget: 0.05         # below the FP32 metric: a broken INT8 engine would exceed it
  calibration_samples: 2
  compare_batches: [1, 2]
  compare_count: 1
  profile_seconds: 0.05
  profile_iterations: 3
"""


def moving_square(count: int, seed: int):
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    x, y = 30.0, 24.0
    for _ in range(count):
        frame = rng.integers(0, 60, size=(72, 96, 3), dtype=np.uint8)
        x, y = x + rng.uniform(-2, 3), y + rng.uniform(-1, 2)
        frame[int(y):int(y) + 12, int(x):int(x) + 14] = (220, 180, 40)
        frames.append(frame)
        boxes.append([int(x), int(y), 14, 12])
    return frames, boxes


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqs")
    for split, kinds in (("train", ("uav", "got")), ("val", ("got", "uav"))):
        for i, kind in enumerate(kinds):
            frames, boxes = moving_square(8, seed=i + (10 if split == "val" else 0))
            folder = root / split / f"{kind}{i}"
            images = folder / "img" if kind == "uav" else folder
            images.mkdir(parents=True)
            for j, frame in enumerate(frames):
                Image.fromarray(frame).save(images / f"{j + 1:08d}.png")
            lines = "\n".join(",".join(map(str, b)) for b in boxes) + "\n"
            (folder / ("groundtruth_rect.txt" if kind == "uav" else "groundtruth.txt")).write_text(lines)
            if kind == "got":
                (folder / "absence.label").write_text("0\n" * 8)
                (folder / "cover.label").write_text("8\n8\n8\n2\n0\n4\n8\n8\n")
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, sequences):
    from compressor.cli import main

    folder = tmp_path_factory.mktemp("run")
    recipe = folder / "tiny.yaml"
    recipe.write_text(textwrap.dedent(TINY))
    assert main(["run", str(recipe), "--out", str(folder / "out"), "--data", str(sequences)]) == 0
    return folder / "out"


def test_report_has_tracking_metrics_for_every_role(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["task"] == "tracking" and report["headline_metric"] == "auc"
    for role in ("teacher", "student", "baseline"):
        metric = report["models"][role]["metric"]
        assert 0 <= metric["auc"] <= 1 and 0 <= metric["precision"] <= 1 and 0 <= metric["norm_precision"] <= 1
        assert metric["frames"] == 14 and metric["occluded_frames"] == 3  # cover 2, 0 and 4 of 8
        assert set(metric["sequences"]) == {"got0", "uav1"}
        assert report["models"][role]["metric_engine"] == "onnxruntime fp32"
    assert report["models"]["teacher"]["params"] == 1_196_901
    assert report["models"]["student"]["params"] == report["models"]["baseline"]["params"] == 800_357
    assert {(a["role"], a["target"], a["precision"]) for a in report["artifacts"]} == {
        ("student", "onnxruntime", "fp32"), ("student", "openvino", "fp16"), ("student", "onnxruntime", "int8"),
        ("teacher", "onnxruntime", "fp32"), ("baseline", "onnxruntime", "fp32")}
    assert all(a["parity"]["passed"] for a in report["artifacts"] if a["precision"] != "int8")
    summary = report["summary"]
    assert summary["teacher_to_student_latency_ratio"] > 0
    assert summary["student_minus_baseline"] == pytest.approx(summary["student_auc"] - summary["baseline_auc"])
    (int8,) = [a for a in report["artifacts"] if a["precision"] == "int8"]
    assert assert_int8_gate_measured(report, budget=0.05)["calibration_samples"] == 2
    assert np.isfinite(int8["parity"]["max_abs"])  # a 3-step model's INT8 parity is measured, not promised
    text = (tiny_run / "report.md").read_text()
    assert "| auc | precision (task metric) |" in text and "{" not in text.split("## Engines")[0]


def test_bundle_verifies_and_its_tracker_runs_without_the_toolchain(tiny_run, runtime_only_python, tmp_path):
    import tarfile

    from compressor.targets.bundle import verify_bundle

    archive = tiny_run / "bundle" / "tiny-track-student.tar.gz"
    assert verify_bundle(archive)["selftest"]["selftest"] is True
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / "tiny-track-student"
    assert (folder / "tracker.py").is_file()
    frames, boxes = moving_square(5, seed=3)
    np.save(tmp_path / "frames.npy", np.stack(frames))
    init = ",".join(map(str, boxes[0]))
    done = subprocess.run([str(runtime_only_python), str(folder / "tracker.py"), "--frames",
                           str(tmp_path / "frames.npy"), "--init", init],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [list(map(float, line.split(","))) for line in done.stdout.strip().splitlines()]
    assert len(rows) == 5 and rows[0] == [float(v) for v in boxes[0]]
    bad = subprocess.run([str(runtime_only_python), str(folder / "tracker.py"), "--frames", str(tmp_path / "none.npy"),
                          "--init", init], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_checkpoints_reload_into_the_registered_models(tiny_run):
    import torch

    from compressor.models import create_model

    for role, name in (("teacher", "ortrack_cpu"), ("student", "ortrack_d_cpu")):
        create_model(name, weights=tiny_run / "checkpoints" / f"{role}.pt")
    state = torch.load(tiny_run / "checkpoints" / "student.pt", weights_only=True)
    assert "backbone.blocks.1.attn.qkv.weight" in state
