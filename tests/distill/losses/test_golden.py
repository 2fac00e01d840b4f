"""Every registered loss against float64 numpy values (fixtures/zoo_golden.json, from make_zoo_golden.py) and
against the worked values of /work/shared/research/kd-losses.md (literals below, section cited)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compressor.distill.losses.zoo import (
    KDBatch,
    affinity,
    afkd,
    attention,
    dkd,
    fitnets,
    hinton,
    leaf,
    margin_mse,
    meal,
    nd,
    pld,
    taid,
)
from tests.distill.losses.support import build, f64, feature_batch

GOLDEN = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "zoo_golden.json").read_text())["cases"]
RTOL = 1e-5


def _loss_of(case: dict) -> torch.Tensor:
    name, inputs = case["loss"], {k: v for k, v in case["inputs"].items()}
    loss = build(name, **case["settings"])
    if name in ("fitnets", "attention", "affinity", "afkd"):
        extras = {"giou": f64(inputs["giou"])} if "giou" in inputs else {}
        batch = feature_batch(f64(inputs["student_feature"]), f64(inputs["teacher_feature"]), **extras)
        if name == "fitnets":
            loss.prepare(batch)
            with torch.no_grad():
                weight = f64(inputs["weight"])
                loss.regressors[0].weight.copy_(weight.view(*weight.shape, 1, 1))
                loss.regressors[0].bias.copy_(f64(inputs["bias"]))
        return loss(batch)
    if name == "margin_mse":
        return loss(KDBatch(extras={k: f64(v) for k, v in inputs.items()}))
    labels = torch.as_tensor(inputs["labels"]) if "labels" in inputs else None
    batch = KDBatch(student=f64(inputs["student"]), teacher=f64(inputs["teacher"]), labels=labels)
    if name == "nd":
        loss.class_means = f64(inputs["class_means"])
    return loss(batch)


@pytest.mark.parametrize("case", GOLDEN, ids=[f"{c['loss']}-{i}" for i, c in enumerate(GOLDEN)])
def test_registered_loss_matches_numpy_golden(case):
    value = _loss_of(case)
    assert value.dim() == 0 and value.dtype == torch.float64
    assert value.item() == pytest.approx(case["expected"], rel=RTOL)


def test_every_registered_loss_has_a_golden_case():
    from compressor.distill.losses.zoo import LOSSES

    assert {c["loss"] for c in GOLDEN} == set(LOSSES.names())


# The worked values of kd-losses.md. Shared inputs (B=2, C=3):
ZS, ZT, Y = f64([[1, 2, 0.5], [0.2, -1, 1.5]]), f64([[2, 1, 0], [0.5, -0.5, 2.5]]), torch.tensor([0, 2])
F_S = f64([[[[1, 2], [0, -1]], [[0.5, 0.5], [1, 1]]]])                      # section 3b
F_T = f64([[[[2, 0], [1, 1]], [[0, 1], [1, 0]], [[1, 1], [-1, 2]]]])


def close(value, expected):
    assert float(value) == pytest.approx(expected, rel=RTOL)


def test_notes_section_1_hinton():
    close(hinton.hinton_kd(ZS, ZT, 4.0), 0.222266)
    close(hinton.hinton_kd(ZS, ZT, 1.0), 0.232495)


def test_notes_section_2_dkd():
    tckd, nckd = dkd.dkd_parts(ZS, ZT, Y, 4.0)
    close(tckd, 0.212109), close(nckd, 0.0177502)
    close(dkd.dkd_loss(ZS, ZT, Y, 1.0, 8.0, 4.0), 0.354111)
    close(dkd.dkd_loss(ZS, ZT, Y, 1.0, 0.5, 1.0), 0.235019)
    warm = build("dkd", warmup_steps=20)
    close(warm(KDBatch(student=ZS, teacher=ZT, labels=Y, step=0)), 0.0177056)  # epoch 1 of 20: x 0.05


def test_notes_section_3a_fitnets():
    f_s = f64([[1, -1], [0.5, 2]]).view(2, 2, 1, 1)
    weight = f64([[1, 0], [0.5, 0.5], [-1, 1]]).view(3, 2, 1, 1)
    f_t = f64([[0.8, 0.1, -1.5], [0, 1, 2]]).view(2, 3, 1, 1)
    regressed = torch.nn.functional.conv2d(f_s, weight)
    assert torch.allclose(regressed.flatten(1), f64([[1, 0, -2], [0.5, 1.25, 1.5]]))
    close(fitnets.hint_mse(regressed, f_t), 0.14375)


def test_notes_section_3b_attention_transfer():
    assert torch.allclose(attention.attention_map(F_S)[0], f64([0.251896, 0.856448, 0.201517, 0.403034]), rtol=RTOL)
    assert torch.allclose(attention.attention_map(F_T)[0], f64([0.629941, 0.251976, 0.377964, 0.629941]), rtol=RTOL)
    close(attention.attention_transfer(F_S, F_T), 0.147731)


def test_notes_section_4_pld():
    assert torch.allclose(pld.pld_per_sample(ZS, ZT, Y), f64([1.02345, 0.286173]), rtol=RTOL)
    close(pld.pld_loss(ZS, ZT, Y, 1.0), 0.654811)
    close(pld.pld_loss(ZS, ZT, Y, 4.0), 0.451240)


def test_notes_section_5_nd():
    s, t = f64([[1, 2, 0], [0.5, -1, 2]]), f64([[2, 2, 1], [0, -1, 1]])
    means = f64([[1, 1, 0], [3, -2, 1], [0, -1, 1]])  # class 1 is unused
    close(nd.nd_loss(s, t, Y, means), 0.183537)


def test_notes_section_6_taid():
    target = taid.taid_target(ZS, ZT, 0.4)
    assert torch.allclose(target, f64([[0.391501, 0.478180, 0.130319], [0.161780, 0.0527855, 0.785435]]), rtol=RTOL)
    close(taid.taid_loss(ZS, ZT, 0.4), 0.848572)
    close(taid.taid_loss(ZS, ZT, 0.4, form="kl"), 0.0360051)
    t, momentum = taid.taid_update(0.4, 0.0, 1.0, 0.9, 0, 1000)
    close(momentum, 0.001), close(t - 0.4, 1.50075e-4), close(t, 0.400150)
    close(taid.taid_update(0.4, 0.0, 1.0, 0.9, 10, 1000)[0], 0.406)  # the linear floor


def test_notes_section_7_margin_mse():
    close(margin_mse.margin_mse(f64([2, 0.5]), f64([1, 1]), f64([10, 8]), f64([7.5, 9])), 1.25)


def test_notes_section_8_leaf():
    close(leaf.leaf_loss(f64([[1, 0, 1], [0, 2, 1]]), f64([[1, 0, 0], [0, 1, 1]])), 0.344210)


def test_notes_section_9_meal():
    teachers = torch.stack([ZT, f64([[1, 1.5, -0.5], [0, 0, 1]])])
    assert torch.allclose(meal.ensemble_probabilities(teachers),
                          f64([[0.506724, 0.409413, 0.0838631], [0.163068, 0.126976, 0.709956]]), rtol=RTOL)
    close(meal.meal_soft_label(ZS, teachers), 0.964917)
    close(meal.meal_soft_label(ZS, teachers, "kl"), 0.105454)


def test_notes_section_10_affinity():
    close(affinity.affinity_loss(F_S, F_T, eps=1e-8), 0.539999)
    close(build("affinity")(feature_batch(F_S, F_T)), 0.539999)  # the existing loss's eps 1e-7: same to 1e-7


def test_notes_section_11_afkd():
    f_t = f64([[[1, 0], [0.5, 0.5]], [[0, 1], [1, -1]]])
    f_s = f64([[[0.5, 0], [0.5, 1]], [[1, 1], [0, -1]]])
    giou = f64([0.8, 0.4])
    assert torch.allclose(build("afkd").loss.sample_weights(giou).double(), f64([1.6e-4, 2.4e-4]), rtol=RTOL)
    close(afkd.afkd_loss(f_s, f_t, giou), 7e-5)
    close(build("afkd")(feature_batch(f_s, f_t, giou=giou)), 7e-5)
