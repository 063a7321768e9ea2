"""Linear probes: what a freshly trained linear classifier can read from a run's features.

The paper claims the adversary makes the common features modality-invariant while the specific
features keep each modality's own information. A discriminator that is merely *wrong* says
nothing about that (the encoders can relabel the modalities consistently); a fresh probe,
trained on the training split's features and scored on the test split's, measures it:

- modality from common features: chance (1/M) when they are invariant;
- modality from specific features: near 1 when each modality keeps its own;
- emotion from common features: invariance must not be bought by emptying them.
"""

from __future__ import annotations

import numpy as np

PROBE_C = 1.0  # inverse L2 strength of every probe: a plain, lightly regularised linear read-out
MAX_TRAIN = 20000  # probe training points at most (a fixed random subset beyond), so probes stay quick


def probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression fitted on (train_x, train_y), inputs standardised
    with the training statistics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train_x, train_y = np.asarray(train_x, dtype=np.float64), np.asarray(train_y)
    if len(train_x) > MAX_TRAIN:
        keep = np.random.default_rng(seed).choice(len(train_x), MAX_TRAIN, replace=False)
        train_x, train_y = train_x[keep], train_y[keep]
    if len(np.unique(train_y)) < 2:
        return float(np.mean(np.asarray(test_y) == train_y[0]))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000))
    with threadpool_limits(1):  # small problems: one BLAS thread is several times faster than many
        probe.fit(train_x, train_y)
        return float(probe.score(np.asarray(test_x, dtype=np.float64), np.asarray(test_y)))


def _by_modality(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, M, W] -> points [N*M, W] and their modality index."""
    n, m, w = features.shape
    return features.reshape(n * m, w), np.tile(np.arange(m), n)


def invariance(train: dict, test: dict) -> dict:
    """Probe accuracies from the decomposed features of the training and test splits; each dict
    holds `specific` and `common` ([N, M, W]) and `gold` ([N])."""
    m = train["common"].shape[1]
    out = {"chance": 1.0 / m}
    for kind in ("common", "specific"):
        out[f"{kind}_modality_accuracy"] = probe_accuracy(*_by_modality(train[kind]), *_by_modality(test[kind]))
    flat = {s: d["common"].reshape(len(d["common"]), -1) for s, d in (("train", train), ("test", test))}
    out["common_emotion_accuracy"] = probe_accuracy(flat["train"], train["gold"], flat["test"], test["gold"])
    return out
