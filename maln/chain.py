"""Decoding by the emotion chain: each utterance's posterior read together with the rest of its
dialogue through a first-order chain of emotions (forward-backward), the chain's transitions counted
on the training split's labels. numpy only, so the baselines and the report can use it without torch.

Emotions persist and follow each other within a conversation. A network with a context encoder
may learn that from the features; the chain states it outright, and a classifier that reads one
utterance at a time gains most from it. With the classifier's posterior p_t(y) (trained on a class
prior pi), the emission of utterance t is (p_t(y) / pi(y))^temperature, the chain's transitions are
(1 - mix) * pi + mix * T (T: the training split's transition frequencies; each row of the first
term is pi, under which utterances are independent), its first emotion is drawn from pi, and the
decoded posterior is q_t(y) proportional to alpha_t(y) beta_t(y). mix 0 with temperature 1 gives
q = p: no decoding. `choose` picks both on the validation split by the likelihood of its labels.
"""

from __future__ import annotations

import itertools

import numpy as np

from maln.metrics import classification_metrics

MIXES = (0.25, 0.5, 0.75, 1.0)
# < 1: a network's posterior already reads its context; tempered, it counts less beside the chain's.
# Only with a chain: at mix 0 a temperature would only move predictions towards the prior.
TEMPERATURES = (1.0, 0.75, 0.5)
IDENTITY = (0.0, 1.0)  # (mix, temperature) that leaves every posterior as it is: no decoding


def transitions(labels: np.ndarray, offsets: np.ndarray, dialogues, n_classes: int) -> np.ndarray:
    """P(y_t | y_{t-1}) [C, C] from the labels of `dialogues` (store indices; the training split's),
    each count plus one so that no transition is impossible on a split that never showed it."""
    counts = np.ones((n_classes, n_classes))
    for i in dialogues:
        y = np.asarray(labels[offsets[i]:offsets[i + 1]])
        np.add.at(counts, (y[:-1], y[1:]), 1)
    return counts / counts.sum(1, keepdims=True)


def decode(probs: np.ndarray, dialogue: np.ndarray, transition: np.ndarray, prior: np.ndarray,
           mix: float, temperature: float) -> np.ndarray:
    """Decoded posteriors [N, C] of `probs` [N, C]: utterances of one dialogue in consecutive rows, in
    order (as inference.predict returns them); `dialogue` [N] says which rows belong together."""
    if (float(mix), float(temperature)) == IDENTITY:
        return probs
    n, c = probs.shape
    starts = np.flatnonzero(np.r_[True, dialogue[1:] != dialogue[:-1]])
    lengths = np.diff(np.r_[starts, n])
    which = np.repeat(np.arange(len(starts)), lengths)  # each row's dialogue, 0..D-1
    step = np.arange(n) - np.repeat(starts, lengths)  # each row's position in it
    prior = np.asarray(prior, dtype=np.float64)
    # padding emits 1 for every emotion: alpha then carries on unchanged and beta stays flat, so a
    # dialogue's own rows are exactly as if it were decoded alone
    emit = np.ones((len(starts), lengths.max(), c))
    emit[which, step] = (np.maximum(probs, 1e-12) / prior) ** temperature
    chain = (1 - mix) * prior[None, :] + mix * np.asarray(transition, dtype=np.float64)
    # rows summing to exactly 1 (the buffers are float32) keep padding from moving beta at all
    chain /= chain.sum(1, keepdims=True)
    alpha, beta = np.empty_like(emit), np.empty_like(emit)
    alpha[:, 0] = prior * emit[:, 0]
    alpha[:, 0] /= alpha[:, 0].sum(1, keepdims=True)
    for t in range(1, emit.shape[1]):
        a = (alpha[:, t - 1] @ chain) * emit[:, t]
        alpha[:, t] = a / a.sum(1, keepdims=True)
    beta[:, -1] = 1.0
    for t in range(emit.shape[1] - 2, -1, -1):
        b = (emit[:, t + 1] * beta[:, t + 1]) @ chain.T
        beta[:, t] = b / b.sum(1, keepdims=True)
    q = alpha[which, step] * beta[which, step]
    return (q / q.sum(1, keepdims=True)).astype(probs.dtype)


def choose(probs: np.ndarray, gold: np.ndarray, dialogue: np.ndarray, transition: np.ndarray,
           prior: np.ndarray) -> tuple[float, float]:
    """IDENTITY or (mix, temperature) from MIXES x TEMPERATURES, by the mean log-likelihood of `gold`
    under the decoded posteriors (of the validation split). The likelihood, as maln.combination's
    weights and for the same reason: on a few hundred utterances the weighted F1 of fifteen
    candidates picks some by chance. But a setting whose weighted F1 there is below no decoding's is
    no candidate: for a classifier of pure noise the likelihood prefers the chain alone, one emotion
    for everything (visual_only on synthetic-iemocap-noise, seed 2: test WF1 22.04 -> 8.33).
    Ties go to no decoding, then to the smaller mix and the temperature nearer 1."""
    rows, names = np.arange(len(gold)), range(probs.shape[1])
    floor = classification_metrics(gold, probs.argmax(1), names)["weighted_f1"]
    best = None
    for setting in (IDENTITY, *itertools.product(MIXES, TEMPERATURES)):
        q = decode(probs, dialogue, transition, prior, *setting)
        if setting != IDENTITY and classification_metrics(gold, q.argmax(1), names)["weighted_f1"] < floor:
            continue
        score = round(float(np.log(np.maximum(q[rows, gold], 1e-12)).mean()), 9)
        if best is None or score > best[0]:
            best = (score, setting)
    return best[1]
