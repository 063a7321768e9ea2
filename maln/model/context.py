"""Per-modality context encoders: a bidirectional GRU over the dialogue, then ReLU(Linear(2H -> H))
with dropout, as in the authors' code: the output keeps the GRU's H dimensions (text 1024 at the
paper's sizes); the AMDM's encoders bring it to the model width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from maln.model.dropout import Dropout
from maln.model.fast_gru import bidirectional_gru


class ContextEncoder(nn.Module):
    # On the CPU the GRU runs through maln.model.fast_gru (same weights, same results to rounding):
    # its backward pass is faster, and so is its forward at the paper's sizes (a validation pass at
    # the IEMOCAP shape 0.57 against nn.GRU's 0.63 s, one process); nn.GRU (cuDNN) on CUDA. False forces nn.GRU
    # everywhere (the benchmark's and the equivalence test's plain path).
    fused_cpu_gru = True

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(2 * hidden, hidden)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Packed, so the backward direction starts at each dialogue's own last utterance and
        # padding never enters the recurrence. lengths: int64 on the CPU.
        if x.device.type == "cpu" and self.fused_cpu_gru:
            h = bidirectional_gru(self.gru, x, lengths)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = self.gru(packed)
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.dropout(F.relu(self.out(h)))
