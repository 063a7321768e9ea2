"""Statistics across seeds and over test utterances."""

from __future__ import annotations

import math

import numpy as np


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); std is nan for a single value."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def paired_t_test(a, b) -> tuple[float, float]:
    """Paired t-test of a - b across seeds: (t, two-sided p). nan with fewer than 2 pairs or no
    variation in the differences."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    if len(d) < 2 or np.allclose(d, d[0]):
        return math.nan, math.nan
    t, p = stats.ttest_rel(a, b)
    return float(t), float(p)


def weighted_f1_from_counts(confusion: np.ndarray) -> np.ndarray:
    """Weighted F1 of one or many confusion matrices ([..., C, C], rows gold)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(-1)
    predicted = confusion.sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    return (support * f1).sum(-1) / support.sum(-1)


def bootstrap_delta_wf1(gold, preds_a: list, preds_b: list, n_classes: int, n_boot: int = 1000,
                        confidence: float = 0.95, seed: int = 0, clusters=None) -> tuple[float, float, float]:
    """Percentile bootstrap of mean_seeds WF1(a) - mean_seeds WF1(b) over the test set.

    Each resample draws test *dialogues* with replacement (`clusters`: each utterance's dialogue;
    all its utterances come along) and scores every seed's predictions of both variants on it, so
    the interval reflects how the test set was sampled: by dialogue, whose utterances are strongly
    correlated (resampling utterances as if independent makes the interval too narrow). Without
    `clusters` every utterance is its own cluster. Returns (observed delta, low, high), in WF1
    units (0..1)."""
    gold = np.asarray(gold)
    n = len(gold)
    rng = np.random.default_rng(seed)
    _, cluster = np.unique(np.arange(n) if clusters is None else np.asarray(clusters), return_inverse=True)
    k = cluster.max() + 1
    # [B, n]: how often each utterance's dialogue was drawn in each resample
    weights = np.stack([np.bincount(rng.integers(0, k, k), minlength=k)[cluster] for _ in range(n_boot)])

    def wf1(preds):
        cells = gold * n_classes + np.asarray(preds)
        onehot = np.zeros((n, n_classes * n_classes))
        onehot[np.arange(n), cells] = 1.0
        boot = (weights @ onehot).reshape(n_boot, n_classes, n_classes)
        full = onehot.sum(0).reshape(n_classes, n_classes)
        return weighted_f1_from_counts(full), weighted_f1_from_counts(boot)

    obs_a, boot_a = zip(*(wf1(p) for p in preds_a))
    obs_b, boot_b = zip(*(wf1(p) for p in preds_b))
    delta_boot = np.mean(boot_a, axis=0) - np.mean(boot_b, axis=0)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(delta_boot, [alpha, 1 - alpha])
    return float(np.mean(obs_a) - np.mean(obs_b)), float(lo), float(hi)
