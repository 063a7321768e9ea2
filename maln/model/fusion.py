"""Cross-modal attention (inside AMDM) and the emotion classifier (stage 3)."""

from __future__ import annotations

import torch
from torch import nn


class CrossModalAttention(nn.Module):
    """Text attends to the audio-visual sequence, and each audio-visual modality attends to text.

    Queries are utterances; keys are the other side's utterances of the same dialogue, padding
    masked. The text->AV direction sees audio and visual utterances side by side (keys of length
    M_av * T), so it can weigh the two modalities; the AV->text outputs are averaged.
    Output: [B, T, 2W] = [text attended to AV ; AV attended to text]."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.text_to_av = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.av_to_text = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_text = nn.LayerNorm(width)
        self.norm_av = nn.LayerNorm(width)

    def forward(self, text: torch.Tensor, others: list, mask: torch.Tensor) -> torch.Tensor:
        av = torch.cat(others, dim=1)
        av_pad = (~mask).repeat(1, len(others))
        t, _ = self.text_to_av(text, av, av, key_padding_mask=av_pad, need_weights=False)
        t = self.norm_text(text + t)
        outs = [self.norm_av(o + self.av_to_text(o, text, text, key_padding_mask=~mask, need_weights=False)[0])
                for o in others]
        return torch.cat([t, torch.stack(outs).mean(0)], dim=-1)


class EmotionClassifier(nn.Module):
    """MLP from the fused utterance representation to one logit per emotion."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
