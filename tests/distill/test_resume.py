"""Exact resume: a training stopped mid-way and continued from its last checkpoint ends exactly (torch.equal)
where the same training run straight through ends, for every built-in task's training objects (generic
objective with TAID, the SR affinity distiller with its position-sampling generator, the tracking objective with
ORR masking and AFKD, the IDS distiller keeping its best weights), and ``compress run`` killed with SIGKILL
mid-training and rerun with ``--resume`` publishes the same weights as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compressor.distill.trainer import TrainSchedule, cycle, train
from tests.distill.resume_support import (
    Setup,
    assert_identical,
    final_checkpoint,
    straight_and_resumed,
)
from tests.distill.tiny_project import write_classification_data

ROOT = Path(__file__).resolve().parents[2]


class Net(nn.Module):
    """Dropout and BatchNorm: random state and buffers both matter."""

    output_names = ["logits"]

    def __init__(self, width: int = 16, out: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(width, out)

    def forward(self, x):
        return self.head(self.body(x))


def _labelled_batches(seed: int, batch: int = 16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)).astype(np.int64)
    while True:
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch + 1, batch):
            index = np.sort(order[start:start + batch])
            yield torch.from_numpy(x[index]), torch.from_numpy(y[index])


def _check(build, tmp_path, desc: str, *, crash_at: int, every: int = 5):
    straight, a, resumed, b, folder = straight_and_resumed(build, tmp_path, crash_at=crash_at, every=every)
    assert resumed.resumed_at == (crash_at - 1) // every * every and straight.resumed_at is None
    assert assert_identical(a, b) > 0
    assert resumed.losses == straight.losses and resumed.parts == straight.parts  # the loss curve continues
    assert resumed.iterations == straight.iterations
    compared = assert_identical(final_checkpoint(tmp_path / "straight", desc), final_checkpoint(folder, desc),
                                skip=("seconds",))
    assert compared > 0
    return straight, resumed


# ---------------------------------------------------------------- generic tasks: Objective with TAID and CE
def _generic() -> Setup:
    from compressor.distill.tasks.generic_losses import LossEntry, Objective

    iterations = 23
    torch.manual_seed(0)
    teacher, student = Net(32).eval(), Net(8)
    objective = Objective((LossEntry("taid", 0.7), LossEntry("ce", 0.3)), student.train(), teacher, iterations)

    def run(wrap):
        with objective.hooked():
            return train(lambda b: objective(*b), objective.trainable(), wrap(_labelled_batches(4)),
                         TrainSchedule(iterations, lr=0.01), desc="student", state=[objective])
    return Setup(run, lambda: {"state": objective.state_dict(), "step": objective.step})


def test_generic_objective_with_taid_resumes_exactly(tmp_path):
    straight, _ = _check(_generic, tmp_path, "student", crash_at=13)
    assert len(straight.losses) == 1 and set(straight.parts[0]) == {"taid", "ce"}


# ---------------------------------------------------------------- SR: ConvLoRA + affinity KD, sampled positions
class _Pairs(torch.utils.data.Dataset):
    """LR/HR pairs whose flips come from torch's global generator (drawn in the data's own stream)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        self.hr = torch.rand(12, 3, 16, 16, generator=g)

    def __len__(self) -> int:
        return len(self.hr)

    def __getitem__(self, index: int):
        hr = self.hr[index]
        if torch.rand(()) < 0.5:
            hr = hr.flip(-1)
        return torch.nn.functional.avg_pool2d(hr[None], 2)[0], hr


def _sr() -> Setup:
    from compressor.distill.distillers.feature_affinity import (
        AffinityKDWeights,
        FeatureAffinityDistiller,
    )
    from compressor.distill.losses import SpatialAffinityLoss
    from compressor.models import create_model
    from compressor.models.layers.conv_lora import (
        apply_conv_lora,
        mark_only_lora_trainable,
    )

    torch.manual_seed(1)
    teacher = create_model("tiny_convnet", seed=1, channels=16)
    student = create_model("tiny_convnet", seed=2, channels=8).train()
    apply_conv_lora(student, rank=2, alpha=4.0, target="body.*")
    mark_only_lora_trainable(student)
    affinity = SpatialAffinityLoss(max_positions=20, reduction="sample", generator=torch.Generator().manual_seed(9))
    distiller = FeatureAffinityDistiller(student, teacher, [("body.0", "body.0")], AffinityKDWeights(), affinity)
    dataset = _Pairs()

    def epoch(index: int):
        order = torch.Generator().manual_seed(7919 + index)
        return torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, generator=order)

    def run(wrap):
        return train(lambda b: distiller(*b), student.parameters(), wrap(cycle(epoch)), TrainSchedule(17, lr=0.01),
                     desc="student", state=[distiller])
    return Setup(run, lambda: {"student": student.state_dict(), "generator": affinity.generator.get_state()})


def test_sr_affinity_distiller_with_sampled_positions_resumes_exactly(tmp_path):
    straight, _ = _check(_sr, tmp_path, "student", crash_at=9, every=4)
    assert set(straight.parts[0]) == {"rec", "out", "aff"}


# ---------------------------------------------------------------- tracking: ORR masking + AFKD
def _tracking() -> Setup:
    from compressor.distill.distillers.afkd import AFKDWeights
    from compressor.distill.losses.tracking import TrackingLossWeights
    from compressor.distill.tasks.tracking_train import (
        distil_tracker,
        frozen_copy,
        make_objective,
    )
    from compressor.models.vit_tracker import VitTracker

    torch.manual_seed(2)
    sizes = dict(template_size=32, search_size=64, patch=16, dim=32, heads=2, head_channels=16)
    teacher, student = VitTracker(depth=2, **sizes), VitTracker(depth=1, **sizes)
    objective = make_objective(student, TrackingLossWeights(), orr=True, orr_weight=1.0, ratio=0.5, block=8,
                               stop_gradient="masked", seed=5)

    def batches():
        rng = np.random.default_rng(6)
        while True:
            z = torch.from_numpy(rng.normal(size=(2, 3, 32, 32)).astype(np.float32))
            x = torch.from_numpy(rng.normal(size=(2, 3, 64, 64)).astype(np.float32))
            boxes = torch.from_numpy(rng.uniform(0.2, 0.4, size=(2, 4)).astype(np.float32))
            yield z, x, boxes

    def run(wrap):
        return distil_tracker(student, frozen_copy(teacher), objective, wrap(batches()), TrainSchedule(9, lr=1e-3),
                              pairs=[("backbone.norm", "backbone.norm")], weights=AFKDWeights(), seed=7,
                              desc="student")
    return Setup(run, lambda: {"student": student.state_dict(), "masking": objective.generator.get_state()})


def test_tracking_objective_with_orr_masking_resumes_exactly(tmp_path):
    straight, _ = _check(_tracking, tmp_path, "student", crash_at=6, every=2)
    assert "orr" in straight.parts[0] and "afkd" in straight.parts[0]


# ---------------------------------------------------------------- IDS: logit KD, best weights kept on the way
def _ids() -> Setup:
    from compressor.distill.distillers.logit_kd import LogitKDistiller, LogitKDWeights
    from compressor.distill.tasks.ids import IdsTrain, _BestWeights
    from compressor.models.can_ids import LsfIdmBiLSTM

    torch.manual_seed(3)
    model = LsfIdmBiLSTM(embed=8, hidden=8, seq_len=6, vocab=20, classes=3, dropout=0.3)
    distiller = LogitKDistiller(model.train(), LogitKDWeights(0.5, 0.5), temperature=2.0)
    val = torch.from_numpy(np.random.default_rng(1).integers(0, 20, size=(16, 6)))

    def score(m) -> float:  # a deterministic score that goes up and down as training moves the weights
        with torch.no_grad():
            return float(m.eval()(val).softmax(1)[:, 0].mean())

    stage = IdsTrain(iterations=19, batch=8, select_every=3)
    best = _BestWeights(model, stage, score)

    def batches():
        rng = np.random.default_rng(2)
        while True:
            tokens = torch.from_numpy(rng.integers(0, 20, size=(8, 6)))
            yield [tokens, torch.from_numpy(rng.integers(0, 3, size=8)), torch.randn(8, 3), None]

    def run(wrap):
        return train(lambda b: distiller(*b), distiller.parameters(), wrap(batches()),
                     TrainSchedule(stage.iterations, lr=0.01, grad_clip=1.0), desc="student", on_step=best,
                     state=[distiller])
    return Setup(run, lambda: {"model": model.state_dict(), "best": best.state_dict()})


def test_ids_distiller_keeps_its_best_weights_across_a_resume(tmp_path):
    _check(_ids, tmp_path, "student", crash_at=11, every=4)
    with_best = final_checkpoint(tmp_path / "resumed", "student")["on_step"]
    assert with_best["state"] is not None and with_best["iteration"] in {*range(3, 19, 3), 19}


# ---------------------------------------------------------------- compress run, killed with SIGKILL
NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    output_names = ["logits"]

    def __init__(self, width, out=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Linear(width, out)

    def forward(self, x):
        return self.head(self.body(x))


def teacher(width=32):
    return Net(int(width))


def student(width=8):
    return Net(int(width))
'''

RECIPE = '''
name: resume
task: classification
seed: 3
teacher: {model: nets.py:teacher, train: {iterations: 40, lr: 0.01, batch: 16}}
student: {model: nets.py:student}
data: {source: data.npz}
distill:
  losses:
    - {name: taid, weight: 0.7}
    - {name: ce, weight: 0.3}
  train: {iterations: 600, lr: 0.01, batch: 16}
deploy:
  targets: [{target: onnxruntime, precision: fp32}]
  compare_count: 1
  compare_batches: [1]
  profile_seconds: 0.05
  profile_iterations: 2
  layer_profile_runs: 0
  bundle: false
'''


def _project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "nets.py").write_text(NETS)
    (folder / "recipe.yaml").write_text(textwrap.dedent(RECIPE))
    write_classification_data(folder)
    return folder


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "compressor.cli", "run", "recipe.yaml", "--checkpoint-every", "20", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _partial_of(train_dir: Path, desc: str) -> int | None:
    """The iteration of ``desc``'s partial checkpoint in ``train_dir`` (None while there is none)."""
    from compressor.distill.train_state import load_checkpoint

    for path in train_dir.glob(f"{desc}-*.pt"):
        payload = load_checkpoint(path)  # written atomically: complete whenever it is there
        if not payload["complete"]:
            return int(payload["step"])
    return None


def _kill_mid_student(project: Path, out: str) -> int:
    """Start ``compress run``, SIGKILL it once the student has a partial checkpoint; returns that iteration."""
    process = subprocess.Popen(_command("--out", out), cwd=project, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    train_dir = project / out / ".cache" / "train"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            step = _partial_of(train_dir, "student") if train_dir.is_dir() else None
            if step is not None and step >= 100:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return step
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise AssertionError(f"no partial student checkpoint before the run ended:\n{process.stderr.read()[-2000:]}")


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.stem: torch.load(p, weights_only=True) for p in sorted((run / "checkpoints").glob("*.pt"))}


@pytest.mark.slow
def test_compress_run_killed_mid_training_and_resumed_ends_with_the_same_weights(tmp_path):
    project = _project(tmp_path / "project")
    straight = subprocess.run(_command("--out", "straight"), cwd=project, env=_env(), capture_output=True,
                              text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed_at = _kill_mid_student(project, "killed")
    assert 100 <= killed_at < 600
    assert not (project / "killed" / "report.json").exists()  # it died before publishing anything
    resumed = subprocess.run(_command("--out", "killed", "--resume"), cwd=project, env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = resumed.stdout + resumed.stderr  # stage lines
    assert "reused finished training of teacher" in said
    lines = [line for line in said.splitlines() if "resumed at iteration" in line]
    assert len(lines) == 1 and lines[0].startswith("student: resumed at iteration ") and "of 600" in lines[0]
    resumed_at = int(lines[0].split("resumed at iteration ")[1].split()[0])
    assert resumed_at >= killed_at and resumed_at % 20 == 0
    a, b = _weights(project / "straight"), _weights(project / "killed")
    assert set(a) == {"teacher", "student", "baseline"}
    assert assert_identical(a, b) >= 3 * 6
    report_a = json.loads((project / "straight" / "report.json").read_text())["models"]
    report_b = json.loads((project / "killed" / "report.json").read_text())["models"]
    assert report_b["student"]["training"]["resumed_at"] == resumed_at
    assert "resumed_at" not in report_a["student"]["training"]
    assert report_b["teacher"]["training"]["reused"] is True
    for role in ("teacher", "student", "baseline"):
        assert report_b[role]["training"]["loss_curve"] == report_a[role]["training"]["loss_curve"], role
    # one complete checkpoint each (the partial was overwritten), equal but for the training time: every random
    # state too (the tasks seed numpy's and Python's generators with torch's)
    for role in ("teacher", "student", "baseline"):
        assert_identical(final_checkpoint(project / "straight" / ".cache" / "train", role),
                         final_checkpoint(project / "killed" / ".cache" / "train", role))
    leftovers = [p.name for p in (project / "killed" / ".cache" / "train").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # a damaged checkpoint: one line naming it, exit 2, and the published run left as it was
    (teacher,) = (project / "killed" / ".cache" / "train").glob("teacher-*.pt")
    teacher.write_bytes(teacher.read_bytes()[:1000])
    report = (project / "killed" / "report.json").stat().st_mtime_ns
    damaged = subprocess.run(_command("--out", "killed", "--resume"), cwd=project, env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr, damaged.stderr[-3000:]
    errors = [line for line in damaged.stderr.splitlines() if teacher.name in line]
    assert len(errors) == 1 and errors[0].startswith("error: training checkpoint ") and "unreadable" in errors[0]
    assert (project / "killed" / "report.json").stat().st_mtime_ns == report


# ---------------------------------------------------------------- two processes (torchrun, gloo)
WORKER = Path(__file__).with_name("resume_worker.py")


def _torchrun(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(WORKER),
               *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**_env(), "PYTHONWARNINGS": "ignore::FutureWarning"})


@pytest.mark.slow
def test_two_processes_killed_and_resumed_end_like_two_processes_straight(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    done = _torchrun(tmp_path / "straight", results, "straight")
    assert done.returncode == 0, done.stderr[-3000:]
    crashed = _torchrun(tmp_path / "resumed", results, "crash")
    assert crashed.returncode != 0 and not list(results.glob("crash*.pt"))
    (partial,) = (tmp_path / "resumed").glob("student-*.pt")
    from compressor.distill.train_state import load_checkpoint

    payload = load_checkpoint(partial)
    assert payload["step"] == 8 and not payload["complete"] and len(payload["rng"]) == 2
    assert payload["setup"]["processes"] == 2
    done = _torchrun(tmp_path / "resumed", results, "resume")
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        straight, resumed = (torch.load(results / f"{mode}{rank}.pt", weights_only=True)
                             for mode in ("straight", "resume"))
        assert resumed["resumed_at"] == 8 and straight["resumed_at"] is None
        assert assert_identical(straight["weights"], resumed["weights"]) == 9
        assert straight["losses"] == resumed["losses"]
