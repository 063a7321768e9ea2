"""`train.distill`: each modality head learns from its modality's context-free logistic regression
as well as from the labels.

The teacher of modality m is the study's `logreg_<m>` baseline (maln/baselines.py: the standardised
features of one utterance, L2 strength by validation WF1). Its posteriors on the training utterances
are cross-fitted: the training dialogues fall into FOLDS folds, and each fold's posteriors come from
a regression fitted, at that strength, on the other folds, so no utterance's target comes from a
fit that saw its label (a teacher fitted on all of them would hand its memorisation on). The loss
adds distill x CE(teacher posterior, head) for each modality's head (the branches' classifiers of a
branchwise model, a single-modality variant's classifier), averaged over the batch's utterances.

Why: on weak signals (synthetic-iemocap-interaction, synthetic-meld-nuisance) a branch's context
GRU fitted to the labels alone overfits (training WF1 83-100 %) and scored under the regression
on its own inputs; the regression's posteriors are a target of low variance that the branch can
match and then improve on with the dialogue (docs/findings.md, 2026-12-05).
"""

from __future__ import annotations

import numpy as np
import torch

from maln.baselines import BASELINES, choose, classifier, features_of, split_rows
from maln.data.store import Store

FOLDS = 5
FOLD_SEED = 0  # the folds' draw: fixed, so every seed's run learns from the same targets


def _dialogue_rows(store: Store, dialogues: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in dialogues])


def teachers(store: Store, modalities, grid, device) -> dict:
    """modality -> [utterances, classes] float32 on `device`: each training utterance's cross-fitted
    posteriors (store order); other splits' rows uniform (never read). `grid`: the regressions' C."""
    from threadpoolctl import threadpool_limits

    names, labels = store.class_names, np.asarray(store.labels)
    train = store.dialogues("train")
    folds = np.random.default_rng(FOLD_SEED).permutation(len(train)) % FOLDS
    rows = {s: split_rows(store, s) for s in ("train", "valid")}
    out = {}
    with threadpool_limits(1):  # small problems: one BLAS thread is several times faster than many
        for m in modalities:
            baseline = BASELINES[f"logreg_{m}"]
            x = {s: features_of(store, (m,), r) for s, r in rows.items()}
            C, _ = choose(baseline, x, {s: labels[r] for s, r in rows.items()}, names, grid)
            probs = np.full((len(labels), len(names)), 1.0 / len(names))
            for f in range(FOLDS):
                fit_rows, held = _dialogue_rows(store, train[folds != f]), _dialogue_rows(store, train[folds == f])
                model = classifier(baseline, C).fit(features_of(store, (m,), fit_rows), labels[fit_rows])
                p = np.full((len(held), len(names)), 1e-12)
                p[:, model.classes_] = model.predict_proba(features_of(store, (m,), held))
                probs[held] = p / p.sum(1, keepdims=True)
            out[m] = torch.tensor(probs, dtype=torch.float32, device=device)
    return out


def distillation(teacher: dict, heads: dict, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over the heads (modality -> logits [B, T, C]) of the mean over real utterances of
    CE(teacher posterior, head); rows: each position's store row [B, T]."""
    total = mask.new_zeros((), dtype=torch.float32)
    for m, logits in heads.items():
        ce = -(teacher[m][rows] * torch.log_softmax(logits.float(), -1)).sum(-1)
        total = total + ce[mask].mean()
    return total
