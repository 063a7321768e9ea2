"""Probes: what a freshly trained classifier can read from a run's decomposed features.

The paper claims the adversary makes the common features modality-invariant while the specific
features keep each modality's own information. A discriminator that is merely *wrong* says
nothing about that (the encoders can relabel the modalities consistently); a fresh probe measures
it:

- modality from common features: chance (1/M) when they are invariant;
- modality from specific features: near 1 when each modality keeps its own;
- emotion from common features: invariance must not be bought by emptying them.

Out of sample, twice over (issue 21). Everything upstream of the features (the standardiser, the
LEACE eraser, the adversary) was fitted on the training split, and the eraser makes the modalities'
means equal on exactly that split, so a linear probe fitted there learns a constant and reports
chance whatever the test features hold. The probes therefore see the test split only, and are
fitted and scored on disjoint test dialogues: grouped k-fold cross-validation over the dialogues
(k = FOLDS, fewer when the split has fewer dialogues), each point scored once, by the probe that
did not see its dialogue. Two probes: a linear one (what LEACE promises to defeat) and a small
MLP (what it does not: LEACE equalises means only, so a modality that differs in spread or in a
non-linear way stays readable).
"""

from __future__ import annotations

import warnings

import numpy as np

FOLDS = 5  # grouped folds over the test dialogues; fewer when there are fewer dialogues
PROBE_C = 1.0  # inverse L2 strength of the linear probe: a plain, lightly regularised linear read-out
MLP_HIDDEN = 32  # units of the MLP probe's one hidden layer: small, so it reads structure, not dialogues
MLP_ALPHA = 1e-3  # its L2 strength (scikit-learn's default scale)
MLP_MAX_ITER = 200  # lbfgs iterations at most: full-batch and deterministic; bounded so probes stay quick
PROBE_SEED = 0  # the MLP's initialisation: the same for every run, so runs differ only by their features
MAX_TRAIN = 20000  # fitting points per fold at most (a fixed random subset beyond), so probes stay quick
KINDS = ("linear", "mlp")


def describe(folds: int) -> str:
    """The protocol in words, stored beside the numbers in metrics.json."""
    return (f"grouped {folds}-fold cross-validation over the test split's dialogues (fitted and scored on "
            f"disjoint test dialogues; nothing upstream was fitted on them); linear: standardised logistic "
            f"regression (lbfgs, C={PROBE_C:g}); mlp: standardised MLP ({MLP_HIDDEN} hidden units, lbfgs, "
            f"alpha={MLP_ALPHA:g}, <= {MLP_MAX_ITER} iterations, random_state={PROBE_SEED})")


def _probe(kind: str):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "linear":
        head = LogisticRegression(C=PROBE_C, solver="lbfgs", max_iter=2000)
    elif kind == "mlp":
        head = MLPClassifier(hidden_layer_sizes=(MLP_HIDDEN,), alpha=MLP_ALPHA, solver="lbfgs",
                             max_iter=MLP_MAX_ITER, random_state=PROBE_SEED)
    else:
        raise ValueError(f"unknown probe {kind!r}; expected one of {KINDS}")
    return make_pipeline(StandardScaler(), head)


def _fit_predict(kind, train_x, train_y, test_x, subsample_seed: int = 0) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning

    if len(train_x) > MAX_TRAIN:
        keep = np.random.default_rng(subsample_seed).choice(len(train_x), MAX_TRAIN, replace=False)
        train_x, train_y = train_x[keep], train_y[keep]
    if len(np.unique(train_y)) < 2:  # one class to learn: the probe can only say it
        return np.full(len(test_x), train_y[0])
    probe = _probe(kind)
    with warnings.catch_warnings():  # the MLP's iterations are bounded on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_x, train_y)
    return probe.predict(test_x)


def probe_accuracy(train_x, train_y, test_x, test_y, kind: str = "linear", seed: int = 0) -> float:
    """Accuracy on (test_x, test_y) of a probe fitted on (train_x, train_y), inputs standardised with
    the fitting data's statistics. Only as honest as the two sets are disjoint from each other and
    from whatever produced the features."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small problems: one BLAS thread is several times faster than many
        pred = _fit_predict(kind, np.asarray(train_x, dtype=np.float64), np.asarray(train_y),
                            np.asarray(test_x, dtype=np.float64), seed)
    return float(np.mean(pred == np.asarray(test_y)))


def n_folds(groups) -> int:
    return min(FOLDS, len(np.unique(groups)))


def grouped_cv_accuracy(x, y, groups, kind: str = "linear") -> float:
    """Accuracy of a probe over grouped k-fold cross-validation: every point predicted by a probe
    fitted on the other folds' groups (dialogues), never its own; nan with fewer than 2 groups.
    Deterministic: GroupKFold's assignment depends on the group sizes only."""
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    x, y, groups = np.asarray(x, dtype=np.float64), np.asarray(y), np.asarray(groups)
    k = n_folds(groups)
    if k < 2:
        return float("nan")
    pred = np.empty_like(y)
    with threadpool_limits(1):  # small problems: one BLAS thread is several times faster than many
        for fold, (fit_rows, score_rows) in enumerate(GroupKFold(n_splits=k).split(x, y, groups)):
            pred[score_rows] = _fit_predict(kind, x[fit_rows], y[fit_rows], x[score_rows], fold)
    return float(np.mean(pred == y))


def _by_modality(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, M, W] -> points [N*M, W] and their modality index."""
    n, m, w = features.shape
    return features.reshape(n * m, w), np.tile(np.arange(m), n)


def invariance(test: dict) -> dict:
    """Probe accuracies from the test split's decomposed features, cross-validated over its
    dialogues; `test` holds `specific` and `common` ([N, M, W]), `gold` ([N]) and `dialogue` ([N],
    each utterance's dialogue). Keys without a suffix are the linear probe's, `_mlp` the MLP's."""
    common, specific = np.asarray(test["common"]), np.asarray(test["specific"])
    gold, dialogue = np.asarray(test["gold"]), np.asarray(test["dialogue"])
    folds = n_folds(dialogue)
    out = {"chance": 1.0 / common.shape[1], "probe": describe(folds), "probe_folds": folds,
           "probe_dialogues": int(len(np.unique(dialogue)))}
    for kind in KINDS:
        suffix = "" if kind == "linear" else f"_{kind}"
        for name, features in (("common", common), ("specific", specific)):
            out[f"{name}_modality_accuracy{suffix}"] = grouped_cv_accuracy(
                *_by_modality(features), np.repeat(dialogue, features.shape[1]), kind)  # a point per modality
        out[f"common_emotion_accuracy{suffix}"] = grouped_cv_accuracy(common.reshape(len(common), -1), gold,
                                                                      dialogue, kind)
    return out
