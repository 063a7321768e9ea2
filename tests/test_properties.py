"""Property-based tests: the store round-trips any valid dataset, and validation accepts every valid
dataset and rejects each single corruption of one."""

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maln.data.readers import Dialogue, RawDataset
from maln.data.store import load_store, write_store
from maln.data.validate import validate
from maln.errors import DataError

CLASSES = ("a", "b", "c")


@st.composite
def datasets(draw):
    """Valid datasets of 2..6 dialogues, 1..5 utterances, 1..3 modalities of 1..4 dimensions."""
    n = draw(st.integers(2, 6))
    modalities = draw(st.sampled_from([("text",), ("text", "audio"), ("text", "audio", "visual")]))
    dims = {m: draw(st.integers(1, 4)) for m in modalities}
    floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    dialogues = {}
    for i in range(n):
        length = draw(st.integers(1, 5))
        dialogues[f"dlg{i}"] = Dialogue(
            speakers=np.array(draw(st.lists(st.integers(0, 3), min_size=length, max_size=length)), dtype=np.int64),
            labels=np.array(draw(st.lists(st.integers(0, len(CLASSES) - 1), min_size=length, max_size=length)), dtype=np.int64),
            features={m: np.array(draw(st.lists(st.lists(floats, min_size=d, max_size=d), min_size=length, max_size=length)),
                                  dtype=np.float32).reshape(length, d) for m, d in dims.items()},
        )
    ids = list(dialogues)
    cut = draw(st.integers(1, n - 1))
    return RawDataset("generated.pkl", "conv-emotion-iemocap", CLASSES, dialogues,
                      {"train": ids[:cut], "test": ids[cut:]}, ["0", "1", "2", "3"])


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(datasets())
def test_store_round_trips_any_valid_dataset(raw):
    validate(raw)
    with tempfile.TemporaryDirectory() as tmp:
        write_store(raw, Path(tmp) / "store", "generated", 0.3, [])
        store = load_store(Path(tmp) / "store")
        assert store.dialogue_ids == list(raw.dialogues)
        assert store.modalities == {m: x.shape[1] for m, x in next(iter(raw.dialogues.values())).features.items()}
        for i, k in enumerate(store.dialogue_ids):
            a, b = store.offsets[i], store.offsets[i + 1]
            d = raw.dialogues[k]
            np.testing.assert_array_equal(store.labels[a:b], d.labels)
            np.testing.assert_array_equal(store.speakers[a:b], d.speakers)
            for m, x in d.features.items():
                np.testing.assert_array_equal(store.features[m][a:b], x)
        split_of = {k: s for s, ids in raw.splits.items() for k in ids}
        for i, k in enumerate(store.dialogue_ids):
            name = ("train", "valid", "test")[store.split[i]]
            assert name == split_of[k] or (name == "valid" and split_of[k] == "train")


def _corrupt(raw, kind, rng):
    raw = copy.deepcopy(raw)
    ids = list(raw.dialogues)
    k = ids[rng.integers(len(ids))]
    d = raw.dialogues[k]
    m = next(iter(d.features))
    if kind == "nan":
        d.features[m][rng.integers(len(d.labels)), 0] = np.nan
    elif kind == "inf":
        d.features[m][rng.integers(len(d.labels)), 0] = -np.inf
    elif kind == "label":
        d.labels[rng.integers(len(d.labels))] = len(CLASSES)
    elif kind == "count":
        d.labels = np.append(d.labels, 0)
    elif kind == "dimension":
        d.features[m] = np.zeros((len(d.labels), d.features[m].shape[1] + 1), np.float32)
    elif kind == "empty":
        d.labels, d.speakers = d.labels[:0], d.speakers[:0]
        d.features = {name: x[:0] for name, x in d.features.items()}
    elif kind == "overlap":
        raw.splits["test"].append(raw.splits["train"][0])
    elif kind == "unassigned":
        raw.splits["train"].remove(raw.splits["train"][0]) if len(raw.splits["train"]) > 1 else raw.splits["test"].pop()
    elif kind == "unknown":
        raw.splits["test"].append("ghost")
    elif kind == "modality":
        d.features.pop(m)
    return raw


KINDS = ["nan", "inf", "label", "count", "dimension", "empty", "overlap", "unassigned", "unknown", "modality"]


@PROPERTY
@given(datasets(), st.sampled_from(KINDS), st.integers(0, 2**31 - 1))
def test_validation_rejects_every_single_corruption(raw, kind, seed):
    validate(raw)  # the dataset as generated is valid
    if kind == "dimension" and len(raw.dialogues) < 2:
        return
    with pytest.raises(DataError):
        validate(_corrupt(raw, kind, np.random.default_rng(seed)))
