"""The invariance measure: a fresh linear probe on a run's decomposed features."""

import numpy as np

from maln.probes import invariance, probe_accuracy


def _features(n, m, w, shift, rng):
    """[n, m, w] features; modality k's points are shifted by k * shift along every axis."""
    x = rng.normal(size=(n, m, w))
    return x + shift * np.arange(m)[None, :, None]


def test_probe_is_at_chance_on_identical_distributions_and_near_one_on_separable_ones():
    rng = np.random.default_rng(0)
    same_train, same_test = _features(400, 3, 8, 0.0, rng), _features(400, 3, 8, 0.0, rng)
    far_train, far_test = _features(400, 3, 8, 3.0, rng), _features(400, 3, 8, 3.0, rng)
    labels = np.tile(np.arange(3), 400)
    chance = probe_accuracy(same_train.reshape(-1, 8), labels, same_test.reshape(-1, 8), labels)
    separable = probe_accuracy(far_train.reshape(-1, 8), labels, far_test.reshape(-1, 8), labels)
    assert abs(chance - 1 / 3) < 0.05
    assert separable > 0.99


def test_invariance_reports_common_specific_and_emotion_probes():
    rng = np.random.default_rng(1)
    gold = {s: rng.integers(0, 4, 300) for s in ("train", "test")}
    prototypes = rng.normal(size=(4, 6)) * 3
    split = {}
    for s in ("train", "test"):
        # common: the emotion's prototype in every modality, plus noise (invariant, informative);
        # specific: each modality far from the others (its own information)
        common = prototypes[gold[s]][:, None, :] + rng.normal(size=(300, 2, 6))
        specific = _features(300, 2, 6, 4.0, rng)
        split[s] = {"common": common, "specific": specific, "gold": gold[s]}
    out = invariance(split["train"], split["test"])
    assert out["chance"] == 0.5
    assert abs(out["common_modality_accuracy"] - 0.5) < 0.07
    assert out["specific_modality_accuracy"] > 0.99
    assert out["common_emotion_accuracy"] > 0.9
