"""A baseline made from the study's own runs: the late fusion of the single-modality variants' predictions
(with model.linear_head each is its network and its regression combined).

For each seed, the test predictions of text_only, audio_only and visual_only are combined as
Bayes' rule does for modalities that are independent given the emotion: argmax of
sum_m w_m log p_m(y | x_m) - (sum_m w_m - 1) log p(y), the class prior p(y) of the training split
counted once (a plain product of experts counts it once per modality, which on MELD-like data tips
predictions towards the majority class: 62.4 against 64.4 test WF1 there). Text's weight is 1 and
every other weight comes from a small grid by the validation split's log-likelihood, the rule the
full model's own combination uses (maln.combination). It asks what the modalities
are worth when each is learned on its own and their mix is calibrated on held-out dialogues: if it
beats the full model, the information is in the features and the joint model does not extract it
(docs/findings.md). Each network's predictions are its own, decoded by the emotion chain where its
configuration decodes (model.decode: chain), so the chain enters once per modality; fusing the
undecoded posteriors and decoding once instead moves this baseline by 0.7 points at most over ten
seeds (benchmarks/chain_late_fusion.py, docs/findings.md).
"""

from __future__ import annotations

import numpy as np

from maln.combination import choose_combination, combine
from maln.metrics import classification_metrics
from maln.model.variants import MODALITY_ORDER
from maln.report.runs import Baseline, Study

ANCHOR = "text"


def late_fusion(study: Study, dataset: str, log_prior: np.ndarray) -> Baseline | None:
    """None when the study lacks text_only or every other single-modality run of the dataset;
    `log_prior`: log class frequencies of the training split."""
    members = [m for m in MODALITY_ORDER if study.get(dataset, f"{m}_only")]
    if ANCHOR not in members or len(members) < 2:
        return None
    runs = {m: {r.seed: r for r in study.get(dataset, f"{m}_only")} for m in members}
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    names = runs[ANCHOR][seeds[0]].class_names
    fits, chosen = [], []
    for seed in seeds:
        logp = {split: {m: runs[m][seed].log_probs(split) for m in members} for split in ("valid", "test")}
        gold = {split: logp[split][ANCHOR][0] for split in logp}
        order = [ANCHOR, *(m for m in members if m != ANCHOR)]
        w = choose_combination([logp["valid"][m][1] for m in order], gold["valid"], log_prior, anchor=0)

        def predict(split):
            return combine([logp[split][m][1] for m in order], w, log_prior).argmax(1)

        chosen.append(dict(zip(order[1:], map(float, w[1:]))))
        fits.append({"seed": seed, "valid": classification_metrics(gold["valid"], predict("valid"), names),
                     "test": classification_metrics(gold["test"], predict("test"), names), "pred": predict("test")})
    weights = "; ".join(f"{m} " + "/".join(f"{c[m]:g}" for c in chosen) for m in chosen[0])
    label = (f"late_fusion (baseline: {'+'.join(f'{m}_only' for m in members)}, prior counted once, weights by "
             f"validation: {weights})")
    return Baseline(dataset, "late_fusion", label, fits, tuple(members))
