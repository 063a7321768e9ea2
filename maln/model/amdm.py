"""Stage 2 of MALN: the adversarial multimodal decomposition module (AMDM).

Each modality's representation is split into a *specific* part (its own, diverse information) and
a *common* part (a per-modality projection followed by one projection shared by all modalities).
A modality discriminator learns to tell modalities apart; it sees the specific features directly,
and the common features through a gradient-reversal layer, so the encoders learn common features
that do not give their modality away. An orthogonality loss keeps specific features of different
modalities, and each modality's common and specific features, apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


class GradientReversal(nn.Module):
    """Identity forward; multiplies the gradient by -scale backward."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Reverse.apply(x, self.scale)


class ModalityDiscriminator(nn.Module):
    """MLP from a feature to one logit per modality."""

    def __init__(self, width: int, hidden: int, n_modalities: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def orthogonality_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """||A^T B||_F^2 / n over the n real utterances, A and B centred over the utterances and
    L2-normalised per utterance. A^T B compares features with features across utterances (the
    soft subspace-orthogonality of domain separation networks): the loss is zero when no feature
    of A correlates with any feature of B. Padding rows are zeroed rather than dropped, so no
    data-dependent shape (and no host sync) is needed."""
    m = mask.reshape(-1, 1).to(a.dtype)
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    n = m.sum().clamp(min=1.0)
    a = F.normalize((a - (a * m).sum(0) / n) * m, dim=1)
    b = F.normalize((b - (b * m).sum(0) / n) * m, dim=1)
    return (a.T @ b).pow(2).sum() / n


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the real utterances: logits [..., C], target and mask [...]."""
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), reduction="none")
    m = mask.reshape(-1).to(loss.dtype)
    return (loss * m).sum() / m.sum().clamp(min=1.0)


class AMDM(nn.Module):
    def __init__(self, modalities, in_width: int, width: int, feature_dropout: float, adversary: bool,
                 discriminator_hidden: int, grl_scale: float, dropout: float):
        super().__init__()
        self.modalities = tuple(modalities)
        self.specific = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(in_width, width), nn.Tanh(), nn.Dropout(feature_dropout)) for m in modalities}
        )
        self.common_private = nn.ModuleDict({m: nn.Sequential(nn.Linear(in_width, width), nn.Tanh()) for m in modalities})
        self.common_shared = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Dropout(feature_dropout))
        self.discriminator = (
            ModalityDiscriminator(width, discriminator_hidden, len(modalities), dropout) if adversary else None
        )
        self.reverse = GradientReversal(grl_scale)

    def forward(self, x: dict) -> tuple[dict, dict]:
        specific = {m: self.specific[m](x[m]) for m in self.modalities}
        common = {m: self.common_shared(self.common_private[m](x[m])) for m in self.modalities}
        return specific, common

    def adversarial_loss(self, specific: dict, common: dict, mask: torch.Tensor) -> torch.Tensor:
        """Discriminator CE on specific features + on gradient-reversed common features."""
        s = torch.stack([specific[m] for m in self.modalities])  # [M, B, T, W]
        c = torch.stack([common[m] for m in self.modalities])
        target = torch.arange(len(self.modalities), device=s.device).view(-1, 1, 1).expand(s.shape[:3])
        masks = mask.expand(s.shape[:3])
        return (masked_cross_entropy(self.discriminator(s), target, masks)
                + masked_cross_entropy(self.discriminator(self.reverse(c)), target, masks))

    def orthogonality(self, specific: dict, common: dict, mask: torch.Tensor) -> torch.Tensor:
        mods = self.modalities
        pairs = [(specific[a], specific[b]) for i, a in enumerate(mods) for b in mods[i + 1:]]
        pairs += [(common[m], specific[m]) for m in mods]
        return sum(orthogonality_loss(a, b, mask) for a, b in pairs)
