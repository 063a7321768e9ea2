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
    common features, the auxiliary (semantic) classifiers. With `experts` (model.fusion_experts, the fusion
    classifier only) a mixture of linear experts (LinearExperts) on the same input adds its log-probabilities to
    the logits: the prediction is the product of the two, and the mixture starts near uniform, adding nothing."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float, experts: int = 0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, n_classes))
        self.experts = LinearExperts(in_dim, n_classes, experts) if experts else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return logits if self.experts is None else logits + self.experts(x)


class LinearExperts(nn.Module):
    """A mixture of K linear experts: log p(y|x) = log sum_k g_k(x) softmax(W_k x + b_k)_y, the gate
    g = softmax(G x + c) reading the same input. Where a latent switches how a modality shows the emotion (the
    interaction kind), the gate can read the latent and each expert one mode linearly; one hidden layer alone read
    such a dataset at 60-62 validation WF1 where a context-free mixture of four read 72 (docs/findings.md)."""

    def __init__(self, in_dim: int, n_classes: int, experts: int):
        super().__init__()
        self.shape = (experts, n_classes)
        self.experts = nn.Linear(in_dim, experts * n_classes)
        self.gate = nn.Linear(in_dim, experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        each = torch.log_softmax(self.experts(x).unflatten(-1, self.shape), dim=-1)
        return torch.logsumexp(each + torch.log_softmax(self.gate(x), dim=-1)[..., None], dim=-2)
