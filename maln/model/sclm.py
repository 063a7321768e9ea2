"""Stage 1 of MALN: the speaker-characteristic learning module (SCLM).

For each modality a small Transformer encoder (learned positions, as in the authors' code) reads
the whole dialogue: in the paper's figure the context encoder's output, which is what it reads here
by default (`reads: features` gives the raw features, as the authors' code did). Utterance i,
spoken by p, then gets two pooled vectors: the mean over p's own utterances (what characterises p)
and the mean over the other parties' utterances (the context p responds to). Pools are masked, so
padding never enters, and defined by "same speaker or not", so any number of parties works and
renaming the parties changes nothing. (The authors' code instead gave party B a "speaker" vector and
party A a "listener" vector, each the CLS token of a Transformer over the whole dialogue, two parties
only, padding included; `pool: dialogue` stands for it: one pool over the whole dialogue.)
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(select: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """select: [B, T, T] bool (query i pools keys j), h: [B, T, D] -> [B, T, D]; empty pools give 0."""
    weights = select.to(h.dtype)
    return (weights @ h) / weights.sum(-1, keepdim=True).clamp(min=1.0)


class SpeakerCharacteristics(nn.Module):
    def __init__(self, in_dim: int, width: int, heads: int, layers: int, feedforward: int, dropout: float,
                 max_positions: int, pool: str = "speaker"):
        super().__init__()
        self.project = nn.Linear(in_dim, width)
        self.positions = nn.Embedding(max_positions, width)
        self.norm = nn.LayerNorm(width)
        layer = nn.TransformerEncoderLayer(width, heads, feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(2 * width, width)
        self.pool = pool

    def forward(self, x: torch.Tensor, speakers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: [B, T, in_dim], speakers: [B, T] party ids, mask: [B, T] True on real utterances
        steps = torch.arange(x.shape[1], device=x.device)
        h = self.norm(self.project(x) + self.positions(steps))
        h = self.encoder(h, src_key_padding_mask=~mask)
        keys = mask[:, None, :]
        if self.pool == "dialogue":
            whole = masked_mean(keys.expand(-1, x.shape[1], -1), h)
            return self.out(torch.cat([whole, whole], dim=-1))
        same = speakers[:, :, None] == speakers[:, None, :]
        own = masked_mean(same & keys, h)  # the speaker's characteristics
        others = masked_mean(~same & keys, h)  # what the other parties said
        return self.out(torch.cat([own, others], dim=-1))
