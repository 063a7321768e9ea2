import json

import numpy as np
import pytest

from builders import dialogues, raw_tuple, write_pickle
from maln.data import readers
from maln.data.store import VALID_RULE, carve_validation, load_store, write_store
from maln.data.validate import validate
from maln.errors import DataError


def make_store(tmp_path, n=12, layout="conv-emotion-iemocap"):
    dlg = dialogues(n=n)
    path = write_pickle(tmp_path / "f.pkl", raw_tuple(layout, dlg))
    raw = readers.read(layout, {"main": path})
    validate(raw)
    write_store(raw, tmp_path / "store", "mini", 0.25, [{"role": "main", "path": "f.pkl"}])
    return dlg, raw


def test_store_round_trip_without_pickle(tmp_path):
    dlg, raw = make_store(tmp_path)
    store = load_store(tmp_path / "store")
    assert store.dialogue_ids == list(dlg)
    assert store.modalities == {"text": 5, "audio": 4, "visual": 3}
    assert store.class_names == ["hap", "sad", "neu", "ang", "exc", "fru"]
    for i, k in enumerate(store.dialogue_ids):
        a, b = store.offsets[i], store.offsets[i + 1]
        np.testing.assert_array_equal(store.labels[a:b], dlg[k]["labels"])
        np.testing.assert_array_equal(store.speakers[a:b], raw.dialogues[k].speakers)
        for m in store.modalities:
            np.testing.assert_array_equal(store.features[m][a:b], dlg[k]["features"][m])
    for f in (tmp_path / "store").iterdir():
        if f.suffix == ".npy":
            np.load(f, allow_pickle=False)  # no object arrays anywhere


def test_validation_split_is_carved_by_the_documented_rule(tmp_path):
    make_store(tmp_path, n=12)
    store = load_store(tmp_path / "store")
    meta = store.meta
    assert meta["splits"] == {"train": 7, "valid": 2, "test": 3}
    assert meta["valid_rule"] == VALID_RULE.replace("valid_fraction", "0.25")
    train_ids = [k for k in store.dialogue_ids[:9]]
    assert [store.dialogue_ids[i] for i in store.dialogues("valid")] == carve_validation(train_ids, 0.25)[1]


def test_carve_is_independent_of_order():
    ids = [f"dlg{i}" for i in range(40)]
    _, v1 = carve_validation(ids, 0.1)
    _, v2 = carve_validation(list(reversed(ids)), 0.1)
    assert sorted(v1) == sorted(v2) and len(v1) == 4


def test_corrupted_array_is_detected(tmp_path):
    make_store(tmp_path)
    f = tmp_path / "store" / "text.npy"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupted"):
        load_store(tmp_path / "store")


def test_edited_meta_is_detected(tmp_path):
    make_store(tmp_path)
    meta_path = tmp_path / "store" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["class_names"][0] = "happy"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="store_hash"):
        load_store(tmp_path / "store")


def test_missing_store_says_how_to_make_it(tmp_path):
    with pytest.raises(DataError, match="maln prepare"):
        load_store(tmp_path / "nothing")
