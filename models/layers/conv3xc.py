"""Conv3XC: SPAN's re-parameterisable 3x3 convolution (training branches fused into one conv).

Training form: ``sk(x) + c(b(a(pad(x, 1))))`` with ``sk`` a 1x1 skip, ``a`` a 1x1 expand to
``gain * c_in`` channels, ``b`` a 3x3 conv with padding 0 and ``c`` a 1x1 projection; every conv
has a bias and nothing non-linear sits between them. Because the input is zero-padded *before*
the expand, border taps see ``a``'s bias exactly as the fused conv's bias term assumes, so the
fusion into one padded 3x3 conv (``eval_conv``) is exact, borders included.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Conv3XC(nn.Module):
    """A 3x3 conv that trains as a linear multi-branch block and runs as one conv.

    >>> conv = Conv3XC(3, 8)
    >>> x = torch.rand(1, 3, 10, 12)
    >>> ref = conv(x); conv.fuse(); bool(torch.allclose(conv(x), ref, atol=1e-5))
    True
    """

    def __init__(self, c_in: int, c_out: int, *, gain: int = 2, fused: bool = False) -> None:
        super().__init__()
        self.c_in, self.c_out, self.gain = c_in, c_out, gain
        if fused:
            self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        else:
            self.sk = nn.Conv2d(c_in, c_out, 1)
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_in * gain, 1),
                nn.Conv2d(c_in * gain, c_out * gain, 3, padding=0),
                nn.Conv2d(c_out * gain, c_out, 1),
            )

    @property
    def fused(self) -> bool:
        """True once the branches have been replaced by the single ``eval_conv``."""
        return "eval_conv" in self._modules

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.eval_conv(x)
        return self.sk(x) + self.conv(F.pad(x, (1, 1, 1, 1)))

    @torch.no_grad()
    def fused_kernel(self) -> tuple[Tensor, Tensor]:
        """The (weight, bias) of the single 3x3 conv equal to the training branches.

        Composed in float64 and cast back, so the fused conv matches to float32 rounding.
        """
        if self.fused:
            return self.eval_conv.weight.detach().clone(), self.eval_conv.bias.detach().clone()
        a, b, c = (m for m in self.conv)
        dtype = a.weight.dtype
        wa, ba = a.weight.double()[:, :, 0, 0], a.bias.double()
        wb, bb = b.weight.double(), b.bias.double()
        wc, bc = c.weight.double()[:, :, 0, 0], c.bias.double()
        weight = torch.einsum("om,mnhw,ni->oihw", wc, wb, wa)
        weight = weight + F.pad(self.sk.weight.double(), (1, 1, 1, 1))
        inner_bias = torch.einsum("mnhw,n->m", wb, ba) + bb
        bias = wc @ inner_bias + bc + self.sk.bias.double()
        return weight.to(dtype), bias.to(dtype)

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the training branches by ``eval_conv`` in place (no-op when already fused)."""
        if self.fused:
            return
        weight, bias = self.fused_kernel()
        eval_conv = nn.Conv2d(self.c_in, self.c_out, 3, padding=1).to(weight.device, weight.dtype)
        eval_conv.weight.copy_(weight)
        eval_conv.bias.copy_(bias)
        del self.sk, self.conv
        self.eval_conv = eval_conv

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, gain={self.gain}, fused={self.fused}"
