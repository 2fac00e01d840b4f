"""ORR (occlusion-robust representation, ORTrack CVPR 2025): template masking by a spatial Cox process and the
invariance loss between the template tokens of a clean and a masked backbone pass. Training only.

Masking, per sample, on the ``n x n`` grid of ``block``-pixel cells of the template (aligned with the patches):

1. base intensity ``p_c``: a centred Gaussian of standard deviation ``r = template_size / 2`` (ORTrack's
   ``sigma * r`` variance with sigma = r = 64 at 128 px), evaluated at the cell centres, normalised to sum 1
   (corner-to-centre density ratio about e^-1);
2. random intensity scale ``N ~ Poisson(int(n * n * ratio))`` (ratio 0.3): ``lambda_c = N * p_c`` (the doubly
   stochastic part that makes it a Cox process);
3. an inhomogeneous Poisson process on the grid by thinning: ``M ~ Poisson(max(lambda) * n * n)`` uniform
   candidate cells, each kept with probability ``lambda_c / max(lambda)``; kept cells are masked (duplicates
   merge). About 25% of the cells end up masked at 128 px (std ~7%), centre cells about twice as often.

The mask (1 keep, 0 masked) multiplies the normalised template, so a masked block is the mean colour.
``L_orr = MSE(F[:, :Nz], stopgrad(F_m[:, :Nz]))`` over the template tokens of the final (post-LayerNorm)
features; the released code stops the gradient on the masked branch, which is the default here.
"""
from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compressor.distill.losses.precision import float32_loss


class CoxBlockMasking:
    """Sample B x 1 x T x T keep-masks (1 keep, 0 masked) of ``block``-pixel cells by a spatial Cox process.

    >>> masks = CoxBlockMasking(128).sample(4, torch.Generator().manual_seed(0))
    >>> masks.shape
    torch.Size([4, 1, 128, 128])
    """

    def __init__(self, template_size: int, *, block: int = 16, ratio: float = 0.3, spread: float = 1.0) -> None:
        if template_size % block:
            raise ValueError(f"template size {template_size} is not a multiple of the block size {block}")
        self.template_size, self.block, self.ratio = template_size, block, ratio
        self.cells = template_size // block
        r = template_size / 2
        centers = (torch.arange(self.cells, dtype=torch.float64, device="cpu") + 0.5) * block - r
        sq = centers[:, None] ** 2 + centers[None, :] ** 2
        density = torch.exp(-sq / (2 * (spread * r) ** 2))
        self.base = (density / density.sum()).flatten()  # p_c, sums to 1

    def sample_cells(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """B x n x n booleans, True where a cell is masked; drawn on the CPU (``generator``'s device, the same
        masks whatever device trains; move them to the images' device)."""
        n_cells = self.cells * self.cells
        cpu = self.base.device
        scale = torch.poisson(torch.full((batch,), float(int(n_cells * self.ratio)), dtype=torch.float64,
                                         device=cpu), generator=generator)
        lam = scale[:, None] * self.base[None, :]                     # B x n^2 intensities
        lam_max = lam.max(dim=1).values
        counts = torch.poisson(lam_max * n_cells, generator=generator).long()
        masked = torch.zeros(batch, n_cells, dtype=torch.bool, device=cpu)
        for i in range(batch):
            m = int(counts[i])
            if m == 0:
                continue
            cells = torch.randint(0, n_cells, (m,), generator=generator, device=cpu)
            keep = torch.rand(m, generator=generator, dtype=torch.float64, device=cpu) < lam[i, cells] / lam_max[i]
            masked[i, cells[keep]] = True
        return masked.view(batch, self.cells, self.cells)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """B x 1 x T x T float keep-mask (nearest-upsampled cells)."""
        cells = (~self.sample_cells(batch, generator)).float()[:, None]
        return F.interpolate(cells, scale_factor=self.block, mode="nearest")


class StopGradient(str, enum.Enum):
    """Which branch of the ORR loss is a constant target."""

    MASKED = "masked"  # the released ORTrack code: clean features move toward the occluded ones
    CLEAN = "clean"
    NONE = "none"


class OrrLoss(nn.Module):
    """``forward(clean_tokens, masked_tokens, num_template) ->`` MSE over the first ``num_template`` tokens."""

    def __init__(self, stop_gradient: StopGradient | str = StopGradient.MASKED) -> None:
        super().__init__()
        self.stop_gradient = StopGradient(stop_gradient)

    @float32_loss
    def forward(self, clean: Tensor, masked: Tensor, num_template: int) -> Tensor:
        clean, masked = clean[:, :num_template], masked[:, :num_template]
        if self.stop_gradient is StopGradient.MASKED:
            masked = masked.detach()
        elif self.stop_gradient is StopGradient.CLEAN:
            clean = clean.detach()
        return F.mse_loss(clean, masked)
