"""Cross-modal attention (inside AMDM) and the classifiers (stage 3)."""

from __future__ import annotations

import torch
from torch import nn

from maln.model.dropout import Dropout


class CrossModalAttention(nn.Module):
    """A Transformer block across modalities, as in the authors' code: text attends to the
    audio-visual sequence and each audio-visual modality attends to text (multi-head, padding
    masked); the two results, side by side, then pass a Transformer encoder layer (self-attention
    over the dialogue's utterances and a feed-forward layer, each with a residual and a norm).

    The text->AV direction sees audio and visual utterances side by side (keys of length M_av * T),
    so it can weigh the two modalities; the AV->text outputs are averaged.
    Output: [B, T, 2W], times a learned gate that starts at 0."""

    def __init__(self, width: int, heads: int, dropout: float, gate: bool = True):
        super().__init__()
        self.text_to_av = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.av_to_text = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_text = nn.LayerNorm(width)
        self.norm_av = nn.LayerNorm(width)
        self.block = nn.TransformerEncoderLayer(2 * width, heads, 2 * width, dropout, batch_first=True)
        # Zero-initialised scale on the block's output (as in ReZero / SkipInit): the block's
        # layer-normalised output starts as noise of unit size beside the tanh-bounded specific and
        # common features, and with it the whole model sat at the majority class for the first ~5
        # of 20 epochs; gated, the classifier starts from the AMDM features and opens the gate as
        # the block becomes useful (docs/deviations.md).
        self.gate = nn.Parameter(torch.zeros(())) if gate else None

    def forward(self, text: torch.Tensor, others: list, mask: torch.Tensor) -> torch.Tensor:
        av = torch.cat(others, dim=1)
        av_pad = (~mask).repeat(1, len(others))
        t, _ = self.text_to_av(text, av, av, key_padding_mask=av_pad, need_weights=False)
        t = self.norm_text(text + t)
        outs = [self.norm_av(o + self.av_to_text(o, text, text, key_padding_mask=~mask, need_weights=False)[0])
                for o in others]
        out = self.block(torch.cat([t, torch.stack(outs).mean(0)], dim=-1), src_key_padding_mask=~mask)
        return out if self.gate is None else self.gate * out


class EmotionClassifier(nn.Module):
    """MLP to one logit per emotion: the fused representation's classifier and, on each modality's
    common features, the auxiliary (semantic) classifiers."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
