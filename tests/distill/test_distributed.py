"""Training on several processes (compressor.distill.distributed, ``compress run --nproc``): batches sharded
per rank, the environment torchrun sets, the relaunch command, and real two-process gloo trainings (a built-in
recipe and a user's own) ending with the weights one process gets from the same global batches."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
import torch

from compressor.core.errors import CompressError
from compressor.distill.distributed import (
    SINGLE,
    DistContext,
    context_from_env,
    map_sharded,
    shard,
)
from tests.distill.tiny_project import write_tiny_project
from tests.support import assert_one_line_error

WORKER = Path(__file__).with_name("ddp_worker.py")


# ------------------------------------------------------------------ shard
@pytest.mark.parametrize("size, world", [(8, 2), (9, 2), (5, 3), (7, 4), (3, 3), (13, 5)])
def test_shards_are_contiguous_cover_the_batch_and_weights_sum_to_the_world(size, world):
    batch = torch.arange(size * 2).reshape(size, 2)
    pieces = [shard(batch, rank, world) for rank in range(world)]
    assert torch.equal(torch.cat([p for p, _ in pieces]), batch)  # in rank order, nothing lost or repeated
    assert all(len(p) in (size // world, size // world + 1) for p, _ in pieces)
    assert sum(w for _, w in pieces) == pytest.approx(world)
    for piece, weight in pieces:
        assert weight == pytest.approx(world * len(piece) / size)


def test_weighted_shard_losses_average_to_the_whole_batch_mean():
    """DDP averages the ranks' gradients; with each rank's mean loss weighted by its share, that average is
    the gradient of the whole batch's mean loss (uneven shards included)."""
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    whole = x.pow(2).mean()
    world = 3
    ranks = [shard(x, r, world) for r in range(world)]
    assert sum(p.pow(2).mean() * w for p, w in ranks) / world == pytest.approx(whole.item(), rel=1e-6)


def test_shard_splits_dicts_lists_and_tuples_and_keeps_other_entries():
    batch = {"x": torch.arange(6), "pair": (torch.zeros(6, 2), [torch.ones(6)]), "name": "kept", "none": None}
    piece, weight = shard(batch, 1, 2)
    assert torch.equal(piece["x"], torch.tensor([3, 4, 5])) and piece["pair"][0].shape == (3, 2)
    assert isinstance(piece["pair"], tuple) and isinstance(piece["pair"][1], list) and piece["pair"][1][0].shape == (3,)
    assert piece["name"] == "kept" and piece["none"] is None and weight == 1.0


def test_one_process_gets_the_batch_itself():
    batch = (torch.zeros(1), "anything")
    assert shard(batch, 0, 1) == (batch, 1.0)


@pytest.mark.parametrize("batch, problem", [
    (torch.zeros(1, 4), "a training batch of 1 samples cannot be split across 2 processes"),
    ((torch.zeros(4), torch.zeros(5)), "first axes differ ([4, 5])"),
    ((torch.zeros(4), torch.tensor(1.0)), "first axes differ"),
    ({"name": "no tensors"}, "holds no tensors"),
])
def test_batches_that_cannot_be_split_are_one_line(batch, problem):
    with pytest.raises(CompressError) as info:
        shard(batch, 0, 2)
    assert problem in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ torchrun's environment
def test_environment_without_torchrun_is_one_process():
    assert context_from_env("cpu", {}) is SINGLE and not SINGLE.active and SINGLE.is_main


def test_torchrun_environment_gives_rank_world_and_backend():
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}
    assert context_from_env("cpu", env) == DistContext(1, 4, 0, "gloo")
    context = context_from_env("cuda:0", env)
    assert context.backend == "nccl" and context.active and not context.is_main
    assert context.to_dict() == {"processes": 4, "backend": "nccl"}


@pytest.mark.parametrize("env, problem", [
    ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one', WORLD_SIZE='2' are not integers"),
    ({"RANK": "0", "WORLD_SIZE": ""}, "are not integers"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK 2 is not in 0..WORLD_SIZE-1 (2)"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "is not in 0..WORLD_SIZE-1"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "is not in 0..WORLD_SIZE-1"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-3"}, "is not in"),
])
def test_malformed_torchrun_environment_is_one_line(env, problem):
    with pytest.raises(CompressError) as info:
        context_from_env("cpu", env)
    assert problem in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ --nproc relaunch
def test_relaunch_arguments_parse_back_to_the_same_command_without_nproc(tmp_path):
    from compressor.cli.launch import command_args, torchrun_command
    from compressor.cli.run_cmd import run

    argv = ["recipe.yaml", "--out", str(tmp_path / "o"), "--quick", "--seed", "7", "--nproc", "2",
            "--train-precision", "auto", "--resume", "--checkpoint-every", "5", "--budget", "latency_ms=3"]
    with run.make_context("run", list(argv)) as ctx:
        args = command_args(ctx)
        params = dict(ctx.params)
    assert args[0] == "run" and "--nproc" not in args
    with run.make_context("run", args[1:]) as again:
        assert again.params == {**params, "nproc": 1}
    command = torchrun_command(2, args)
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=2" in command and command[-len(args) - 2:] == ["-m", "compressor.cli", *args]


def test_relaunch_keeps_flags_that_were_given_and_drops_defaults():
    from compressor.cli.launch import command_args
    from compressor.cli.run_cmd import run

    with run.make_context("run", ["--nproc", "3"]) as ctx:
        assert command_args(ctx) == ["run"]
    with run.make_context("run", ["r.yaml", "--fresh", "--device", "auto", "--json"]) as ctx:
        assert command_args(ctx) == ["run", "r.yaml", "--device", "auto", "--fresh", "--json"]
    with click.Context(run, info_name="run") as ctx:
        assert command_args(ctx) == ["run"]


def test_nproc_inside_torchrun_is_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    user = _user_project(tmp_path)
    result = cli("run", str(user), "--nproc", "2", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--nproc: this process was already started by torchrun; drop --nproc")
    assert not (tmp_path / "run").exists()


def test_nproc_with_one_named_gpu_is_one_line(cli, tmp_path):
    user = _user_project(tmp_path)
    result = cli("run", str(user), "--nproc", "2", "--device", "cuda:1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--device cuda:1 names one GPU for all 2 processes: use --device cuda")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ map_sharded
def test_map_sharded_in_one_process_maps_everything_in_order():
    assert map_sharded(lambda x: x * x, range(5), SINGLE) == [0, 1, 4, 9, 16]
    assert map_sharded(str, iter([3, 1]), None) == ["3", "1"]  # outside a training: the run's one process
    assert map_sharded(str, [], SINGLE) == []


def test_map_sharded_over_two_processes_splits_the_work_and_every_rank_gets_all_in_order(tmp_path):
    _torchrun(2, "map", tmp_path, "7")
    expected = [torch.full((i + 1,), float(i)) ** 2 for i in range(7)]
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"map{rank}.pt", weights_only=True)
        assert saved["computed"] == list(range(rank, 7, 2))  # each rank did its own share only
        assert len(saved["out"]) == 7 and all(torch.equal(a, b) for a, b in zip(saved["out"], expected))


# ------------------------------------------------------------------ two-process training == one process
# Tolerance: the two runs differ only in float summation order (gloo's gradient all-reduce, each rank's half-batch
# reductions). Measured here: teachers within 2e-7 of the role's largest weight, the SR student within 7e-5 (Adam
# magnifies rounding in parameters whose gradient is near its eps, here one upsampler bias), the MLPs within 2e-7.
# TOLERANCE (relative to each role's largest |weight|) keeps a 7x margin; training moved every compared role far
# more than that (checked below), so the comparison can fail.
TOLERANCE = 5e-4

SR_RECIPE = """
name: sr-two-processes
task: super-resolution
seed: 0
data: {train: builtin, val: builtin, scale: 4, repeat: 4}   # repeat 4 x batch 4: no epoch ends with a 1-patch batch
teacher: {model: span_48, train: {iterations: 3, lr: 0.001, batch: 4, patch: 32}}
student: {model: span_tiny, train: {iterations: 3, lr: 0.001, batch: 4, patch: 32}}
distill:
  train: {iterations: 4, lr: 0.001, batch: 4, patch: 32}
  loss: {reconstruction: 1.0, output: 1.0, affinity: 0.003}
  max_positions: 16
"""

USER_RECIPE = """
name: mine-two-processes
task: classification
seed: 0
teacher: {model: nets.py:teacher, train: {iterations: 12, lr: 0.01, batch: 25}}
student: {model: nets.py:student}
data: {source: data.npz}
distill:
  train: {iterations: 12, lr: 0.01, batch: 25}   # 25 over 2 ranks: 12 + 13 samples, and 240 % 25 = 15 at epoch end
  losses:
    - {name: hinton, weight: 0.5, temperature: 2}
    - {name: ce, weight: 0.5}
deploy:
  targets: [{target: onnxruntime, precision: fp32}]
  compare_batches: [1]
  calibration_samples: 4
  profile_seconds: 0.1
  profile_iterations: 3
"""


def _user_project(folder: Path) -> Path:
    write_tiny_project(folder)
    (folder / "recipe.yaml").write_text(textwrap.dedent(USER_RECIPE))
    return folder / "recipe.yaml"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}


def _torchrun(nproc: int, *args, timeout: int = 300) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(WORKER), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]


def _one_process(*args, timeout: int = 300) -> None:
    done = subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]


def _train_both_ways(recipe: Path, tmp_path: Path) -> tuple[dict, list[dict]]:
    single, double = tmp_path / "one", tmp_path / "two"
    single.mkdir()
    double.mkdir()
    _one_process("train", recipe, tmp_path / "run-one", single)
    _torchrun(2, "train", recipe, tmp_path / "run-two", double)
    one = torch.load(single / "rank0.pt", weights_only=True)
    ranks = [torch.load(double / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return one, ranks


def _largest(weights: dict) -> float:
    return max(v.float().abs().max().item() for v in weights.values() if v.is_floating_point() and v.numel())


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


def _assert_same_training(one: dict, ranks: list[dict], roles: tuple[str, ...]) -> None:
    assert one["world"] == 1 and [r["world"] for r in ranks] == [2, 2]
    for role in roles:
        setup = ranks[0]["training"][role]["setup"]
        assert setup["processes"] == 2 and setup["backend"] == "gloo"
        assert one["training"][role]["setup"]["processes"] == 1
        w0, w1, single = ranks[0]["weights"][role], ranks[1]["weights"][role], one["weights"][role]
        assert all(torch.equal(w0[k], w1[k]) for k in w0), f"{role}: the two ranks ended with different weights"
        scale = _largest(single)
        assert _max_difference(w0, single) <= TOLERANCE * scale, (role, _max_difference(w0, single), scale)
        assert one["training"][role]["final_loss"] == pytest.approx(ranks[0]["training"][role]["final_loss"],
                                                                     rel=1e-4)


@pytest.mark.slow
def test_two_process_training_of_a_builtin_recipe_equals_one_process(tmp_path):
    """sr-dsclora, shrunk: SPAN has no BatchNorm or dropout, its losses are per-pixel means and the affinity
    positions are pooled, so sharding each global batch is exact up to float summation order."""
    recipe = tmp_path / "sr.yaml"
    recipe.write_text(textwrap.dedent(SR_RECIPE))
    one, ranks = _train_both_ways(recipe, tmp_path)
    _assert_same_training(one, ranks, ("teacher", "student", "baseline"))
    student, baseline = one["weights"]["student"], one["weights"]["baseline"]
    # the KD student and the no-KD baseline share their base and differ by the distillation: far beyond tolerance
    assert _max_difference(student, baseline) > 20 * TOLERANCE * _largest(student)
    assert not (tmp_path / "two" / "rank1.pt").samefile(tmp_path / "two" / "rank0.pt")


@pytest.mark.slow
def test_two_process_training_of_a_user_recipe_equals_one_process(tmp_path):
    recipe = _user_project(tmp_path)
    one, ranks = _train_both_ways(recipe, tmp_path)
    _assert_same_training(one, ranks, ("teacher", "student", "baseline"))
    for role in ("student", "baseline"):
        assert ranks[0]["training"][role]["iterations"] == 12
    student, baseline = one["weights"]["student"], one["weights"]["baseline"]
    assert _max_difference(student, baseline) > 20 * TOLERANCE * _largest(student)
    # only rank 0 wrote the training checkpoints; rank 1 wrote nothing into its run folder
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "run-two" / ".cache" / "train").iterdir()) == \
        ["baseline", "student", "teacher"]


# ------------------------------------------------------------------ compress run --nproc 2
@pytest.mark.slow
def test_compress_run_nproc_2_trains_in_two_processes_and_rank_0_alone_writes_the_run(tmp_path):
    recipe = _user_project(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "run", str(recipe), "--nproc", "2", "--out",
                           str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "run"])  # no second run folder
    assert done.stdout.count("report: ") == 1  # one process reported the run
    assert not [p.name for p in out.iterdir() if p.name.startswith(".run-")]  # no staging folder left
    report = json.loads((out / "report.json").read_text())
    trainings = {role: model["training"] for role, model in report["models"].items()}
    assert sorted(trainings) == ["baseline", "student", "teacher"]
    assert all(t["setup"]["processes"] == 2 and t["setup"]["backend"] == "gloo" for t in trainings.values())
    assert not [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_compress_run_nproc_2_with_a_batch_smaller_than_the_processes_is_one_line(tmp_path):
    recipe = _user_project(tmp_path)
    recipe.write_text(recipe.read_text().replace("batch: 25}", "batch: 1}", 1))  # the teacher's batch
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "run", str(recipe), "--nproc", "2", "--out",
                           str(tmp_path / "run")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=_env())
    assert done.returncode == 2, done.stderr[-4000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-4000:]
    assert "a training batch of 1 samples cannot be split across 2 processes" in lines[0]
