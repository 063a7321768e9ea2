"""MALN, assembled as the paper describes it:

  features --context encoder--> context_m --+--> x_m = [context_m ; sclm_m]
  features --SCLM-------------> sclm_m -----+
  x_m --AMDM--> specific_m, common_m (adversary + orthogonality as losses)
  fused = [cross-modal attention(specific) ; sum_m common_m ; specific_1 ; ... ; specific_M]
  fused --emotion classifier--> logits; [specific_m ; common_m] --aux classifier_m--> aux logits

The fused representation combines commonality (the common sum) and diversity (the specific
features and their cross-modal interactions), as the paper and the authors' README state (their
last commit fed only the common features to the classifier). Single-modality variants skip AMDM:
x_m goes straight to the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from maln.model.amdm import AMDM
from maln.model.config import ModelConfig
from maln.model.context import ContextEncoder
from maln.model.fusion import CrossModalAttention, EmotionClassifier
from maln.model.sclm import SpeakerCharacteristics
from maln.model.variants import Variant


@dataclass
class MALNOutput:
    logits: torch.Tensor  # [B, T, C]
    aux_logits: dict = field(default_factory=dict)  # modality -> [B, T, C]
    specific: dict = field(default_factory=dict)  # modality -> [B, T, W]
    common: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LossWeights:
    unimodal: float
    adversarial: float
    orthogonality: float


class MALN(nn.Module):
    def __init__(self, dims: dict, n_classes: int, cfg: ModelConfig, variant: Variant, dataset: str = "the dataset"):
        super().__init__()
        self.modalities = variant.check(dims, dataset)
        self.variant = variant
        w = cfg.width
        self.context = nn.ModuleDict({
            m: ContextEncoder(dims[m], cfg.context_hidden[m], cfg.context_layers, w, cfg.dropout) for m in self.modalities
        })
        self.sclm = nn.ModuleDict({
            m: SpeakerCharacteristics(dims[m], w, cfg.sclm_heads, cfg.sclm_layers, cfg.sclm_feedforward, cfg.dropout)
            for m in self.modalities
        }) if variant.sclm else None
        in_width = 2 * w if variant.sclm else w
        self.multimodal = len(self.modalities) > 1
        if self.multimodal:
            self.amdm = AMDM(self.modalities, in_width, w, cfg.feature_dropout, variant.adversary,
                             cfg.discriminator_hidden, cfg.grl_scale, cfg.dropout)
            self.cross = CrossModalAttention(w, cfg.attention_heads, cfg.dropout)
            self.aux = nn.ModuleDict({m: nn.Linear(2 * w, n_classes) for m in self.modalities})
            fused_width = 2 * w + w + len(self.modalities) * w
        else:
            fused_width = in_width
        self.classifier = EmotionClassifier(fused_width, w, n_classes, cfg.head_dropout)
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        self.modality_dropout = cfg.modality_dropout if self.multimodal else 0.0

    def drop_inputs(self, features: dict, mask: torch.Tensor) -> dict:
        """Training only: dropout on the raw features, and whole modalities of a dialogue zeroed with
        probability modality_dropout (never all of them), so no path can carry the model alone."""
        features = {m: self.input_dropout(features[m]) for m in self.modalities}
        if self.training and self.modality_dropout > 0:
            keep = torch.rand(mask.shape[0], len(self.modalities), device=mask.device) >= self.modality_dropout
            keep |= ~keep.any(1, keepdim=True)
            features = {m: features[m] * keep[:, i, None, None].to(features[m].dtype) for i, m in enumerate(self.modalities)}
        return features

    def forward(self, features: dict, speakers: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> MALNOutput:
        features = self.drop_inputs(features, mask)
        x = {}
        for m in self.modalities:
            h = self.context[m](features[m], lengths)
            if self.sclm is not None:
                h = torch.cat([h, self.sclm[m](features[m], speakers, mask)], dim=-1)
            x[m] = h
        if not self.multimodal:
            return MALNOutput(self.classifier(x[self.modalities[0]]))
        specific, common = self.amdm(x)
        anchor, *others = self.modalities  # text when present
        cross = self.cross(specific[anchor], [specific[m] for m in others], mask)
        fused = torch.cat([cross, sum(common.values()), *(specific[m] for m in self.modalities)], dim=-1)
        aux = {m: self.aux[m](torch.cat([specific[m], common[m]], dim=-1)) for m in self.modalities}
        return MALNOutput(self.classifier(fused), aux, specific, common)

    def loss(self, out: MALNOutput, labels: torch.Tensor, mask: torch.Tensor, weights: LossWeights,
             class_weights: torch.Tensor | None = None) -> dict:
        """L = CE + w_uni * sum_m CE(aux_m) + w_adv * discriminator CE + w_orth * L_orth, every term
        averaged over the real utterances (labels are -100 on padding)."""

        def ce(logits):
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                   weight=class_weights, ignore_index=-100)

        terms = {"ce": ce(out.logits)}
        zero = terms["ce"].new_zeros(())
        terms["unimodal"] = sum((ce(a) for a in out.aux_logits.values()), zero)
        terms["adversarial"] = (self.amdm.adversarial_loss(out.specific, out.common, mask)
                                if self.multimodal and self.amdm.discriminator is not None else zero)
        terms["orthogonality"] = self.amdm.orthogonality(out.specific, out.common, mask) if self.multimodal else zero
        terms["loss"] = (terms["ce"] + weights.unimodal * terms["unimodal"]
                         + weights.adversarial * terms["adversarial"] + weights.orthogonality * terms["orthogonality"])
        return terms
