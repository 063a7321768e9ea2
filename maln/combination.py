"""How a branchwise model, and the late-fusion baseline, weigh their classifiers: Bayes' rule for
classifiers independent given the emotion (MALN.combine), with weights chosen on the validation
split. numpy only, so the report can use it without torch."""

from __future__ import annotations

import itertools

import numpy as np

COMBINATION_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
# values of the combined log-posteriors scored at once: 4 MB of float64, whose temporaries stay in cache (at 32 MB,
# with five heads' 1250 candidates, choosing took 84 ms against 47 on one host; it depends on the host's caches);
# the chunking changes no candidate's score
CHUNK_VALUES = 500_000


def combine(log_probs: list, weights, log_prior: np.ndarray) -> np.ndarray:
    """sum_k w_k log p_k(y|x) - (sum_k w_k - 1) log p(y): the class prior counted once (numpy's
    MALN.combine). log_probs: one [N, C] array per classifier; returns unnormalised [N, C]."""
    weights = np.asarray(weights, dtype=float)
    return sum(wk * lp for wk, lp in zip(weights, log_probs)) - (weights.sum() - 1) * log_prior


def choose_combination(log_probs: list, gold: np.ndarray, log_prior: np.ndarray, anchor, keep=()) -> np.ndarray:
    """Weights of classifiers combined by Bayes' rule (MALN.combine), chosen on (validation)
    utterances by the log-likelihood of the gold labels under the combined posterior: the
    anchor's weight is 1, every other from COMBINATION_GRID; with several anchors (a tuple), each
    in turn at 1, the first on ties. Ties go to the smaller total weight. One head stays at 1, so
    the likelihood cannot temper every head and add the class prior back.
    The likelihood, not the weighted F1: F1 moves only where an argmax flips, so on a few hundred
    utterances a classifier of pure noise, given weight, wins some of the grid's 5^k comparisons
    by chance (it did on synthetic-iemocap-noise, docs/deviations.md); the likelihood reads
    every utterance's probabilities and a noise classifier lowers it. log_probs: one [N, C] array
    per classifier, finite (a weight of 0 times -inf is NaN). keep: classifiers never at weight 0
    (a network that must reach the prediction, whichever head is the anchor)."""
    k = len(log_probs)
    grid = []  # every candidate's weights, in the order of the first-wins tie rule below
    for a in np.atleast_1d(anchor):
        for ws in itertools.product(COMBINATION_GRID, repeat=k - 1):
            w = np.zeros(k)
            w[a], w[[j for j in range(k) if j != a]] = 1.0, ws
            if all(w[j] > 0 for j in keep):
                grid.append(w)
    grid = np.array(grid)  # [G, K]
    heads = [np.ascontiguousarray(lp.T) for lp in log_probs]  # [C, N]
    # many candidates at once, classes on the middle axis (numpy reduces a short last axis slowly): 2x
    # faster than one candidate at a time, which took 47 ms an epoch for 250 candidates; in chunks of
    # at most CHUNK_VALUES values of z, so a large validation split cannot take gigabytes. The sum
    # runs in combine's order, so each z is combine's to the bit; the log-normaliser is not
    # logaddexp's (last-bit differences), which the rounding below absorbs.
    chunk = max(1, CHUNK_VALUES // max(heads[0].size, 1))
    log_likelihood = np.concatenate([_log_likelihoods(grid[i:i + chunk], heads, gold, log_prior)
                                     for i in range(0, len(grid), chunk)])
    # rounded: sums in another order tie, not flip; ties go to the smaller total weight, then to the first
    keys = [(round(float(ll), 9), -float(w.sum())) for ll, w in zip(log_likelihood, grid)]
    return grid[max(range(len(grid)), key=keys.__getitem__)]


def _log_likelihoods(grid: np.ndarray, heads: list, gold: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """Mean log-likelihood of the gold labels under each weighting in grid ([G, K]); heads: [C, N] each."""
    z = sum(grid[:, j, None, None] * heads[j] for j in range(len(heads))) \
        - (grid.sum(1) - 1)[:, None, None] * log_prior[:, None]
    top = z.max(1)
    log_norm = top + np.log(np.exp(z - top[:, None]).sum(1))
    return (z[:, gold, np.arange(len(gold))] - log_norm).mean(1)


def posterior(log_probs: list, weights, log_prior: np.ndarray) -> np.ndarray:
    """The combination's class probabilities [N, C] (softmax of `combine`)."""
    z = combine(log_probs, weights, log_prior)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)
