"""Properties of every registered loss, on random inputs (hypothesis): no gradient reaches the teacher, values are
finite, and the loss vanishes when the student equals the teacher where the formula says so (elsewhere: the
property the formula does give, tested separately below)."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from compressor.distill.losses.zoo import LOSSES, KDBatch, KDInputError, nd, pld
from tests.distill.losses.support import build, feature_batch

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "edge-compress-hypothesis")  # not .hypothesis/ in the tree
SEEDS = st.integers(min_value=0, max_value=2**31 - 1)
SCALES = st.sampled_from([1e-3, 0.1, 1.0, 10.0, 50.0])
B, C, D = 4, 5, 6


def random_case(name: str, seed: int, scale: float, *, equal: bool = False):
    """(loss, batch, student tensors, teacher tensors) for ``name``; ``equal``: the student copies the teacher."""
    g = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale)

    def pair(*shape):
        teacher = draw(*shape)
        student = teacher.clone() if equal else draw(*shape)
        return student.requires_grad_(), teacher.requires_grad_()

    labels = torch.randint(0, C, (B,), generator=g)
    if name in ("hinton", "dkd", "pld", "taid", "meal"):
        student, teacher = pair(B, C)
        settings_ = {"form": "kl"} if name in ("taid", "meal") else {}
        return build(name, **settings_), KDBatch(student, teacher, labels), [student], [teacher]
    if name in ("fitnets", "attention", "affinity", "afkd"):
        student, teacher = pair(B, 3, 4, 4)
        giou = torch.rand(B, generator=g, dtype=torch.float64).requires_grad_()
        settings_ = {"adapter": "identity"} if name == "fitnets" and equal else {}
        loss = build(name, **settings_)
        batch = feature_batch(student, teacher, giou=giou)
        loss.prepare(batch)
        return loss.double(), batch, [student], [teacher, giou]
    if name == "margin_mse":
        (sp, tp), (sn, tn) = pair(B), pair(B)
        extras = {"student_pos": sp, "student_neg": sn, "teacher_pos": tp, "teacher_neg": tn}
        return build(name), KDBatch(extras=extras), [sp, sn], [tp, tn]
    if name in ("leaf", "nd"):
        student, teacher = pair(B, D)
        loss = build(name)
        if name == "nd":
            loss.fit_class_means(draw(3 * C, D).requires_grad_(), torch.arange(3 * C) % C)
        return loss, KDBatch(student, teacher, labels), [student], [teacher]
    raise AssertionError(f"no random case for loss '{name}'")


NAMES = LOSSES.names()
ZERO_WHEN_EQUAL = ("hinton", "dkd", "fitnets", "attention", "taid", "meal", "margin_mse", "leaf", "affinity", "afkd")


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, deadline=None, database=None)
@given(seed=SEEDS, scale=SCALES)
def test_finite_and_no_gradient_reaches_the_teacher(name, seed, scale):
    loss, batch, students, teachers = random_case(name, seed, scale)
    value = loss(batch)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert all(t.grad is None for t in teachers)
    assert all(s.grad is not None and torch.isfinite(s.grad).all() for s in students)


@pytest.mark.parametrize("name", ZERO_WHEN_EQUAL)
@settings(max_examples=15, deadline=None, database=None)
@given(seed=SEEDS, scale=SCALES)
def test_zero_when_the_student_equals_the_teacher(name, seed, scale):
    # TAID and MEAL in their KL form (the CE form is the target's entropy); FitNets with the identity adapter.
    loss, batch, _, _ = random_case(name, seed, scale, equal=True)
    assert loss(batch).item() == pytest.approx(0.0, abs=1e-9)


def test_every_loss_has_a_property_case():
    assert set(NAMES) <= set(ZERO_WHEN_EQUAL) | {"pld", "nd"}


# PLD replaces cross-entropy, so it is not zero at student == teacher: it is minimised (towards 0) by a student
# that ranks the classes as pi* (label first, then by the teacher) with a growing margin.
@settings(max_examples=25, deadline=None, database=None)
@given(seed=SEEDS)
def test_pld_is_minimised_by_the_teacher_ranking_with_a_large_margin(seed):
    g = torch.Generator().manual_seed(seed)
    teacher, labels = torch.randn(B, C, generator=g, dtype=torch.float64), torch.randint(0, C, (B,), generator=g)
    position = teacher.scatter(1, labels[:, None], math.inf).argsort(1, descending=True).argsort(1)  # in pi*
    rank_score = (C - 1 - position).double()  # highest for the label, then by the teacher
    values = [pld.pld_loss(margin * rank_score, teacher, labels).item() for margin in (1.0, 4.0, 16.0, 64.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 1e-10
    shuffled = rank_score[:, torch.randperm(C, generator=g)]
    assert pld.pld_loss(4.0 * shuffled, teacher, labels) >= pld.pld_loss(4.0 * rank_score, teacher, labels) - 1e-12


# ND pulls the student's embedding along its class-mean direction and its norm up to the teacher's: it is zero
# for any student on its class mean's ray with a norm >= the teacher's, and positive below the teacher's norm.
@settings(max_examples=25, deadline=None, database=None)
@given(seed=SEEDS, stretch=st.floats(min_value=1.0, max_value=100.0))
def test_nd_is_zero_along_the_class_mean_with_enough_norm(seed, stretch):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(C, D, generator=g, dtype=torch.float64)
    teacher = torch.randn(B, D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, C, (B,), generator=g)
    direction = torch.nn.functional.normalize(means[labels], dim=1)
    on_ray = direction * teacher.norm(dim=1, keepdim=True) * stretch
    assert nd.nd_loss(on_ray, teacher, labels, means).item() == pytest.approx(0.0, abs=1e-12)
    assert nd.nd_loss(on_ray / (2 * stretch), teacher, labels, means).item() == pytest.approx(0.5)


def test_nd_fits_class_means_and_refuses_without_them():
    loss = build("nd")
    batch = KDBatch(torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(KDInputError, match="class means"):
        loss(batch)
    embeddings = torch.tensor([[1.0, 0, 0], [3.0, 0, 0], [0, 2.0, 0]])
    means = loss.fit_class_means(embeddings, torch.tensor([0, 0, 2]), num_classes=3)
    assert torch.equal(means, torch.tensor([[2.0, 0, 0], [0, 0, 0], [0, 2.0, 0]]))
    assert "class_means" in loss.state_dict()
