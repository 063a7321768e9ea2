"""A speed kernel, not a stage of the paper: dropout whose mask is drawn faster on the CPU.

torch's CPU dropout draws its mask with bernoulli_, about 3x slower than uniform_ and a comparison
(46 against 14 ms on a [1920, 2048] batch of text GRU outputs, 2 threads): at the paper's sizes it
took 6 % of a training epoch. Same distribution (keep with probability 1 - p, scale by 1 / (1 - p)),
another random stream; on CUDA torch's fused kernel is used as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    # F.dropout where it is fast (CUDA), trivial, or checks p (outside (0, 1)); and for low-precision
    # inputs, whose rand_like would draw the mask on a coarse grid (bf16: keep rate 0.6992 for 0.7)
    if not training or not 0 < p < 1 or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return F.dropout(x, p, training)
    return x * torch.rand_like(x).ge_(p).mul_(1 / (1 - p))


class Dropout(nn.Dropout):
    """nn.Dropout (same arguments, no state) through dropout() above; not in place."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        if inplace:
            raise ValueError("maln.model.dropout.Dropout does not work in place")
        super().__init__(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
