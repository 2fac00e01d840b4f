"""Tracking losses against golden values computed from the formulas (tests/fixtures/tracking_golden.json),
the Cox-process masking statistics, the ORR loss and AFKD (its gradient reaches the student)."""
import json

import numpy as np
import pytest
import torch

from compressor.distill.distillers.afkd import AFKDDistiller, AFKDLoss, AFKDWeights
from compressor.distill.losses.orr import CoxBlockMasking, OrrLoss
from compressor.distill.losses.tracking import (
    TrackingLoss,
    center_heatmap,
    cxcywh_to_xyxy,
    decode_boxes,
    focal_loss,
    generalized_iou,
    xywh_to_xyxy,
)
from tests.support import FIXTURES

GOLDEN = json.loads((FIXTURES / "tracking_golden.json").read_text())


def golden_outputs():
    return tuple(torch.tensor(GOLDEN[k], dtype=torch.float32) for k in ("score", "size", "offset"))


def test_heatmap_matches_cornernet_gaussian():
    maps = center_heatmap(torch.tensor(GOLDEN["gt"]), GOLDEN["grid"])
    np.testing.assert_allclose(maps[:, 0].numpy(), np.asarray(GOLDEN["heatmaps"]), atol=1e-6)
    assert torch.all(maps.flatten(1).max(1).values == 1)


def test_focal_giou_l1_golden():
    score, size, offset = golden_outputs()
    gt = torch.tensor(GOLDEN["gt"])
    heat = center_heatmap(gt, GOLDEN["grid"])
    assert focal_loss(score, heat).item() == pytest.approx(GOLDEN["focal"], rel=1e-5)
    pred = cxcywh_to_xyxy(decode_boxes(score, size, offset))
    np.testing.assert_allclose(pred.numpy(), GOLDEN["pred_xyxy"], atol=1e-6)
    giou, _ = generalized_iou(pred, xywh_to_xyxy(gt).clamp(0, 1))
    np.testing.assert_allclose(giou.numpy(), GOLDEN["giou"], atol=1e-6)
    total, parts, per_sample = TrackingLoss()((score, size, offset), gt)
    assert parts["giou"] == pytest.approx(GOLDEN["giou_loss"], rel=1e-5)
    assert parts["l1"] == pytest.approx(GOLDEN["l1"], rel=1e-5)
    assert total.item() == pytest.approx(GOLDEN["total"], rel=1e-5)
    assert per_sample.shape == (3,)


@pytest.mark.parametrize("case", GOLDEN["giou_cases"])
def test_giou_cases(case):
    giou, iou = generalized_iou(torch.tensor([case["a"]], dtype=torch.float32),
                                torch.tensor([case["b"]], dtype=torch.float32))
    assert giou.item() == pytest.approx(case["giou"], abs=1e-6) and 0 <= iou.item() <= 1


def test_tracking_loss_gradient_reaches_size_and_offset():
    score, size, offset = (t.clone().requires_grad_(True) for t in golden_outputs())
    TrackingLoss()((score, size, offset), torch.tensor(GOLDEN["gt"]))[0].backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (score, size, offset))


def test_cox_masking_statistics():
    masking = CoxBlockMasking(128, block=16, ratio=0.3)
    cells = masking.sample_cells(4000, torch.Generator().manual_seed(0)).float()
    fraction = cells.flatten(1).mean(1)
    assert 0.22 < fraction.mean().item() < 0.28          # about a quarter of the 8x8 blocks
    assert 0.05 < fraction.std().item() < 0.10
    freq = cells.mean(0)
    centre, corners = freq[3:5, 3:5].mean().item(), freq[[0, 0, 7, 7], [0, 7, 0, 7]].mean().item()
    assert centre > 1.5 * corners                        # centre-weighted intensity
    mask = masking.sample(2, torch.Generator().manual_seed(1))
    assert mask.shape == (2, 1, 128, 128) and set(mask.unique().tolist()) <= {0.0, 1.0}
    blocks = mask[:, 0].unfold(1, 16, 16).unfold(2, 16, 16)  # constant inside each 16-px block
    assert torch.all(blocks.amax((-1, -2)) == blocks.amin((-1, -2)))
    again = masking.sample(2, torch.Generator().manual_seed(1))
    assert torch.equal(mask, again)


def test_orr_loss_template_tokens_and_stop_gradient():
    clean = torch.randn(2, 6, 4, requires_grad=True)
    masked = torch.randn(2, 6, 4, requires_grad=True)
    loss = OrrLoss()(clean, masked, num_template=2)
    expected = ((clean[:, :2] - masked[:, :2]) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert clean.grad[:, :2].abs().sum() > 0 and clean.grad[:, 2:].abs().sum() == 0
    assert masked.grad is None                           # released ORTrack: stop-gradient on the masked pass
    assert OrrLoss()(clean, clean.detach(), 2).item() == 0


def test_afkd_weights_follow_difficulty():
    loss = AFKDLoss(AFKDWeights(weight=2e-5, tau0=10, rho=10))
    giou = torch.tensor([0.8, 0.5, 0.2])
    c = loss.sample_weights(giou)
    assert torch.allclose(c, 2e-5 * (10 + 10 * (1 - giou - (1 - giou).mean())))
    assert c[2] > c[1] > c[0]                            # harder samples weigh more
    s = torch.randn(3, 5, 4)
    assert loss(s, s.clone(), giou).item() == 0


class _Net(torch.nn.Module):
    """A tiny backbone+head shaped like VitTracker for the distiller."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.backbone = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)
        torch.nn.init.constant_(self.backbone.weight, scale)

    def forward(self, template, search):
        return self.norm(self.backbone(template + search))


class _Objective:
    """Task loss 0 (so only AFKD can move the student), GIoU varying per sample, no ORR."""

    def task(self, model, template, search, boxes):
        from compressor.distill.tasks.tracking_train import TaskResult

        tokens = model(template, search)
        return TaskResult(tokens.sum() * 0, {}, torch.tensor([0.9, 0.1]), tokens)

    def orr(self, model, template, search, clean_tokens):
        return None


def test_afkd_student_receives_nonzero_gradient():
    torch.manual_seed(0)
    student, teacher = _Net(0.1), _Net(0.7)
    distiller = AFKDDistiller(student, teacher, _Objective(), [("norm", "norm")], AFKDLoss(AFKDWeights()))
    z, x = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    loss, parts = distiller(z, x, torch.zeros(2, 4))
    loss.backward()
    assert parts["afkd"] > 0
    assert student.backbone.weight.grad is not None and student.backbone.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_afkd_gradient_reaches_a_real_tracker_student():
    """Tracking losses weighted 0 and ORR off: every gradient the student gets comes from AFKD."""
    from compressor.distill.losses.tracking import TrackingLossWeights
    from compressor.distill.tasks.tracking_train import make_objective
    from compressor.models import create_model

    torch.manual_seed(0)
    student, teacher = create_model("ortrack_d_cpu").train(), create_model("ortrack_cpu")
    objective = make_objective(student, TrackingLossWeights(0.0, 0.0, 0.0), orr=False, orr_weight=0.0, ratio=0.3,
                               block=16, stop_gradient="masked", seed=0)
    distiller = AFKDDistiller(student, teacher, objective, [("backbone.norm", "backbone.norm")], AFKDLoss())
    boxes = torch.tensor([[0.4, 0.4, 0.2, 0.2], [0.1, 0.6, 0.3, 0.2]])
    loss, parts = distiller(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 128, 128), boxes)
    loss.backward()
    assert parts["afkd"] > 0 and loss.item() == pytest.approx(parts["afkd"], rel=1e-5)
    grads = [p.grad for p in student.backbone.blocks[0].parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in teacher.parameters())
