"""Each validation failure is caught, naming the file, the dialogue and the problem."""

import re

import numpy as np
import pytest

from builders import dialogues, raw_tuple, write_pickle
from maln.data import readers
from maln.data.validate import validate
from maln.errors import DataError


def read_broken(tmp_path, mutate, layout="conv-emotion-iemocap"):
    tup = list(raw_tuple(layout, dialogues(n=8)))
    mutate(tup)
    path = write_pickle(tmp_path / "broken.pkl", tuple(tup))
    raw = readers.read(layout, {"main": path})
    validate(raw)


def set_text(tup, k, value):
    tup[3][k] = value


CASES = {
    "utterance counts disagree": (lambda t: t[2]["d03"].append(0), "d03", "utterance counts disagree"),
    "speaker count disagrees": (lambda t: t[1]["d03"].pop(), "d03", "utterance counts disagree"),
    "nan feature": (lambda t: t[4]["d02"].__setitem__((0, 1), np.nan), "d02", "audio features are not finite"),
    "inf feature": (lambda t: t[3]["d01"].__setitem__((1, 0), np.inf), "d01", "text features are not finite"),
    "label out of range": (lambda t: t[2]["d04"].__setitem__(0, 6), "d04", "label 6 at utterance 0 is outside 0..5"),
    "negative label": (lambda t: t[2]["d04"].__setitem__(0, -1), "d04", "label -1"),
    "dimension changes": (lambda t: set_text(t, "d05", np.zeros((len(t[2]["d05"]), 4), np.float32)), "d05",
                          "text features are 4-d here but 5-d"),
    "empty dialogue": (lambda t: [t[i].__setitem__("d02", [] if i in (1, 2) else np.zeros((0, x.shape[1]), np.float32))
                                  for i, x in ((1, None), (2, None), (3, t[3]["d02"]), (4, t[4]["d02"]), (5, t[5]["d02"]))],
                       "d02", "is empty"),
    "split overlap": (lambda t: t[8].append("d00"), "d00", "is in both the train and the test split"),
    "missing from splits": (lambda t: t[7].remove("d01"), "d01", "is in no split"),
    "split lists unknown dialogue": (lambda t: t[8].append("zzz"), "zzz", "listed in the test split but has no features"),
    "duplicate id in a split": (lambda t: t[7].append("d01"), "d01", "more than once"),
    "duplicate id across types": (lambda t: [(t[i].__setitem__(1, t[i]["d01"]), t[i].__setitem__("1", t[i]["d01"]))
                                             for i in range(6)], "1", "two dialogue ids read the same"),
    "modality missing for a dialogue": (lambda t: t[5].pop("d06"), "d06", "has no visual features"),
    "features wrong type": (lambda t: set_text(t, "d06", "oops"), "d06", "text features"),
    "labels wrong type": (lambda t: t[2].__setitem__("d06", ["a"] * len(t[2]["d06"])), "d06", "labels are not"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_failure_names_file_dialogue_and_problem(tmp_path, case):
    mutate, dialogue, message = CASES[case]
    with pytest.raises(DataError) as e:
        read_broken(tmp_path, mutate)
    assert "broken.pkl" in str(e.value)
    assert f"dialogue {dialogue!r}" in str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


def test_one_hot_speakers_must_be_one_hot(tmp_path):
    def two_ones(t):
        t[1]["d00"][0] = [1, 1, 0, 0, 0, 0, 0, 0, 0]

    with pytest.raises(DataError, match="one-hot"):
        read_broken(tmp_path, two_ones, layout="conv-emotion-meld")


def test_zero_variance_features_are_valid(tmp_path):
    def constant(t):
        for k in t[3]:
            t[3][k][:] = 1.0

    read_broken(tmp_path, constant)
