"""MALN, assembled as the paper describes it:

  features --standardise--> x_m --context encoder--> context_m --SCLM--> sclm_m
  h_m = [context_m ; sclm_m]                       (H~_m, the AMDM's input)
  h_m --AMDM--> specific_m, common_m               (adversary + orthogonality as losses)
  fused = [cross-modal block(specific) ; sum_m common_m ; specific_1 ; ... ; specific_M]
  fused --emotion classifier--> logits;  common_m --auxiliary classifier_m--> aux logits

The fused representation combines commonality (the common sum) and diversity (the specific
features and their cross-modal interactions), as the paper's figure and the authors' README state;
`fusion: common` gives what the authors' last commit did instead (the cross-modal block on the
common features, no specific features in the classifier). Single-modality variants skip AMDM: h_m
goes straight to the classifier.

This project ships `amdm_reads: features` with `training: branchwise`: AMDM reads x_m instead of
h_m, so the fusion path (AMDM, the cross-modal block, the emotion classifier) has encoders of its
own beside the modality branches (x_m -> h_m -> auxiliary classifier_m), and the prediction is the
Bayes combination of all these classifiers (docs/deviations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maln.model.amdm import AMDM
from maln.model.config import ModelConfig
from maln.model.context import ContextEncoder
from maln.model.dropout import Dropout
from maln.model.fusion import CrossModalAttention, EmotionClassifier
from maln.model.sclm import SpeakerCharacteristics
from maln.model.variants import Variant


@dataclass
class MALNOutput:
    logits: torch.Tensor  # [B, T, C]: the prediction (in evaluation, a model's combination of heads if it has one)
    aux_logits: dict = field(default_factory=dict)  # modality -> [B, T, C] (its branch's classifier)
    specific: dict = field(default_factory=dict)  # modality -> [B, T, W]
    common: dict = field(default_factory=dict)
    fused_logits: torch.Tensor | None = None  # the fusion classifier's own logits
    linear_logits: dict = field(default_factory=dict)  # model.linear_head, in evaluation: head -> its regression's


@dataclass(frozen=True)
class LossWeights:
    unimodal: float
    adversarial: float
    orthogonality: float


class Standardize(nn.Module):
    """(x - mean) / std per feature, with the training split's statistics (set from the store by
    `MALN.set_statistics`, saved with the weights, so a checkpoint standardises new data the same way)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ChainDecoder(nn.Module):
    """What maln.chain needs to decode this model's predictions, saved with its weights: the training
    split's emotion transitions and class prior, and the (mix, temperature) chosen on validation
    (inference.fit_prediction; (0, 1), no decoding, until then), one row per decoded posterior: the
    prediction's, or for a model with a combination each head's (MALN.head_names), decoded before
    they are combined."""

    def __init__(self, n_classes: int, n_decoded: int = 1):
        super().__init__()
        self.register_buffer("transition", torch.full((n_classes, n_classes), 1.0 / n_classes))
        self.register_buffer("prior", torch.full((n_classes,), 1.0 / n_classes))
        self.register_buffer("setting", torch.tensor([[0.0, 1.0]] * n_decoded))


class MALN(nn.Module):
    def __init__(self, dims: dict, n_classes: int, cfg: ModelConfig, variant: Variant, dataset: str = "the dataset"):
        super().__init__()
        self.modalities = variant.check(dims, dataset)
        self.variant = variant
        self.fusion = cfg.fusion
        w = cfg.width
        hidden = {m: cfg.context_hidden[m] for m in self.modalities}
        self.standardize = nn.ModuleDict({m: Standardize(dims[m]) for m in self.modalities}) if cfg.standardize else None
        self.input_dropout = Dropout(cfg.input_dropout)
        # model.branch_input_dropout: the branches' own input dropout (no module draws at 0), or None
        p = cfg.branch_input_dropout
        self.branch_dropout = None if p is None else Dropout(p) if p > 0 else nn.Identity()
        self.input_noise = cfg.input_noise
        self.context = nn.ModuleDict({
            m: ContextEncoder(dims[m], hidden[m], cfg.context_layers, cfg.context_dropout) for m in self.modalities
        })
        self.sclm_reads_context = cfg.sclm_reads == "context"
        self.sclm = nn.ModuleDict({
            m: SpeakerCharacteristics(hidden[m] if self.sclm_reads_context else dims[m], w, cfg.sclm_heads,
                                      cfg.sclm_layers, cfg.sclm_feedforward, cfg.dropout, cfg.sclm_max_positions,
                                      cfg.sclm_pool)
            for m in self.modalities
        }) if variant.sclm else None
        in_widths = {m: hidden[m] + (w if variant.sclm else 0) for m in self.modalities}
        self.multimodal = len(self.modalities) > 1
        # model.linear_head: the study's regressions on the same inputs (logreg_all, each logreg_X; fitted by
        # maln/teacher.py, never trained here) join the prediction as heads weighed on validation. The fusion
        # classifier reads a linear Bayes rule (a shared nuisance) less well than the regression; text alone
        # splits indistinguishable valence pairs less than WF1 rewards (docs/findings.md)
        self.linear_inputs = cfg.linear_inputs(self.modalities)
        self.linear_head, self.branchwise = bool(self.linear_inputs), False
        self.modality_dropout = cfg.modality_dropout if self.multimodal else 0.0
        if self.multimodal:
            # amdm_reads: branches (the paper's H~_m, detached under branchwise training) or features
            # (the standardised inputs: the fusion path then has encoders of its own, which only the
            # fusion's losses train, so it can keep what no single branch needs, e.g. a latent that
            # changes how another modality expresses the emotion)
            self.amdm_reads_features = cfg.amdm_reads == "features"
            amdm_in = {m: dims[m] for m in self.modalities} if self.amdm_reads_features else in_widths
            self.amdm = AMDM(amdm_in, w, cfg.dropout, cfg.common_dropout, cfg.adversary if variant.adversary else None,
                             cfg.discriminator_hidden, cfg.grl_scale, linear_specific=self.amdm_reads_features)
            self.cross = CrossModalAttention(w, cfg.attention_heads, cfg.fusion_dropout, cfg.cross_gate)
            # joint (the paper's): the auxiliary classifiers read each modality's common features and
            # everything learns from every loss. branchwise: each modality's branch (context encoder,
            # SCLM and its own classifier, the same three stages as its single-modality variant)
            # learns from its classifier alone; AMDM, the cross-modal block and the fusion classifier
            # learn on top of the branches, which their losses do not move; and the prediction
            # combines the fusion classifier with the modalities' by Bayes' rule, with weights chosen
            # on the validation split (`combination`, set by the training loop).
            self.branchwise = cfg.training == "branchwise"
            self.aux = nn.ModuleDict({m: EmotionClassifier(in_widths[m] if self.branchwise else w, w, n_classes,
                                                           cfg.fusion_dropout) for m in self.modalities})
            fused_width = 2 * w + w + (len(self.modalities) * w if self.fusion == "specific" else 0)
        else:
            fused_width = in_widths[self.modalities[0]]
        self.classifier = EmotionClassifier(fused_width, w, n_classes, cfg.fusion_dropout, cfg.fusion_experts * self.multimodal)
        # a prediction combined from several heads, weighed on validation: a branchwise model's, or a
        # single modality's with the linear head
        self.combined = self.branchwise or self.linear_head
        for name, reads in self.linear_inputs.items():
            self.register_buffer(f"{name}_weight", torch.zeros(n_classes, sum(dims[m] for m in reads)))
            self.register_buffer(f"{name}_bias", torch.zeros(n_classes))
        if self.combined:
            self.register_buffer("combination", torch.zeros(len(self.head_names)))
            self.combination[0] = 1.0
            self.register_buffer("log_prior", torch.zeros(n_classes))
        # model.decode: chain: predictions decoded by the emotion chain (maln/chain.py, inference.predict)
        self.decoder = ChainDecoder(n_classes, len(self.head_names) if self.combined else 1) \
            if cfg.decode == "chain" else None

    @property
    def head_names(self) -> tuple:
        """The classifiers, in the order of `combination`: a multimodal model's fusion classifier,
        then each modality's, then the regressions (model.linear_head)."""
        return (*(("fusion",) if self.multimodal else ()), *self.modalities, *self.linear_inputs)

    def set_statistics(self, statistics: dict, class_prior=None, transition=None) -> None:
        """Per-feature (mean, std) of each modality over the training split (Store.standardization),
        its class frequencies (Store.class_prior; what a combination of heads counts once) and its
        emotion transitions (chain.transitions; what the decoder reads)."""
        if self.decoder is not None and class_prior is not None and transition is not None:
            self.decoder.prior.copy_(torch.as_tensor(np.maximum(class_prior, 1e-12), dtype=torch.float32))
            self.decoder.transition.copy_(torch.as_tensor(transition, dtype=torch.float32))
        if self.combined and class_prior is not None:
            self.log_prior.copy_(torch.log(torch.as_tensor(np.maximum(class_prior, 1e-12), dtype=torch.float32)))
        if self.standardize is not None:
            for m in self.modalities:
                mean, std = statistics[m]
                self.standardize[m].mean.copy_(torch.from_numpy(np.array(mean, dtype=np.float32)))
                self.standardize[m].std.copy_(torch.from_numpy(np.array(std, dtype=np.float32)))

    def prepare_inputs(self, features: dict, mask: torch.Tensor) -> dict:
        """What the fusion path reads: standardised features, zero on padding; in training, dropout on
        them, any input noise, and whole modalities of a dialogue zeroed with probability
        modality_dropout (never all of them)."""
        return self.perturbed(self.standardized(features, mask), mask)

    def perturbed(self, features: dict, mask: torch.Tensor) -> dict:
        features = {m: self.input_dropout(features[m]) for m in self.modalities}
        if self.training and self.input_noise > 0:
            keep = mask[..., None]
            features = {m: f + self.input_noise * torch.randn_like(f) * keep for m, f in features.items()}
        if self.training and self.modality_dropout > 0:
            on = torch.rand(mask.shape[0], len(self.modalities), device=mask.device) >= self.modality_dropout
            on |= ~on.any(1, keepdim=True)
            features = {m: features[m] * on[:, i, None, None].to(features[m].dtype) for i, m in enumerate(self.modalities)}
        return features

    def standardized(self, features: dict, mask: torch.Tensor) -> dict:
        if self.standardize is None:
            return features
        keep = mask[..., None]
        return {m: self.standardize[m](features[m]) * keep for m in self.modalities}

    def decompose(self, features: dict, speakers: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> None:
        """AMDM's pass alone, for the eraser's refit (inference.fit_eraser): on the features AMDM needs
        no branch, so the context encoders and SCLM (most of an epoch's time) are skipped."""
        if self.amdm_reads_features:
            self.amdm(self.prepare_inputs(features, mask), mask)
        else:
            self(features, speakers, mask, lengths)

    def forward(self, inputs: dict, speakers: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> MALNOutput:
        if self.branch_dropout is None:  # the branches read what the fusion path reads
            features = branch_in = self.prepare_inputs(inputs, mask)
        else:  # the fusion path's inputs drawn first, so its random stream is the same with or without
            standardized = self.standardized(inputs, mask)
            features = self.perturbed(standardized, mask) if self.multimodal else None
            branch_in = {m: self.branch_dropout(x) for m, x in standardized.items()}
        h = {}
        for m in self.modalities:
            context = self.context[m](branch_in[m], lengths)
            if self.sclm is not None:
                sclm = self.sclm[m](context if self.sclm_reads_context else branch_in[m], speakers, mask)
                context = torch.cat([context, sclm], dim=-1)
            h[m] = context
        if not self.multimodal:
            logits = self.classifier(h[self.modalities[0]])
            if self.training or not self.linear_head:
                return MALNOutput(logits)
            linear = self.linear(inputs, mask)
            return MALNOutput(self.combine([logits, *linear.values()]), {self.modalities[0]: logits}, linear_logits=linear)
        if self.amdm_reads_features:
            amdm_in = features
        else:  # branchwise, the fusion's losses must not move the branches
            amdm_in = {m: h[m].detach() for m in self.modalities} if self.branchwise else h
        specific, common = self.amdm(amdm_in, mask)
        source = specific if self.fusion == "specific" else common
        anchor, *others = self.modalities  # text when present
        parts = [self.cross(source[anchor], [source[m] for m in others], mask), sum(common.values())]
        if self.fusion == "specific":
            parts += [specific[m] for m in self.modalities]
        aux = {m: self.aux[m](h[m] if self.branchwise else common[m]) for m in self.modalities}
        fused = self.classifier(torch.cat(parts, dim=-1))
        if not (self.branchwise and not self.training):
            return MALNOutput(fused, aux, specific, common, fused)
        linear = self.linear(inputs, mask) if self.linear_head else {}
        logits = self.combine([fused, *aux.values(), *linear.values()])
        return MALNOutput(logits, aux, specific, common, fused, linear)

    def linear(self, features: dict, mask: torch.Tensor) -> dict:
        """model.linear_head's logits, head -> its regression on the standardised features it reads."""
        with torch.autocast(mask.device.type, enabled=False):  # the regressions as fitted, in float32 under bf16 too
            x = {m: f.float() for m, f in self.standardized(features, mask).items()}
            return {name: torch.cat([x[m] for m in reads], dim=-1) @ getattr(self, f"{name}_weight").T
                    + getattr(self, f"{name}_bias") for name, reads in self.linear_inputs.items()}

    def set_linear(self, regressions: dict) -> None:
        """model.linear_head's regressions, head -> (weight [C, sum of the input sizes] over the
        standardised features it reads concatenated in the model's modality order, bias [C])."""
        for name, (weight, bias) in regressions.items():
            getattr(self, f"{name}_weight").copy_(weight)
            getattr(self, f"{name}_bias").copy_(bias)

    def combine(self, heads: list, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Bayes' rule for classifiers that are independent given the emotion: sum_k w_k log p_k(y|x)
        - (sum_k w_k - 1) log p(y), so the class prior counts once, not once per classifier."""
        w = self.combination if weights is None else weights
        log_p = sum(wk * torch.log_softmax(hk.float(), -1) for wk, hk in zip(w, heads))
        return log_p - (w.sum() - 1) * self.log_prior

    def clip_groups(self) -> list:
        """Parameters whose gradient norm is clipped together: all of them, or, branchwise, each
        branch apart from the rest (their losses are disjoint, so one's gradient must not scale
        another's step)."""
        if not self.branchwise:
            return [list(self.parameters())]
        groups = [[*self.context[m].parameters(), *(self.sclm[m].parameters() if self.sclm is not None else ()),
                   *self.aux[m].parameters()] for m in self.modalities]
        taken = {id(p) for g in groups for p in g}
        return groups + [[p for p in self.parameters() if id(p) not in taken]]

    def loss(self, out: MALNOutput, labels: torch.Tensor, mask: torch.Tensor, weights: LossWeights,
             class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> dict:
        """L = CE + w_uni * sum_m CE(aux_m) + w_adv * adversarial + discriminator + w_orth * L_orth, every
        term averaged over the real utterances (labels are -100 on padding); `discriminator` is the
        discriminator's own loss where it learns apart from the encoders (amdm.py). Every CE term
        (the fusion classifier's and each modality's) against labels smoothed by `label_smoothing`."""

        def ce(logits):
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                   weight=class_weights, ignore_index=-100, label_smoothing=label_smoothing)

        terms = {"ce": ce(out.logits)}
        zero = terms["ce"].new_zeros(())
        terms["unimodal"] = sum((ce(a) for a in out.aux_logits.values()), zero)
        terms["adversarial"], terms["discriminator"] = (
            self.amdm.adversarial_loss(out.specific, out.common, mask)
            if self.multimodal and self.amdm.discriminator is not None else (zero, zero))
        terms["orthogonality"] = self.amdm.orthogonality(out.specific, out.common, mask) if self.multimodal else zero
        # branchwise, the modalities' classifiers are their branches' only loss: weight 1, as in a
        # single-modality variant
        unimodal = 1.0 if self.branchwise else weights.unimodal
        terms["loss"] = (terms["ce"] + unimodal * terms["unimodal"] + weights.adversarial * terms["adversarial"]
                         + terms["discriminator"] + weights.orthogonality * terms["orthogonality"])
        return terms
