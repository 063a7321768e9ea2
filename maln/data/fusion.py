"""Synthetic kinds with an exact Bayes oracle (maln/data/oracle.py), written in the same real raw
layouts as the `styled` default of maln/data/synthetic.py. No speaker styles or tendencies: labels
follow a sticky first-order chain per dialogue (stay with probability `stay`, else draw from the
benchmark's class prior; its stationary law is that prior), and given the label each utterance's
features follow an oracle.Emission. Speakers are still written (2 parties 'M'/'F' for IEMOCAP-like
files, one-hot of 9 slots for MELD-like ones) but carry nothing.

- independent: x_m = prototype_m[y] + N(0, I), conditionally independent given the label (a control:
  the joint and the late-fusion oracle coincide).
- nuisance: x_m = prototype_m[y] + B_m z + N(0, I), with z ~ N(0, I_rank) per utterance shared by
  the modalities. B_m's columns are random centred combinations of modality m's class prototype
  directions, drawn independently per modality, of length scale[m]: z imitates emotion shifts in
  every modality, but a different shift in each, so only the modalities together can tell it from
  an emotion (the joint rule removes it; each modality alone must discount those directions).
- interaction: a binary latent s ~ Bernoulli(probability) per utterance. When s = 1 the `inverted`
  modality shows the prototype of the valence-inverted class (INVERT), and the `revealed_by`
  modality is shifted by `reveal` noise units along a fixed direction. So the inverted modality's
  emotion is readable only together with the revealing one (give the latter a small `signal`).
"""

from __future__ import annotations

import numpy as np

from maln.data import layouts
from maln.data.oracle import Chain, Emission
from maln.data.shapes import MELD_PARTIES, PRIORS, check_sizes
from maln.errors import ConfigError

KINDS = ("independent", "nuisance", "interaction")
# Valence inversion, an involution on the class indices: a positive class <-> a negative one of
# similar arousal. IEMOCAP (hap, sad, neu, ang, exc, fru): hap <-> fru, exc <-> ang, and neu <-> sad
# so that every class has a partner (the inverted modality alone settles no emotion). MELD
# (neutral, surprise, fear, sadness, joy, disgust, anger): joy <-> sadness, surprise <-> anger,
# fear <-> disgust; neutral stays.
INVERT = {
    "conv-emotion-iemocap": (5, 2, 1, 4, 3, 0),
    "conv-emotion-meld": (0, 6, 5, 4, 3, 2, 1),
}
SWITCH = 0.8  # probability that the next utterance is by another party (as the styled kind)


def _unit(v):
    return v / np.linalg.norm(v, axis=0, keepdims=True)


def emission(rng, base: str, kind: str, cfg: dict, dims: dict) -> Emission:
    """The class-conditional law of a kind (module docstring); draws its constants from `rng`."""
    c = len(INVERT[base])
    directions = {m: rng.normal(size=(c, d)) for m, d in dims.items()}
    directions = {m: v / np.linalg.norm(v, axis=1, keepdims=True) for m, v in directions.items()}
    protos = {m: float(cfg["signal"][m]) * directions[m] for m in dims}
    loadings = {m: np.zeros((d, 0)) for m, d in dims.items()}
    if kind == "independent":
        return Emission(np.ones(1), {m: p[None] for m, p in protos.items()}, loadings)
    if kind == "nuisance":
        spec = cfg["nuisance"]
        rank = int(spec["rank"])
        for m in dims:
            w = rng.normal(size=(c, rank))
            w -= w.mean(0, keepdims=True)  # centred: a combination of differences of prototypes
            loadings[m] = float(spec["scale"].get(m, 0.0)) * _unit(directions[m].T @ w)
        return Emission(np.ones(1), {m: p[None] for m, p in protos.items()}, loadings)
    if kind == "interaction":
        spec = cfg["interaction"]
        inv, rev = spec["inverted"], spec["revealed_by"]
        if inv == rev or inv not in dims or rev not in dims:
            raise ConfigError(f"synthetic.interaction: `inverted` and `revealed_by` must be two different "
                              f"modalities of this layout ({', '.join(dims)})")
        means = {m: np.stack([p, p]) for m, p in protos.items()}
        means[inv][1] = protos[inv][list(INVERT[base])]
        shift = rng.normal(size=dims[rev])
        means[rev][1] = protos[rev] + float(spec["reveal"]) * shift / np.linalg.norm(shift)
        p = float(spec["probability"])
        return Emission(np.array([1 - p, p]), means, loadings)
    raise ConfigError(f"synthetic.kind: unknown kind {kind!r}")


def draw_latents(rng, em: Emission, n: int):
    """Per utterance: the component k [n] and the shared z [n, r] (the generator's own draws)."""
    k = rng.choice(len(em.weights), size=n, p=em.weights)
    rank = next(iter(em.loadings.values())).shape[1]
    return k, rng.normal(size=(n, rank))


def emit(rng, em: Emission, labels, k, z) -> dict:
    """Features {m: [n, d_m]} given labels, components and z (noise drawn from `rng`), as float32."""
    out = {}
    for m, mu in em.means.items():
        x = mu[k, labels] + z @ em.loadings[m].T + rng.normal(size=(len(labels), mu.shape[2]))
        out[m] = x.astype(np.float32)
    return out


def _labels(rng, chain: Chain, length: int) -> list:
    y = [int(rng.choice(len(chain.initial), p=chain.initial))]
    for _ in range(length - 1):
        y.append(int(rng.choice(len(chain.initial), p=chain.transition[y[-1]])))
    return y


def _speakers(rng, length: int, n_parties: int) -> list:
    s = int(rng.integers(n_parties))
    out = []
    for t in range(length):
        if t and n_parties > 1 and rng.random() < SWITCH:
            s = int((s + rng.integers(1, n_parties)) % n_parties)
        out.append(s)
    return out


def sample(layout_name: str, cfg: dict):
    """(dialogues, test ids, emission, chain) of a dataset of an oracle kind: dialogues as a list of
    (id, speakers, labels, {m: [L, d_m] float32}) in file order, train first."""
    layout = layouts.get(layout_name)
    base = layout.synthetic_of
    dims = check_sizes(layout, cfg)
    rng = np.random.default_rng(cfg["seed"])
    em = emission(rng, base, cfg["kind"], cfg, dims)
    chain = Chain.sticky(PRIORS[base], float(cfg["stay"]))
    iemocap = base == "conv-emotion-iemocap"
    lo, hi = cfg["length"]
    n = cfg["dialogues"]
    n_test = max(1, round(n * cfg["test_fraction"]))
    out = []
    for i in range(n):
        vid = f"syn{i:04d}" if iemocap else i  # real MELD keys are integers
        length = int(rng.integers(lo, hi + 1))
        parties = 2 if iemocap else min(length, int(rng.choice(len(MELD_PARTIES), p=MELD_PARTIES)) + 1)
        speakers = _speakers(rng, length, parties)
        labels = _labels(rng, chain, length)
        k, z = draw_latents(rng, em, length)
        out.append((vid, speakers, labels, emit(rng, em, np.array(labels), k, z)))
    return out, [d[0] for d in out[n - n_test:]], em, chain
