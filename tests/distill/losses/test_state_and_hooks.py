"""Stateful and adapter-bearing losses (TAID's schedule, FitNets/LEAF/ND adapters) and hooking declared paths."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor.distill.losses.zoo import (
    KDBatch,
    KDInputError,
    hook_paths,
    loss_feature_paths,
)
from compressor.distill.losses.zoo.taid import taid_loss
from tests.distill.losses.support import build, feature_batch


def test_taid_updates_t_in_training_only_and_keeps_it_in_bounds():
    loss = build("taid", t_start=0.4)
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    first = loss(KDBatch(student, teacher, step=0, total_steps=100))
    assert first.item() == pytest.approx(taid_loss(student, teacher, 0.4).item())
    assert float(loss.t) == pytest.approx(0.4) and float(loss.previous_loss) == pytest.approx(first.item())
    loss(KDBatch(student * 0.5 + teacher * 0.5, teacher, step=1, total_steps=100))  # a lower loss: t grows
    t_after = float(loss.t)
    assert 0.4 + 0.6 / 100 - 1e-9 <= t_after <= 1.0 and float(loss.momentum) != 0
    loss.eval()
    loss(KDBatch(student, teacher, step=2, total_steps=100))
    assert float(loss.t) == t_after
    loss.train()
    loss(KDBatch(student, teacher, step=100, total_steps=100))
    assert float(loss.t) == pytest.approx(1.0)  # the linear floor reaches t_end


def test_taid_masks_ignored_tokens():
    loss = build("taid").eval()
    student, teacher = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    labels = torch.tensor([[1, -100, 2], [-100, 0, 3]])
    keep = labels != -100
    expected = taid_loss(student[keep], teacher[keep], 0.4)
    assert loss(KDBatch(student, teacher, labels)).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("shape_s, shape_t, kind", [((2, 3, 4, 4), (2, 5, 4, 4), nn.Conv2d),
                                                     ((2, 7, 3), (2, 7, 6), nn.Linear), ((2, 3), (2, 6), nn.Linear)])
def test_fitnets_builds_its_regressor_in_prepare(shape_s, shape_t, kind):
    loss = build("fitnets")
    batch = feature_batch(torch.randn(*shape_s, requires_grad=True), torch.randn(*shape_t))
    with pytest.raises(KDInputError, match="prepare"):
        loss(batch)
    loss.prepare(batch)
    assert isinstance(loss.regressors[0], kind) and len(list(loss.parameters())) == 2
    loss(batch).backward()
    assert loss.regressors[0].weight.grad is not None


def test_fitnets_pools_a_larger_student_map_to_the_teacher_size():
    loss = build("fitnets")
    batch = feature_batch(torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4))
    loss.prepare(batch)
    assert torch.isfinite(loss(batch))


@pytest.mark.parametrize("name, attribute", [("leaf", "projection"), ("nd", "projector")])
def test_embedding_losses_project_the_student_when_widths_differ(name, attribute):
    loss = build(name)
    batch = KDBatch(torch.randn(4, 3), torch.randn(4, 6), torch.tensor([0, 1, 0, 1]))
    if name == "nd":
        loss.fit_class_means(torch.randn(4, 6), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(KDInputError, match="prepare"):
        loss(batch)
    loss.prepare(batch)
    assert isinstance(getattr(loss, attribute), nn.Module) and list(getattr(loss, attribute).parameters())
    assert torch.isfinite(loss(batch))


@pytest.mark.parametrize("name", ["fitnets", "attention", "affinity", "afkd"])
def test_feature_losses_need_layers_and_name_a_missing_feature(name):
    with pytest.raises(KDInputError, match="layers"):
        build(name, layers=None)
    loss = build(name, layers=[["a", "b"]])
    assert loss.feature_paths() == (("a",), ("b",))
    with pytest.raises(KDInputError, match="student feature 'a'"):
        loss(KDBatch(extras={"giou": torch.zeros(2)}))


def test_bad_settings_and_missing_inputs_are_one_line_errors():
    with pytest.raises(KDInputError, match="unexpected keyword"):
        build("hinton", temprature=2)
    with pytest.raises(KDInputError, match="labels"):
        build("dkd")(KDBatch(torch.randn(2, 3), torch.randn(2, 3)))
    with pytest.raises(KDInputError, match="teacher_neg"):
        build("margin_mse")(KDBatch(extras={"student_pos": torch.zeros(2)}))
    with pytest.raises(KDInputError, match="giou"):
        build("afkd")(feature_batch(torch.zeros(2, 3), torch.zeros(2, 3)))


def test_hook_paths_captures_every_declared_path_once():
    student = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    losses = [build("fitnets", layers=[["1", "1"]]), build("attention", layers=[["1", "1"], "2"]), build("hinton")]
    s_paths, t_paths = loss_feature_paths(losses)
    assert s_paths == ("1", "2") and t_paths == ("1", "2")
    x = torch.randn(2, 3, 6, 6)
    with hook_paths(student, s_paths) as s_hooks, hook_paths(teacher, t_paths) as t_hooks:
        student(x)
        with torch.no_grad():
            teacher(x)
        batch = KDBatch(student_features=s_hooks.features(), teacher_features=t_hooks.features())
    assert batch.student_features["1"].shape == (2, 4, 6, 6) and batch.teacher_features["2"].shape == (2, 8, 6, 6)
    losses[0].prepare(batch)
    total = losses[0](batch) + losses[1](batch)
    total.backward()
    assert student[0].weight.grad is not None and teacher[0].weight.grad is None
    with hook_paths(student, []) as none:
        assert none.features() == {}
