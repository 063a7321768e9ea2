"""Decoding by the emotion chain (maln/chain.py): exact against brute-force enumeration, dialogues
decoded together as alone, no decoding at its identity setting, and chosen where it helps."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from maln import chain
from maln.metrics import classification_metrics


def _softmax(z):
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _brute_force(probs, transition, prior, mix, temperature):
    """q_t(y) by summing over every path of the dialogue: pi(y_1) prod A(y_{t-1}, y_t) prod e_t(y_t)."""
    n, c = probs.shape
    a = (1 - mix) * prior[None, :] + mix * transition
    e = (probs / prior) ** temperature
    q = np.zeros((n, c))
    for path in itertools.product(range(c), repeat=n):
        w = prior[path[0]] * np.prod([a[path[t - 1], path[t]] for t in range(1, n)]) * np.prod(
            [e[t, path[t]] for t in range(n)])
        for t in range(n):
            q[t, path[t]] += w
    return q / q.sum(1, keepdims=True)


@pytest.mark.parametrize("mix, temperature", [(1.0, 1.0), (0.5, 0.75), (0.25, 0.5), (0.0, 0.5)])
def test_decoding_is_exact_forward_backward(mix, temperature):
    rng = np.random.default_rng(0)
    c, n = 3, 5
    probs = _softmax(rng.normal(size=(n, c)) * 2)
    transition = rng.dirichlet(np.ones(c), size=c)
    prior = rng.dirichlet(np.ones(c))
    got = chain.decode(probs, np.zeros(n, int), transition, prior, mix, temperature)
    np.testing.assert_allclose(got, _brute_force(probs, transition, prior, mix, temperature), rtol=1e-9, atol=1e-12)


def test_dialogues_decoded_together_are_decoded_as_if_alone():
    rng = np.random.default_rng(1)
    c, lengths = 4, [1, 7, 3, 12]
    dialogue = np.repeat(np.arange(len(lengths)) * 10 + 3, lengths)  # any store indices
    probs = _softmax(rng.normal(size=(sum(lengths), c)))
    transition, prior = rng.dirichlet(np.ones(c), size=c), rng.dirichlet(np.ones(c))
    together = chain.decode(probs, dialogue, transition, prior, 0.75, 0.5)
    alone = np.concatenate([chain.decode(probs[dialogue == d], dialogue[dialogue == d], transition, prior, 0.75, 0.5)
                            for d in np.unique(dialogue)])
    np.testing.assert_allclose(together, alone, rtol=1e-12)


def test_the_identity_setting_changes_nothing_and_mix_zero_reads_each_utterance_alone():
    rng = np.random.default_rng(2)
    probs = _softmax(rng.normal(size=(9, 3))).astype(np.float32)
    dialogue = np.repeat([0, 1], [4, 5])
    transition, prior = rng.dirichlet(np.ones(3), size=3), rng.dirichlet(np.ones(3))
    assert chain.decode(probs, dialogue, transition, prior, *chain.IDENTITY) is probs
    # mix 0: the chain's rows are the prior, so the neighbours carry nothing; temperature 1 then
    # gives back p itself, computed through the recursion
    np.testing.assert_allclose(chain.decode(probs.astype(float), dialogue, transition, prior, 0.0, 1.0 - 1e-12),
                               probs, rtol=1e-5)


def test_transitions_count_the_given_dialogues_only_with_one_added():
    labels = np.array([0, 0, 1, 1, 2, 0])
    offsets = np.array([0, 3, 6])  # dialogue 0: 0 0 1; dialogue 1: 1 2 0
    t = chain.transitions(labels, offsets, [0], 3)
    np.testing.assert_allclose(t[0], np.array([2, 2, 1]) / 5)  # 0->0 and 0->1 once each, plus one
    np.testing.assert_allclose(t[1], np.ones(3) / 3)  # no transition from 1 in dialogue 0
    np.testing.assert_allclose(t.sum(1), 1)


def _sticky(rng, n_dialogues, length, c, stay):
    labels, dialogue = [], []
    for d in range(n_dialogues):
        y = [int(rng.integers(c))]
        for _ in range(length - 1):
            y.append(y[-1] if rng.random() < stay else int(rng.integers(c)))
        labels += y
        dialogue += [d] * length
    return np.array(labels), np.array(dialogue)


def test_chosen_on_sticky_dialogues_it_decodes_and_helps_out_of_sample():
    rng = np.random.default_rng(3)
    c = 4
    prior = np.full(c, 1 / c)

    def split(n):
        y, d = _sticky(rng, n, 15, c, 0.8)
        return y, d, _softmax(np.eye(c)[y] * 1.0 + rng.normal(size=(len(y), c)))  # a weak classifier

    (y_tr, d_tr, _), (y_va, d_va, p_va), (y_te, d_te, p_te) = split(40), split(20), split(20)
    offsets = np.r_[0, np.cumsum(np.bincount(d_tr))]
    transition = chain.transitions(y_tr, offsets, range(40), c)
    mix, temperature = chain.choose(p_va, y_va, d_va, transition, prior)
    assert mix > 0
    before = (p_te.argmax(1) == y_te).mean()
    after = (chain.decode(p_te, d_te, transition, prior, mix, temperature).argmax(1) == y_te).mean()
    assert after > before + 0.1


def test_when_the_chain_carries_nothing_the_choice_is_no_decoding():
    """Transitions equal to the prior: every mix gives the same independent chain, so only the
    temperatures (which a calibrated posterior loses by) and the tie rule decide."""
    rng = np.random.default_rng(4)
    c = 3
    prior = np.full(c, 1 / c)
    y = rng.integers(c, size=600)
    d = np.repeat(np.arange(40), 15)
    # a calibrated classifier: its posterior is the exact Bayes posterior of a Gaussian emission
    z = np.eye(c)[y] * 1.5 + rng.normal(size=(600, c))
    p = _softmax(1.5 * z)
    transition = np.full((c, c), 1 / c)  # what an independent chain's counts tend to
    assert chain.choose(p, y, d, transition, prior) == chain.IDENTITY


def test_a_setting_that_lowers_validation_wf1_is_never_chosen():
    """For a classifier of pure noise on sticky dialogues the likelihood alone can prefer a setting
    that lowers the weighted F1 (here in trial 1: (0.25, 0.5), 0.233 -> 0.223); it is no candidate."""
    rng = np.random.default_rng(5)
    c = 4
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    for trial in range(5):
        y, d = _sticky(rng, 20, 12, c, 0.8)
        p = _softmax(rng.normal(size=(len(y), c)))  # reads nothing of the label
        offsets = np.r_[0, np.cumsum(np.bincount(d))]
        transition = chain.transitions(y, offsets, range(20), c)
        setting = chain.choose(p, y, d, transition, prior)
        wf1 = lambda q: classification_metrics(y, q.argmax(1), range(c))["weighted_f1"]  # noqa: E731
        assert wf1(chain.decode(p, d, transition, prior, *setting)) >= wf1(p)
