"""Tracking losses of the OSTrack/ORTrack center head: focal loss on a Gaussian heatmap, GIoU and L1 on boxes.

``total = focal * L_focal(score, G(gt)) + giou * mean(1 - GIoU(pred, gt)) + l1 * L1(pred, gt)``, with boxes
as ``(x1, y1, x2, y2)`` normalised to the search crop (ground truth clamped to [0, 1]) and the predicted box
read at the score map's peak (not at the ground-truth peak), as OSTrack does.

- ``G(gt)``: on the ``g x g`` grid, a Gaussian of standard deviation ``(2r + 1) / 6`` around the rounded
  box centre, ``r`` being CornerNet's radius for a minimum overlap of 0.7 of the box in cells.
- Focal loss (CenterNet, alpha 2, beta 4), normalised by the number of cells where ``G == 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressor.distill.losses.precision import float32_loss


def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float = 0.7) -> Tensor:
    """CornerNet's radius: the smallest of its three corner-shift bounds for IoU >= ``min_overlap``."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def center_heatmap(boxes: Tensor, grid: int, min_overlap: float = 0.7) -> Tensor:
    """B x 1 x g x g Gaussian targets for normalised ``(x, y, w, h)`` boxes (peak 1 at the rounded centre)."""
    cells = boxes.detach().float() * grid
    centers = (cells[:, :2] + cells[:, 2:] / 2).round()
    radius = gaussian_radius(cells[:, 3], cells[:, 2], min_overlap).clamp(min=0).floor()
    sigma = (2 * radius + 1) / 6
    coords = torch.arange(grid, dtype=torch.float32, device=boxes.device)
    dx = coords[None, :] - centers[:, 0:1]
    dy = coords[None, :] - centers[:, 1:2]
    inside_x, inside_y = dx.abs() <= radius[:, None], dy.abs() <= radius[:, None]
    gx = torch.exp(-dx**2 / (2 * sigma[:, None] ** 2)) * inside_x
    gy = torch.exp(-dy**2 / (2 * sigma[:, None] ** 2)) * inside_y
    heat = gy[:, :, None] * gx[:, None, :]
    return heat.unsqueeze(1)


@float32_loss
def focal_loss(pred: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0, eps: float = 1e-4) -> Tensor:
    """CenterNet's penalty-reduced focal loss; ``pred`` in (0, 1), positives where ``target == 1``. ``pred`` is
    bounded to ``[eps, 1 - eps]`` in float32 first, as the score head does (a score computed in bf16 rounds
    ``1 - 1e-4`` up to 1, whose ``log(1 - p)`` is -inf; a float32 score already in range is unchanged)."""
    pred = pred.clamp(eps, 1 - eps)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg
    num_pos = pos.sum()
    total = pos_loss.sum() + neg_loss.sum()
    return -total / num_pos if num_pos > 0 else -total


class FocalLoss(nn.Module):
    """:func:`focal_loss` as a module ``forward(score_map, heatmap)``."""

    def __init__(self, alpha: float = 2.0, beta: float = 4.0) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return focal_loss(pred, target, self.alpha, self.beta)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    return torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)


def generalized_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> tuple[Tensor, Tensor]:
    """Element-wise (GIoU, IoU) of ``(x1, y1, x2, y2)`` boxes ``a`` and ``b`` (shape ... x 4)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / (hull + eps), iou


class GIoULoss(nn.Module):
    """``mean(1 - GIoU)`` of ``(x1, y1, x2, y2)`` boxes."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return (1 - generalized_iou(pred, target)[0]).mean()


def decode_boxes(score: Tensor, size: Tensor, offset: Tensor) -> Tensor:
    """B x 4 ``(cx, cy, w, h)`` in [0, 1] read at each score map's peak (gradient flows to size and offset)."""
    b, _, g, _ = score.shape
    idx = score.flatten(1).argmax(dim=1, keepdim=True)
    row, col = idx // g, idx % g
    size_at = size.flatten(2).gather(2, idx[:, None, :].expand(-1, 2, -1)).squeeze(-1)
    offset_at = offset.flatten(2).gather(2, idx[:, None, :].expand(-1, 2, -1)).squeeze(-1)
    cx = (col.squeeze(1).float() + offset_at[:, 0]) / g
    cy = (row.squeeze(1).float() + offset_at[:, 1]) / g
    return torch.stack([cx, cy, size_at[:, 0], size_at[:, 1]], dim=1)


@dataclass(frozen=True)
class TrackingLossWeights:
    """ORTrack's weights: ``1 * focal + 2 * GIoU + 5 * L1``."""

    focal: float = 1.0
    giou: float = 2.0
    l1: float = 5.0


class TrackingLoss(nn.Module):
    """``forward((score, size, offset), gt_xywh) -> (total, parts, giou_per_sample)``."""

    def __init__(self, weights: TrackingLossWeights = TrackingLossWeights()) -> None:
        super().__init__()
        self.weights = weights
        self.focal = FocalLoss()

    @float32_loss
    def forward(self, outputs: tuple[Tensor, Tensor, Tensor], gt: Tensor) -> tuple[Tensor, dict[str, float], Tensor]:
        score, size, offset = outputs
        pred = cxcywh_to_xyxy(decode_boxes(score, size, offset))
        target = xywh_to_xyxy(gt).clamp(0, 1)
        giou, _ = generalized_iou(pred, target)
        giou_loss = (1 - giou).mean()
        l1 = F.l1_loss(pred, target)
        focal = self.focal(score, center_heatmap(gt, score.shape[-1]))
        w = self.weights
        total = w.focal * focal + w.giou * giou_loss + w.l1 * l1
        return total, {"focal": focal.item(), "giou": giou_loss.item(), "l1": l1.item()}, giou
