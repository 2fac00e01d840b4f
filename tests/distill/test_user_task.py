"""The generic tasks (classification, embedding) on the user's own models: settings, losses, training, metrics."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.core.errors import CompressError
from compressor.distill.metrics.classification import classification_metrics
from compressor.distill.metrics.embedding import embedding_metrics
from compressor.distill.recipe import load_recipe
from compressor.distill.tasks import TASKS
from compressor.distill.tasks.base import RunContext
from compressor.targets.torch_runner import TorchRunner
from tests.distill.tiny_project import write_tiny_project


@pytest.fixture
def project(tmp_path):
    write_tiny_project(tmp_path)
    np.savez(tmp_path / "free.npz", x=np.load(tmp_path / "data.npz")["x"])
    return tmp_path


def recipe(project: Path, body: str, name: str = "r.yaml"):
    base = """
    name: mine
    task: classification
    teacher: {model: nets.py:teacher, train: {iterations: 60, lr: 0.01, batch: 32}}
    student: {model: nets.py:student}
    data: {source: data.npz}
    distill: {train: {iterations: 40, lr: 0.01, batch: 32}}
    """
    path = project / name
    path.write_text(textwrap.dedent(base) + textwrap.dedent(body))
    return load_recipe(str(path))


def make_task(r, tmp_path, **context):
    return TASKS.get(r.task)(r.settings, RunContext(out_dir=tmp_path, seed=0, quick=True, stage=lambda t: None,
                                                    **context))


def evaluate(task, rm):
    with TorchRunner(rm.model, task.input_specs(), rm.output_names) as runner:
        return task.evaluate(runner)


def test_metrics_top1_top5_agreement_and_embeddings():
    logits = np.array([[3.0, 1, 0, 0, 0, 0], [0, 3.0, 1, 0, 0, 0]])
    m = classification_metrics(logits, np.array([1, 1]), np.array([0, 0]))
    assert m == {"top1": 0.5, "top5": 1.0, "agreement": 0.5}
    e = embedding_metrics(np.eye(4), np.eye(4) * 3)
    assert e["nn_agreement"] == 1.0 and e["cosine"] == pytest.approx(1.0)


def test_recipe_paths_resolve_beside_the_recipe_and_defaults_apply(project):
    r = recipe(project, "")
    assert r.settings.teacher.model == f"{project / 'nets.py'}:teacher"
    assert r.settings.data.source == str(project / "data.npz")
    assert [e.name for e in r.settings.distill.losses] == ["hinton", "ce"]


def test_train_distils_the_student_and_a_ce_only_baseline(project, tmp_path):
    r = recipe(project, """
    distill:
      train: {iterations: 40, lr: 0.01, batch: 32}
      losses:
        - {name: hinton, weight: 0.5, temperature: 2}
        - {name: ce, weight: 0.5}
        - {name: fitnets, weight: 1.0, layers: [[body, body]]}
    metrics: {function: nets.py:accuracy_plus}
    """)
    task = make_task(r, tmp_path)
    task.check_inputs()
    assert task.input_specs()[0].format().startswith("input:Nx6:float32")
    roles = task.train()
    assert roles["student"].origin.endswith("with KD") and roles["baseline"].origin.endswith("without KD")
    assert roles["student"].training["losses"][2] == {"name": "fitnets", "weight": 1.0, "layers": [["body", "body"]]}
    assert not torch.equal(roles["student"].model.head.weight, roles["baseline"].model.head.weight)
    teacher = evaluate(task, roles["teacher"])
    assert teacher["top1"] > 0.6 and teacher["agreement"] == 1.0
    student = evaluate(task, roles["student"])
    assert set(student) == {"top1", "top5", "agreement", "custom"} and student["custom"] > 1.0
    details = task.report_details()
    assert details["data"]["split"]["kind"] == "held_out" and details["data"]["counts"] == {"train": 192, "val": 48}
    assert details["baseline_losses"] == [{"name": "ce", "weight": 1.0}]
    assert len(task.calibration_feeds(4)) == 4 and task.calibration_feeds(1)[0]["input"].shape == (1, 6)


def test_label_free_distillation_with_a_loaded_teacher(project, tmp_path):
    from compressor.core.user_code import load_callable

    torch.manual_seed(0)
    torch.save(load_callable(f"{project / 'nets.py'}:teacher")().state_dict(), project / "teacher.pt")
    r = recipe(project, """
    data: {source: free.npz}
    distill: {losses: [{name: hinton}], train: {iterations: 10, batch: 32}}
    """)
    task = make_task(r, tmp_path, weights={"teacher": str(project / "teacher.pt")})
    task.check_inputs()
    assert task.metric == "agreement"
    roles = task.train()
    assert roles["baseline"].origin.startswith("untrained") and roles["teacher"].origin.startswith("weights")
    assert set(evaluate(task, roles["student"])) == {"agreement"}


def test_embedding_task_distils_vectors(project, tmp_path):
    r = recipe(project, """
    task: embedding
    teacher: {model: nets.py:teacher, args: {out: 5}, train: {iterations: 0}}
    student: {model: nets.py:student, args: {out: 5}}
    distill: {losses: [{name: leaf}], train: {iterations: 20, batch: 32}}
    """)
    task = make_task(r, tmp_path)
    task.check_inputs()
    roles = task.train()
    metrics = evaluate(task, roles["student"])
    assert task.metric == "cosine" and set(metrics) == {"cosine", "nn_agreement"}


@pytest.mark.parametrize("body, problem", [
    ("distill: {losses: [{name: hintn}]}", "distill.losses[0]: unknown loss 'hintn' (did you mean 'hinton'?)"),
    ("distill: {losses: [{name: ce}]}", "add a teacher term"),
    ("distill: {losses: [{name: hinton, temprature: 2}]}", "distill.losses[0]: loss 'hinton'"),
    ("data: {source: free.npz}", "'ce' needs labels"),
    ("data: {source: free.npz}\ndistill: {losses: [{name: hinton}]}", "the teacher cannot be trained"),
    ("data: {source: nowhere}", "data not found"),
    ("metrics: {headline: f1}", None),
])
def test_bad_settings_are_one_line(project, tmp_path, body, problem):
    task = make_task(recipe(project, body), tmp_path)
    if problem is None:  # a headline no metric provides fails when the first engine is evaluated
        task.check_inputs()
        return
    with pytest.raises(CompressError) as info:
        task.check_inputs()
    assert problem in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_whole_pickled_model_is_refused_saying_why(project, tmp_path):
    torch.save(torch.nn.Linear(6, 3), project / "whole.pt")  # a whole module, pickled
    r = recipe(project, "student: {model: nets.py:student, weights: whole.pt}")
    task = make_task(r, tmp_path)
    with pytest.raises(CompressError) as info:
        task.check_inputs()
    message = str(info.value)
    assert "pickled object, not a state dict" in message and "state_dict()" in message and "\n" not in message


def test_nd_gets_the_teachers_class_means_from_the_whole_training_split(project, tmp_path):
    r = recipe(project, """
    distill:
      train: {iterations: 20, lr: 0.01, batch: 32}
      losses:
        - {name: nd, weight: 1.0, layers: [[body, body]]}
        - {name: ce, weight: 1.0}
    """)
    task = make_task(r, tmp_path)
    task.check_inputs()
    roles = task.train()
    nd = roles["student"].training["losses"][0]
    assert nd["name"] == "nd"
    teacher = roles["teacher"].model
    train = task.data().train
    with torch.no_grad():
        features = teacher.body(torch.from_numpy(train.inputs))
    labels = torch.from_numpy(train.labels)
    expected = torch.stack([features[labels == k].mean(0) for k in range(3)])
    # the means the loss trained against: recompute through a fresh objective, as the task does
    from compressor.distill.tasks.generic_losses import LossEntry, Objective

    objective = Objective((LossEntry("nd", 1.0, layers=(("body", "body"),)),), roles["student"].model, teacher, 1)
    with objective.hooked():
        objective.fit_statistics(task._labelled_chunks(train))
    assert torch.allclose(objective.terms[0].class_means, expected, atol=1e-5)
