"""Stage 2 of MALN: the adversarial multimodal decomposition module (AMDM).

Each modality's representation is split into a *specific* part (its own, diverse information) and
a *common* part (a per-modality projection followed by one projection shared by all modalities).
A modality discriminator learns to tell modalities apart from the specific features; on the common
features the encoders play against it, so that the common features stop giving their modality
away. How they play is `model.adversary`:

- `reversal` (the paper and the authors' code): one term, lambda_adv * sum_m [CE(D(specific_m)) +
  CE(D(GRL(common_m)))]. The discriminator learns only at lambda_adv's rate (0.01: it stays weak),
  and the encoders are rewarded for making it *wrong*, which a consistent relabelling of the
  modalities achieves as well as invariance does.
- `erasure`: no game: a closed-form linear eraser (LEACE) on the common features, fitted on the
  training batches as batch normalisation's statistics are, leaves every modality the same mean
  common feature, so no linear read-out tells them apart (`LinearEraser`).

Under `erasure` the discriminator still learns, from detached features (so it never moves the
encoders), as a running gauge of what it can read. Four other games this project tried (a scheduled
reversal, a confusion loss, a closed-form linear read-out, moment matching) left the code after
issue 13 chose erasure; their measurements are in benchmarks/results/ (README there). An
orthogonality loss keeps specific features of different modalities, and each modality's common and
specific features, apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maln.model.dropout import Dropout

ADVERSARIES = ("reversal", "erasure")


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by -scale backward."""
    return _Reverse.apply(x, scale)


class ModalityDiscriminator(nn.Module):
    """MLP from a feature to one logit per modality (the authors' layer order)."""

    def __init__(self, width: int, hidden: int, n_modalities: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), Dropout(dropout), nn.ReLU(), nn.Linear(hidden, n_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def orthogonality_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared correlation between the features of A and those of B over the batch's real
    utterances: every feature is centred and scaled to unit norm over the utterances, so A^T B holds
    Pearson correlations and the loss lies in [0, 1] whatever the batch size (the authors' ||A B^T||^2
    and the unnormalised ||A^T B||^2 grow with the number of utterances, so a weight tuned on one
    batch size does not transfer to another). Zero when no feature of A correlates with any feature
    of B. Padding rows are zeroed rather than dropped: no data-dependent shape, no host sync."""
    m = mask.reshape(-1, 1).to(a.dtype)
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    n = m.sum().clamp(min=1.0)
    a = F.normalize((a - (a * m).sum(0) / n) * m, dim=0)
    b = F.normalize((b - (b * m).sum(0) / n) * m, dim=0)
    return (a.T @ b).pow(2).mean()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the real utterances: logits [..., C], target and mask [...]; a float
    target [..., C] is a distribution."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    target = target.reshape(-1, logits.shape[-1]) if target.is_floating_point() else target.reshape(-1)
    loss = F.cross_entropy(flat, target, reduction="none")
    m = mask.reshape(-1).to(loss.dtype)
    return (loss * m).sum() / m.sum().clamp(min=1.0)


class LinearEraser(nn.Module):
    """LEACE (Belrose et al. 2023, "LEACE: perfect linear concept erasure in closed form"): the
    affine map, least-squares closest to the identity, after which every modality's mean feature is
    the pooled mean, so that no linear classifier predicts the modality better than a constant
    one: x -> x - W^+ P W (x - mean), W the whitening by the pooled covariance, P the orthogonal
    projection onto the whitened gaps of the modalities' means (M - 1 directions). It is the linear
    adversarial game of the paper solved in closed form, against every linear discriminator at once.

    Its statistics are kept as batch normalisation keeps its own: in training, exponential moving
    averages over the training batches; in evaluation, those of the whole training split computed
    in evaluation mode (`begin_fit`, evaluation passes, `end_fit`; the training loop refits after
    every epoch). Dropout upstream shifts the features' means between the two modes, differently
    per modality, so statistics from one mode leave the other's modalities apart."""

    def __init__(self, n_modalities: int, width: int, momentum: float = 0.9, eps: float = 1e-6):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        f64 = {"dtype": torch.float64}
        self.register_buffer("ema_means", torch.zeros(n_modalities, width, **f64))
        self.register_buffer("ema_cov", torch.zeros(width, width, **f64))
        self.register_buffer("ema_weight", torch.zeros((), **f64))   # 1 - momentum^steps: the bias correction
        self.register_buffer("means", torch.zeros(n_modalities, width, **f64))
        self.register_buffer("cov", torch.zeros(width, width, **f64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._fitting, self._sums = False, None

    @staticmethod
    def _moments(x: torch.Tensor, m: torch.Tensor) -> tuple:
        """(sum of x per modality [M, W], pooled sum of x x^T [W, W], count per modality [M, 1])."""
        flat = (x * m).reshape(-1, x.shape[-1])
        return (x * m).sum((1, 2)), flat.T @ flat, m.sum((1, 2))

    @staticmethod
    def _statistics(sums: torch.Tensor, products: torch.Tensor, counts: torch.Tensor) -> tuple:
        means = sums / counts.clamp(min=1.0)
        centre = sums.sum(0) / counts.sum().clamp(min=1.0)
        return means, products / counts.sum().clamp(min=1.0) - torch.outer(centre, centre)

    def begin_fit(self) -> None:
        self._fitting, self._sums = True, None

    def end_fit(self) -> None:
        if self._sums is not None:
            means, cov = self._statistics(*self._sums)
            self.means.copy_(means)
            self.cov.copy_(cov)
            self.fitted.fill_(True)
        self._fitting, self._sums = False, None

    def _eraser(self, means: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, vectors = torch.linalg.eigh(cov)
        values = values.clamp(min=self.eps * values.mean().clamp(min=1e-30))
        whiten = vectors @ torch.diag(values.rsqrt()) @ vectors.T
        unwhiten = vectors @ torch.diag(values.sqrt()) @ vectors.T
        centre = means.mean(0)  # every modality has every utterance: the pooled mean
        basis = torch.linalg.svd(whiten @ (means - centre).T, full_matrices=False)[0][:, :len(means) - 1]
        return centre, unwhiten @ basis @ basis.T @ whiten

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [M, B, T, W] with mask [M, B, T] -> x erased (unchanged while being fitted)."""
        m = mask[..., None].to(torch.float64)
        with torch.no_grad():
            if self.training:
                means, cov = self._statistics(*self._moments(x.detach().double(), m))
                beta = self.momentum
                self.ema_means.mul_(beta).add_((1 - beta) * means)
                self.ema_cov.mul_(beta).add_((1 - beta) * cov)
                self.ema_weight.mul_(beta).add_(1 - beta)
                means, cov = self.ema_means / self.ema_weight, self.ema_cov / self.ema_weight
            elif self._fitting:  # passes features through unchanged while it sums their moments
                moments = self._moments(x.detach().double(), m)
                self._sums = moments if self._sums is None else tuple(a + b for a, b in zip(self._sums, moments))
                return x
            elif not self.fitted:
                return x
            else:
                means, cov = self.means, self.cov
            centre, eraser = self._eraser(means, cov)
        return x - ((x.double() - centre) @ eraser.T).to(x.dtype) * m.to(x.dtype)


def _standardize(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [..., W] minus the mean, over the std, of each feature over the real utterances."""
    m = mask[..., None].to(x.dtype)
    n = m.sum().clamp(min=1.0)
    mean = (x * m).sum(tuple(range(x.dim() - 1))) / n
    var = (((x - mean) * m) ** 2).sum(tuple(range(x.dim() - 1))) / n
    return (x - mean) / (var + 1e-5).sqrt()


class AMDM(nn.Module):
    def __init__(self, in_widths: dict, width: int, dropout: float, common_dropout: float, adversary: str | None,
                 discriminator_hidden: int, grl_scale: float, linear_specific: bool = False):
        super().__init__()
        self.modalities = tuple(in_widths)
        # On a modality's standardised input features (model.amdm_reads: features) the specific
        # encoder is a linear projection: a tanh there saturated on the large shared factors that the
        # classifier has to cancel across modalities (synthetic-meld-nuisance fusion head test WF1
        # 57.2 -> 59.8 over 3 seeds, docs/findings.md, 2026-12-03)
        act = nn.Identity if linear_specific else nn.Tanh
        self.specific = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(d, width), Dropout(dropout), act()) for m, d in in_widths.items()})
        self.common_private = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(d, width), Dropout(common_dropout), nn.Tanh()) for m, d in in_widths.items()})
        self.common_shared = nn.Sequential(nn.Linear(width, width), Dropout(common_dropout), nn.Tanh())
        if adversary is not None and adversary not in ADVERSARIES:
            raise ValueError(f"unknown adversary {adversary!r}; known: {', '.join(ADVERSARIES)}")
        self.adversary = adversary
        self.discriminator = (ModalityDiscriminator(width, discriminator_hidden, len(in_widths), dropout)
                              if adversary else None)
        self.grl_scale = grl_scale
        self.eraser = LinearEraser(len(in_widths), width) if adversary == "erasure" else None

    def forward(self, x: dict, mask: torch.Tensor) -> tuple[dict, dict]:
        specific = {m: self.specific[m](x[m]) for m in self.modalities}
        common = {m: self.common_shared(self.common_private[m](x[m])) for m in self.modalities}
        if self.eraser is not None:
            erased = self.eraser(torch.stack([common[m] for m in self.modalities]), mask.expand(len(common), *mask.shape))
            common = dict(zip(self.modalities, erased.unbind(0)))
        return specific, common

    def adversarial_loss(self, specific: dict, common: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoders' term, discriminator's own term): the loss adds lambda_adv times the first and
        the second as it is. Every term is summed over modalities, as in the authors' code (a mean
        would divide lambda_adv by M)."""
        n = len(self.modalities)
        s = torch.stack([specific[m] for m in self.modalities])  # [M, B, T, W]
        c = torch.stack([common[m] for m in self.modalities])
        target = torch.arange(n, device=s.device).view(-1, 1, 1).expand(s.shape[:3])
        masks = mask.expand(s.shape[:3])

        def ce(x):  # summed over modalities: M x the mean over all of them
            return n * masked_cross_entropy(self.discriminator(x), target, masks)

        if self.adversary == "reversal":
            return ce(s) + ce(reverse_gradient(c, self.grl_scale)), c.new_zeros(())
        # erasure: the eraser has done the encoders' part already. The discriminator sees each kind
        # of feature standardised over the batch's real utterances (all modalities pooled), as a
        # fresh linear probe does: unscaled, the common features of different modalities differ
        # along directions of small variance that it never picked up.
        return c.new_zeros(()), ce(_standardize(s, masks).detach()) + ce(_standardize(c, masks).detach())

    def orthogonality(self, specific: dict, common: dict, mask: torch.Tensor) -> torch.Tensor:
        mods = self.modalities
        pairs = [(specific[a], specific[b]) for i, a in enumerate(mods) for b in mods[i + 1:]]
        pairs += [(common[m], specific[m]) for m in mods]
        return sum(orthogonality_loss(a, b, mask) for a, b in pairs)
