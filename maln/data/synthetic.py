"""The embedded default: synthetic dialogues written in the real raw layouts, so that the readers,
validation and the store run on them exactly as on the real files.

Planted structure, so a model has something real to find and the ablations have something to show:
- each modality carries the label as a class prototype plus noise; the registry's `signal:` sets each
  modality's strength (the defaults: text strongest, visual weakest; 0 makes a modality pure noise,
  which is how synthetic-iemocap-noise checks that a fusion model does not memorise through it);
- every speaker has an emotional tendency (a distribution over classes) and a feature "style" (an
  offset added to all their utterances), which the speaker-characteristic module can learn;
- emotions persist: a speaker often keeps their last emotion, or takes up the previous utterance's.
The same seed gives the same file, byte for byte.

That is the `styled` kind, the default (a `synthetic:` entry without `kind`). Its modalities are
independent given the labels and speakers, so late fusion is optimal on it. The other kinds
(`kind: independent | nuisance | interaction`, maln/data/fusion.py) drop the speaker effects, may make
the modalities dependent given the emotion, and write an exact Bayes oracle beside the raw file
(maln/data/oracle.py).
"""

from __future__ import annotations

import pickle

import numpy as np

from maln import io
from maln.data import layouts
from maln.data.shapes import MELD_PARTIES, MELD_SLOTS, PRIORS, check_sizes, has_oracle

STYLE = 1.0  # size of each speaker's feature offset, in noise units
KEEP_OWN = 0.5  # probability that a speaker repeats their last emotion
TAKE_UP = 0.2  # probability that an utterance takes the previous utterance's emotion
SWITCH = 0.8  # probability that the next utterance is by another party


def _dialogue(rng, length, n_parties, n_classes, priors, prototypes, dims):
    tendency = rng.dirichlet(priors * 4.0, size=n_parties)
    style = {m: rng.normal(size=(n_parties, d)) * (STYLE / np.sqrt(d)) for m, d in dims.items()}
    speakers, labels, last = [], [], [None] * n_parties
    s = int(rng.integers(n_parties))
    for t in range(length):
        if t and n_parties > 1 and rng.random() < SWITCH:
            s = int((s + rng.integers(1, n_parties)) % n_parties)
        r = rng.random()
        if last[s] is not None and r < KEEP_OWN:
            y = last[s]
        elif labels and r < KEEP_OWN + TAKE_UP:
            y = labels[-1]
        else:
            y = int(rng.choice(n_classes, p=tendency[s]))
        last[s] = y
        speakers.append(s)
        labels.append(y)
    spk, lab = np.array(speakers), np.array(labels)
    features = {
        m: (prototypes[m][lab] + style[m][spk] + rng.normal(size=(length, d))).astype(np.float32)
        for m, d in dims.items()
    }
    return speakers, labels, features


def generate(layout_name: str, cfg: dict) -> tuple:
    """The raw tuple of a synthetic dataset in its real layout (conv-emotion IEMOCAP or MELD)."""
    if has_oracle(cfg):
        from maln.data import fusion

        return pack(layout_name, *fusion.sample(layout_name, cfg)[:2])
    layout = layouts.get(layout_name)
    base = layout.synthetic_of
    rng = np.random.default_rng(cfg["seed"])
    n_classes = len(layout.class_names)
    priors = PRIORS[base]
    dims = check_sizes(layout, cfg)
    prototypes = {}
    for m, d in dims.items():
        # class prototypes at distance signal[m] from the origin, in noise units (the noise is N(0, I))
        directions = rng.normal(size=(n_classes, d))
        prototypes[m] = cfg["signal"][m] * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    lo, hi = cfg["length"]
    n = cfg["dialogues"]
    n_test = max(1, round(n * cfg["test_fraction"]))
    iemocap = base == "conv-emotion-iemocap"
    dlgs = []
    for i in range(n):
        vid = f"syn{i:04d}" if iemocap else i  # real MELD keys are integers
        length = int(rng.integers(lo, hi + 1))
        parties = 2 if iemocap else min(length, int(rng.choice(len(MELD_PARTIES), p=MELD_PARTIES)) + 1)
        dlgs.append((vid, *_dialogue(rng, length, parties, n_classes, priors, prototypes, dims)))
    return pack(layout_name, dlgs, [d[0] for d in dlgs[n - n_test:]])


def pack(layout_name: str, dialogues: list, test_ids: list) -> tuple:
    """The raw tuple of `layout_name`'s real layout holding `dialogues`, a list of (id, speakers,
    labels, {m: [L, d_m]}); the ids not in `test_ids` make the train split."""
    iemocap = layouts.get(layout_name).synthetic_of == "conv-emotion-iemocap"
    spk, lab, feats, sentences, utt_ids = {}, {}, {}, {}, {}
    for vid, speakers, labels, features in dialogues:
        length = len(labels)
        if iemocap:
            spk[vid] = ["MF"[s] for s in speakers]
        else:
            spk[vid] = [[1 if j == s else 0 for j in range(MELD_SLOTS)] for s in speakers]
        lab[vid] = labels
        for m, x in features.items():
            feats.setdefault(m, {})[vid] = x
        utt_ids[vid] = [f"{vid}_{t:03d}" for t in range(length)]
        sentences[vid] = [f"synthetic utterance {t}" for t in range(length)]
    ids = [d[0] for d in dialogues]
    train, test = [i for i in ids if i not in set(test_ids)], [i for i in ids if i in set(test_ids)]
    if iemocap:
        return (utt_ids, spk, lab, feats["text"], feats["audio"], feats["visual"], sentences, train, test)
    sentiment = {k: [0 if y == 0 else 1 if y in (1, 4) else 2 for y in v] for k, v in lab.items()}
    return (utt_ids, spk, lab, feats["text"], feats["audio"], sentences, train, test, sentiment)


def write(path, layout_name: str, cfg: dict) -> None:
    """Write the raw file; for a kind with an exact oracle, its oracle beside it first
    (maln.data.oracle.oracle_path), both atomically and from the same draws."""
    if not has_oracle(cfg):
        io.write_bytes(path, pickle.dumps(generate(layout_name, cfg), protocol=4))
        return
    from maln.data import fusion, oracle

    dialogues, test_ids, emission, chain = fusion.sample(layout_name, cfg)
    names = layouts.get(layout_name).class_names
    oracle.write_oracle(oracle.oracle_path(path), [(vid, y, x) for vid, _, y, x in dialogues], test_ids,
                        emission, chain, names)
    io.write_bytes(path, pickle.dumps(pack(layout_name, dialogues, test_ids), protocol=4))
