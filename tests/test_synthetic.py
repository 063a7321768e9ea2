"""The embedded default data: real layouts, deterministic, with the structure it promises."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from builders import REPO
from maln.config import load_params
from maln.data import readers, synthetic
from maln.data.store import load_store, write_store
from maln.data.validate import validate


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


@pytest.mark.parametrize("name", ["synthetic-iemocap", "synthetic-meld"])
def test_same_seed_same_bytes(tmp_path, params, name):
    entry = params.dataset(name)
    synthetic.write(tmp_path / "a.pkl", entry["layout"], entry["synthetic"])
    synthetic.write(tmp_path / "b.pkl", entry["layout"], entry["synthetic"])
    assert (tmp_path / "a.pkl").read_bytes() == (tmp_path / "b.pkl").read_bytes()
    other = {**entry["synthetic"], "seed": entry["synthetic"]["seed"] + 1}
    synthetic.write(tmp_path / "c.pkl", entry["layout"], other)
    assert (tmp_path / "c.pkl").read_bytes() != (tmp_path / "a.pkl").read_bytes()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, params):
    out = {}
    for name in ("synthetic-iemocap", "synthetic-meld"):
        tmp = tmp_path_factory.mktemp(name)
        entry = params.dataset(name)
        synthetic.write(tmp / "raw.pkl", entry["layout"], entry["synthetic"])
        raw = readers.read(entry["layout"], {"main": tmp / "raw.pkl"})  # the real layout's reader
        validate(raw)
        write_store(raw, tmp / "store", name, 0.1, [])
        out[name] = load_store(tmp / "store")
    return out


def utterances(store, split):
    idx = store.dialogues(split)
    rows = np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in idx])
    return rows


def test_shapes_and_classes_match_the_real_benchmarks(stores):
    iem, meld = stores["synthetic-iemocap"], stores["synthetic-meld"]
    assert iem.modalities == {"text": 100, "audio": 100, "visual": 512}
    assert meld.modalities == {"text": 600, "audio": 300}
    assert len(iem.class_names) == 6 and len(meld.class_names) == 7
    assert iem.meta["n_parties"] == 2 and meld.meta["n_parties"] >= 6
    counts = np.bincount(meld.labels, minlength=7) / len(meld.labels)
    assert counts[0] > 0.35 and counts[2] < 0.06 and counts[5] < 0.06  # neutral dominates, fear/disgust rare


def test_text_carries_the_most_label_signal_and_visual_the_least(stores):
    store = stores["synthetic-iemocap"]
    train, test = utterances(store, "train"), utterances(store, "test")
    acc = {}
    for m in ("text", "audio", "visual"):
        x = np.asarray(store.features[m])
        clf = LogisticRegression(max_iter=300, C=0.1).fit(x[train], store.labels[train])
        acc[m] = clf.score(x[test], store.labels[test])
    majority = np.bincount(store.labels[train]).max() / len(train)
    assert acc["text"] > acc["audio"] > acc["visual"] > majority, acc


def test_emotions_persist_within_a_speaker(stores):
    store = stores["synthetic-iemocap"]
    same, n = 0, 0
    for i in range(len(store.offsets) - 1):
        a, b = store.offsets[i], store.offsets[i + 1]
        last = {}
        for s, y in zip(store.speakers[a:b], store.labels[a:b]):
            if s in last:
                same += last[s] == y
                n += 1
            last[s] = y
    chance = (np.bincount(store.labels) / len(store.labels)) ** 2
    assert same / n > chance.sum() + 0.3


def test_noise_dataset_is_the_same_dialogues_with_uninformative_audio_and_visual(tmp_path, params, stores):
    entry = params.dataset("synthetic-iemocap-noise")
    synthetic.write(tmp_path / "raw.pkl", entry["layout"], entry["synthetic"])
    raw = readers.read(entry["layout"], {"main": tmp_path / "raw.pkl"})
    write_store(raw, tmp_path / "store", "synthetic-iemocap-noise", entry["valid_fraction"], [])
    noise, base = load_store(tmp_path / "store"), stores["synthetic-iemocap"]
    # one seed, one generator: same dialogues, speakers, labels and text; only audio/visual lose their signal
    assert np.array_equal(noise.labels, base.labels) and np.array_equal(noise.speakers, base.speakers)
    assert np.array_equal(np.asarray(noise.features["text"]), np.asarray(base.features["text"]))
    train, test = utterances(noise, "train"), utterances(noise, "test")
    majority = np.bincount(noise.labels[train]).max() / len(train)
    for m in ("audio", "visual"):
        for store, informative in ((noise, False), (base, True)):
            x = np.asarray(store.features[m])
            clf = LogisticRegression(max_iter=300, C=0.01).fit(x[train], store.labels[train])
            assert (clf.score(x[test], store.labels[test]) > majority + 0.1) == informative, (m, informative)
