"""The invariance measure: fresh probes on a run's decomposed features, out of sample (issue 21)."""

import numpy as np
import torch

from maln.model.amdm import LinearEraser
from maln.probes import grouped_cv_accuracy, invariance, probe_accuracy


def _features(n, m, w, shift, rng):
    """[n, m, w] features; modality k's points are shifted by k * shift along every axis."""
    x = rng.normal(size=(n, m, w))
    return x + shift * np.arange(m)[None, :, None]


def _dialogues(n, length=10):
    return np.repeat(np.arange((n + length - 1) // length), length)[:n]


def _in_sample(train, test) -> float:
    """The measure before issue 21: a linear probe fitted on the training split's features (the
    split every eraser was fitted on) and scored on the test split's."""
    m, w = train.shape[1:]
    return probe_accuracy(train.reshape(-1, w), np.tile(np.arange(m), len(train)),
                          test.reshape(-1, w), np.tile(np.arange(m), len(test)))


def _out_of_sample(test, kind) -> float:
    """The measure of issue 21 on the modality of [N, M, W] test features in dialogues of 10."""
    n, m, w = test.shape
    return grouped_cv_accuracy(test.reshape(-1, w), np.tile(np.arange(m), n), np.repeat(_dialogues(n), m), kind)


def _leace(train, *others):
    """The study's eraser (maln/model/amdm.py), fitted on `train` ([N, M, W]) as training fits it,
    then applied to `train` and `others`."""
    eraser = LinearEraser(train.shape[1], train.shape[2]).eval()

    def apply(x):
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)[:, None]))  # [M, 1, N, W]
        return eraser(t, torch.ones(t.shape[:3], dtype=torch.bool))[:, 0].numpy().transpose(1, 0, 2)

    eraser.begin_fit()
    apply(train)
    eraser.end_fit()
    return [apply(x) for x in (train, *others)]


def test_probe_is_at_chance_on_identical_distributions_and_near_one_on_separable_ones():
    rng = np.random.default_rng(0)
    same_train, same_test = _features(400, 3, 8, 0.0, rng), _features(400, 3, 8, 0.0, rng)
    far_train, far_test = _features(400, 3, 8, 3.0, rng), _features(400, 3, 8, 3.0, rng)
    labels = np.tile(np.arange(3), 400)
    chance = probe_accuracy(same_train.reshape(-1, 8), labels, same_test.reshape(-1, 8), labels)
    separable = probe_accuracy(far_train.reshape(-1, 8), labels, far_test.reshape(-1, 8), labels)
    assert abs(chance - 1 / 3) < 0.05
    assert separable > 0.99


def test_in_sample_measure_reports_chance_after_leace_even_when_held_out_features_are_separable():
    """The eraser equalises the modalities' means on the training split, so a probe fitted there
    learns a constant: chance, guaranteed. Held-out features whose modalities differ along
    directions the training split did not show keep their modality, and the out-of-sample
    measure (fitted and scored on disjoint test dialogues) says so."""
    rng = np.random.default_rng(0)
    n, m, w = 600, 3, 8
    gap = np.zeros((m, w))
    gap[1, 0], gap[2, 1] = 3.0, 3.0  # the training split's modality gaps: what the eraser removes
    held_out = gap.copy()
    held_out[1, 2], held_out[2, 3] = 3.0, 3.0  # and, on held-out dialogues only, gaps it never saw
    train = rng.normal(size=(n, m, w)) + gap
    test = rng.normal(size=(n, m, w)) + held_out
    train, test = _leace(train, test)
    np.testing.assert_allclose(train.mean(0), np.broadcast_to(train.mean((0, 1)), (m, w)), atol=1e-9)
    assert abs(_in_sample(train, test) - 1 / 3) < 0.05  # old measure: chance
    assert _out_of_sample(test, "linear") > 0.8 and _out_of_sample(test, "mlp") > 0.8  # new measure: it is not


def test_on_truly_invariant_features_both_measures_are_near_chance():
    rng = np.random.default_rng(1)
    n, m, w = 300, 3, 8
    train, test = _leace(rng.normal(size=(n, m, w)), rng.normal(size=(n, m, w)))
    assert abs(_in_sample(train, test) - 1 / 3) < 0.06
    for kind in ("linear", "mlp"):
        assert abs(_out_of_sample(test, kind) - 1 / 3) < 0.06, kind


def test_the_mlp_probe_reads_what_mean_erasure_leaves():
    """LEACE equalises means only: modalities that differ in spread defeat a linear probe, not an MLP."""
    rng = np.random.default_rng(2)
    n = 500
    x = rng.normal(size=(n, 2, 4)) * np.array([1.0, 3.0])[None, :, None]
    dialogue = _dialogues(n)
    points, modality = x.reshape(-1, 4), np.tile(np.arange(2), n)
    assert abs(grouped_cv_accuracy(points, modality, np.repeat(dialogue, 2), "linear") - 0.5) < 0.06
    assert grouped_cv_accuracy(points, modality, np.repeat(dialogue, 2), "mlp") > 0.8


def test_invariance_reports_common_specific_and_emotion_probes_deterministically():
    rng = np.random.default_rng(1)
    n = 300
    gold = rng.integers(0, 4, n)
    prototypes = rng.normal(size=(4, 6)) * 3
    # common: the emotion's prototype in every modality, plus noise (invariant, informative);
    # specific: each modality far from the others (its own information)
    test = {"common": prototypes[gold][:, None, :] + rng.normal(size=(n, 2, 6)),
            "specific": _features(n, 2, 6, 4.0, rng), "gold": gold, "dialogue": _dialogues(n, 12)}
    out = invariance(test)
    assert out["chance"] == 0.5 and out["probe_dialogues"] == 25 and out["probe_folds"] == 5
    assert "test split's dialogues" in out["probe"]
    for suffix in ("", "_mlp"):
        assert abs(out[f"common_modality_accuracy{suffix}"] - 0.5) < 0.08
        assert out[f"specific_modality_accuracy{suffix}"] > 0.99
        assert out[f"common_emotion_accuracy{suffix}"] > 0.9
    assert invariance(test) == out


def test_probes_never_score_a_dialogue_they_were_fitted_on():
    """Each dialogue's utterances carry a label of their own (the dialogue's parity) and nothing
    else: a probe fitted on that dialogue could memorise it; scored on unseen dialogues it cannot."""
    rng = np.random.default_rng(3)
    dialogue = _dialogues(600, 10)
    identity = rng.normal(size=(dialogue.max() + 1, 5))[dialogue]  # the dialogue shows in its features
    x = identity + 0.05 * rng.normal(size=identity.shape)
    y = dialogue % 2
    assert abs(grouped_cv_accuracy(x, y, dialogue, "mlp") - 0.5) < 0.2
    assert np.isnan(grouped_cv_accuracy(x, y, np.zeros(len(y)), "linear"))  # one dialogue: nothing held out
