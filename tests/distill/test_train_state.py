"""Training checkpoints under hostile or odd conditions: truncated and foreign files, a checkpoint of another
process count, data that does not replay, --resume with nothing to resume, a partial left without --resume,
leftovers of a write that was killed, reuse of a finished training; and the random-state capture itself."""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compressor.cli import failures
from compressor.distill import train_state
from compressor.distill.train_runtime import training_runtime
from compressor.distill.train_state import CheckpointError
from compressor.distill.trainer import TrainSchedule, train
from tests.distill.resume_support import Crash, assert_identical, crashing, runtime
from tests.support import assert_one_line_error

ITERATIONS = 12


def _batches(seed: int = 0, count: int | None = None):
    rng = np.random.default_rng(seed)
    drawn = 0
    while count is None or drawn < count:
        drawn += 1
        x = torch.from_numpy(rng.normal(size=(8, 4)).astype(np.float32))
        yield x, x.sum(1, keepdim=True)


class _Counted:
    """The model and how many times its loss ran (a reused training runs none)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.2), nn.Linear(8, 1))
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        x, y = batch
        value = (self.model(x) - y).pow(2).mean()
        return value, {"mse": value.item()}


def _train(folder: Path, *, resume: bool = False, reuse: bool = True, crash_at: int | None = None,
           batches=None, every: int = 5):
    net = _Counted()
    data = batches if batches is not None else _batches()
    if crash_at is not None:
        data = crashing(data, crash_at)
    with training_runtime(runtime(folder, resume=resume, reuse=reuse, every=every)):
        result = train(net.loss, net.model.parameters(), data, TrainSchedule(ITERATIONS, lr=0.05), desc="student",
                       state=[net.model])
    return result, net


def _crashed(folder: Path, at: int = 8) -> Path:
    """Leave the partial checkpoint of a training that crashed drawing batch ``at``; returns its file."""
    with pytest.raises(Crash):
        _train(folder, crash_at=at)
    (path,) = folder.glob("student-*.pt")
    assert not train_state.load_checkpoint(path)["complete"]
    return path


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and isinstance(exc.value, CheckpointError)
    for needle in needles:
        assert needle in text, text


# ---------------------------------------------------------------- unusable files
@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "other dict", "old format"])
def test_an_unusable_checkpoint_is_one_line_naming_the_file(tmp_path, damage):
    path = _crashed(tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not a checkpoint at all" * 20)
    elif damage == "other dict":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    else:
        torch.save({"format": 1, "step": 3}, path)
    for resume in (True, False):  # a plain rerun reads it too, to see whether it is a finished training
        with pytest.raises(CheckpointError) as exc:
            _train(tmp_path, resume=resume)
        _one_line(exc, str(path))
        assert "--fresh" in str(exc.value)
    line, status = failures.describe(exc.value)
    assert status == 2 and str(path) in line
    result, _ = _train(tmp_path, reuse=False)  # --fresh does not read it, and replaces it
    assert result.resumed_at is None and train_state.load_checkpoint(path)["complete"]


def test_a_checkpoint_lacking_entries_is_named(tmp_path):
    path = _crashed(tmp_path)
    payload = train_state.load_checkpoint(path)
    del payload["rng"], payload["format"]
    train_state.save_checkpoint(path, payload)
    with pytest.raises(CheckpointError) as exc:
        _train(tmp_path, resume=True)
    _one_line(exc, str(path), "lacks rng")


def test_a_checkpoint_renamed_onto_another_trainings_name_is_refused(tmp_path):
    path = _crashed(tmp_path)
    payload = train_state.load_checkpoint(path)
    payload["key"] = "0" * 20
    train_state.save_checkpoint(path, payload)
    with pytest.raises(CheckpointError) as exc:
        _train(tmp_path, resume=True)
    _one_line(exc, str(path), "belongs to another training")


def test_resume_and_fresh_together_are_refused_in_one_line(cli, tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "examples" / "digits" / "recipe.yaml"
    result = cli("run", str(recipe), "--resume", "--fresh", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--resume and --fresh contradict each other")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- another setup
def _as_written_by(path: Path, processes: int) -> None:
    payload = train_state.load_checkpoint(path)
    payload["setup"] = {**payload["setup"], "processes": processes}
    payload["rng"] = payload["rng"] * processes
    train_state.save_checkpoint(path, payload)


def test_a_partial_checkpoint_of_another_process_count_is_not_resumed(tmp_path):
    path = _crashed(tmp_path)
    _as_written_by(path, 2)
    with pytest.raises(CheckpointError) as exc:
        _train(tmp_path, resume=True)
    _one_line(exc, str(path), "written by 2 processes (fp32 on cpu) and this run has 1 process (fp32 on cpu)",
              "--nproc")


def test_a_finished_training_of_another_process_count_is_trained_again(tmp_path):
    first, _ = _train(tmp_path)
    (path,) = tmp_path.glob("student-*.pt")
    _as_written_by(path, 2)
    again, net = _train(tmp_path)
    assert not again.reused and net.calls == ITERATIONS and again.losses == first.losses
    assert train_state.load_checkpoint(path)["setup"]["processes"] == 1  # replaced by this run's


# ---------------------------------------------------------------- the data order
def test_data_that_does_not_replay_is_one_line(tmp_path):
    path = _crashed(tmp_path)
    with pytest.raises(CheckpointError) as exc:
        _train(tmp_path, resume=True, batches=_batches(seed=1))
    _one_line(exc, "student: the data order does not replay (batch 5 differs from the one drawn before)", "--fresh")
    with pytest.raises(CheckpointError) as exc:
        _train(tmp_path, resume=True, batches=_batches(count=3))
    _one_line(exc, "the batches ran out after 3 of the 5 drawn before")
    assert train_state.load_checkpoint(path)["step"] == 5  # left as it was


def test_batches_that_run_out_while_training_are_one_line(tmp_path):
    with pytest.raises(train_state.CompressError) as exc:
        _train(tmp_path, batches=_batches(count=4))
    assert str(exc.value) == ("student: the training batches ran out after 4 of 12 (train() needs an endless "
                              "iterator, e.g. trainer.cycle)")


# ---------------------------------------------------------------- what is resumed, reused, started over
def test_resume_with_nothing_to_resume_trains_from_the_start(tmp_path):
    straight, _ = _train(tmp_path / "a")
    resumed, net = _train(tmp_path / "b", resume=True)
    assert resumed.resumed_at is None and not resumed.reused and net.calls == ITERATIONS
    assert resumed.losses == straight.losses


def test_a_partial_checkpoint_without_resume_is_started_over_and_said(tmp_path, caplog):
    straight, _ = _train(tmp_path / "straight")
    path = _crashed(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="compressor.distill.trainer"):
        again, net = _train(tmp_path / "run")
    assert again.resumed_at is None and net.calls == ITERATIONS and again.losses == straight.losses
    assert f"{path} holds a killed run's training at iteration 5 of 12; starting over (--resume continues it)" \
        in caplog.text
    assert train_state.load_checkpoint(path)["complete"]


def test_a_finished_training_replaces_its_partial_and_a_killed_writes_leftover(tmp_path):
    path = _crashed(tmp_path)
    leftover = path.with_name(f".{path.name}.k1ll3d.tmp.pt")
    leftover.write_bytes(b"half a checkpoint")
    result, _ = _train(tmp_path, resume=True)
    assert result.resumed_at == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert train_state.load_checkpoint(path)["complete"]


def test_a_finished_training_is_reused_with_its_end_state(tmp_path):
    first, trained = _train(tmp_path)
    torch.manual_seed(123)
    after_training = train_state.global_rng_state()
    again, net = _train(tmp_path)
    assert again.reused and net.calls == 0 and again.iterations == ITERATIONS
    assert again.losses == first.losses and again.parts == first.parts and again.seconds == first.seconds
    assert assert_identical(trained.model.state_dict(), net.model.state_dict()) == 9
    assert not torch.equal(torch.get_rng_state(), after_training["torch"])  # the finished training's state
    fresh, net = _train(tmp_path, reuse=False)
    assert not fresh.reused and net.calls == ITERATIONS


def test_checkpoint_cadence_follows_checkpoint_every(tmp_path, monkeypatch):
    saved = []
    original = train_state.save_checkpoint

    def recording(path, payload):
        saved.append((payload["step"], payload["complete"]))
        original(path, payload)

    monkeypatch.setattr(train_state, "save_checkpoint", recording)
    _train(tmp_path / "a", every=4)
    _train(tmp_path / "b", every=0)  # 0: about twenty per training, so every iteration of twelve
    assert saved[:3] == [(4, False), (8, False), (12, True)]
    assert saved[3:] == [*((i, False) for i in range(1, 12)), (12, True)]


# ---------------------------------------------------------------- random states
def test_global_random_states_round_trip_through_a_checkpoint_file(tmp_path):
    torch.manual_seed(5)
    np.random.seed(6)
    random.seed(7)
    random.gauss(0, 1)  # leaves a cached gauss in Python's state
    state = train_state.global_rng_state()
    gen = torch.Generator().manual_seed(3)
    npgen = np.random.default_rng(4)
    owned = [("0.g", gen), ("0.n", npgen)]
    states = train_state.generator_states(owned)
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1),
                torch.rand(2, generator=gen), npgen.random(2))
    path = tmp_path / "rng.pt"
    train_state.save_checkpoint(path, {"rng": state, "generators": states})
    loaded = torch.load(path, weights_only=True)
    train_state.set_global_rng_state(loaded["rng"])
    train_state.set_generator_states(owned, loaded["generators"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1),
             torch.rand(2, generator=gen), npgen.random(2))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:4] == again[2:4]
    assert torch.equal(expected[4], again[4]) and np.array_equal(expected[5], again[5])
    with pytest.raises(CheckpointError, match="random generators"):
        train_state.set_generator_states(owned[:1], loaded["generators"])


def test_owned_generators_are_found_in_modules_and_our_objectives():
    from compressor.distill.losses.tracking import TrackingLossWeights
    from compressor.distill.tasks.tracking_train import make_objective
    from compressor.models.vit_tracker import VitTracker

    model = VitTracker(template_size=32, search_size=64, patch=16, dim=16, depth=1, heads=2, head_channels=8)
    objective = make_objective(model, TrackingLossWeights(), orr=True, orr_weight=1.0, ratio=0.3, block=8,
                               stop_gradient="masked", seed=0)
    from compressor.distill.losses import SpatialAffinityLoss

    loss = SpatialAffinityLoss(generator=torch.Generator())
    found = train_state.owned_generators([model, objective, nn.Sequential(loss)])
    assert [path for path, _ in found] == ["1.generator", "2.0.generator"]
    assert found[0][1] is objective.generator and found[1][1] is loss.generator
