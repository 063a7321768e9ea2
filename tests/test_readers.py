"""Every layout of data-sources.md, read from small files written in that layout."""

import numpy as np
import pytest

from builders import dialogues, raw_tuple, write_pickle
from maln.data import readers
from maln.data.layouts import LAYOUTS
from maln.data.validate import validate
from maln.errors import DataError

DIMS = {
    "conv-emotion-iemocap": {"text": 7, "audio": 5, "visual": 3},
    "conv-emotion-meld": {"text": 6, "audio": 4},
    "mmgcn-meld": {"text": 6, "audio": 4, "visual": 3},
    "cosmic-iemocap": {"text": 8},
    "cosmic-meld": {"text": 8},
}


@pytest.mark.parametrize("layout", list(DIMS))
@pytest.mark.parametrize("protocol", [2, 4])
def test_reader_reads_its_layout_with_dimensions_from_the_data(tmp_path, layout, protocol):
    parties = 2 if "iemocap" in layout else 5
    dlg = dialogues(n=8, dims=DIMS[layout], parties=parties, n_classes=len(LAYOUTS[layout].class_names))
    valid = ["d05"] if layout.startswith("cosmic") else None
    train = [k for k in dlg if k not in ("d05", "d06", "d07")] if valid else None
    test = ["d06", "d07"] if valid else None
    path = write_pickle(tmp_path / "f.pkl", raw_tuple(layout, dlg, train=train, test=test, valid=valid), protocol)
    raw = readers.read(layout, {"main": path})
    validate(raw)
    assert raw.modalities == LAYOUTS[layout].modalities
    assert list(raw.dialogues) == list(dlg)
    for k, d in raw.dialogues.items():
        for m, dim in DIMS[layout].items():
            assert d.features[m].shape == (len(dlg[k]["labels"]), dim)
        np.testing.assert_array_equal(d.labels, dlg[k]["labels"])
        symbols = [raw.speaker_symbols[s] for s in d.speakers]
        expected = ["MF"[s] for s in dlg[k]["speakers"]] if "iemocap" in layout else [str(s) for s in dlg[k]["speakers"]]
        assert symbols == expected
    if layout.startswith("cosmic"):  # text is the mean of the four RoBERTa layers (x 0.4, 0.8, 1.2, 1.6)
        np.testing.assert_allclose(raw.dialogues["d00"].features["text"], dlg["d00"]["features"]["text"], rtol=1e-5)
        assert raw.splits["valid"] == ["d05"]


def test_meld_integer_ids_become_strings(tmp_path):
    dlg = dialogues(n=5, dims=DIMS["conv-emotion-meld"], parties=3, n_classes=7)
    path = write_pickle(tmp_path / "m.pkl", raw_tuple("conv-emotion-meld", dlg, int_ids=True))
    raw = readers.read("conv-emotion-meld", {"main": path})
    assert list(raw.dialogues) == ["0", "1", "2", "3", "4"]
    assert raw.splits["test"] == ["4"]


def composite_files(tmp_path, dlg, text_dlg=None):
    text = write_pickle(tmp_path / "roberta.pkl", raw_tuple(
        "cosmic-iemocap", text_dlg or dlg, train=["d00", "d01", "d02", "d03", "d04"], valid=["d05"], test=["d06", "d07"]))
    av = write_pickle(tmp_path / "IEMOCAP_features.pkl", raw_tuple(
        "conv-emotion-iemocap", dlg, train=["d00", "d01", "d02", "d03", "d04", "d05"], test=["d06", "d07"]))
    return {"text": text, "audio_visual": av}


def test_composite_joins_text_and_audio_visual_by_dialogue(tmp_path):
    dlg = dialogues(n=8, dims={"text": 9, "audio": 5, "visual": 3})
    raw = readers.read("composite-iemocap", composite_files(tmp_path, dlg))
    validate(raw)
    assert raw.modalities == ("text", "audio", "visual")
    assert raw.splits["valid"] == ["d05"]
    d = raw.dialogues["d03"]
    np.testing.assert_allclose(d.features["text"], dlg["d03"]["features"]["text"], rtol=1e-5)
    np.testing.assert_array_equal(d.features["audio"], dlg["d03"]["features"]["audio"])


@pytest.mark.parametrize("break_it, message", [
    (lambda t: t["d02"]["labels"].__setitem__(1, (t["d02"]["labels"][1] + 1) % 6), "utterance 1 is labelled"),
    (lambda t: t["d02"]["speakers"].__setitem__(0, 1 - t["d02"]["speakers"][0]), "utterance 0 is spoken by"),
    (lambda t: t.pop("d04"), "different dialogues"),
])
def test_composite_alignment_is_checked(tmp_path, break_it, message):
    import copy

    dlg = dialogues(n=8, dims={"text": 9, "audio": 5, "visual": 3})
    text_dlg = copy.deepcopy(dlg)
    break_it(text_dlg)
    files = composite_files(tmp_path, dlg, text_dlg)
    with pytest.raises(DataError, match=message):
        readers.read("composite-iemocap", files)


def test_composite_utterance_count_mismatch(tmp_path):
    import copy

    dlg = dialogues(n=8, dims={"text": 9, "audio": 5, "visual": 3})
    text_dlg = copy.deepcopy(dlg)
    d = text_dlg["d01"]
    d["labels"].append(0)
    d["speakers"].append(0)
    d["features"]["text"] = np.vstack([d["features"]["text"], np.zeros((1, 9), np.float32)])
    with pytest.raises(DataError, match=r"not aligned: \d+ utterances in the text file"):
        readers.read("composite-iemocap", composite_files(tmp_path, dlg, text_dlg))


@pytest.mark.parametrize("obj, message", [
    ({"a": 1}, "expects a 9-tuple"),
    (tuple(range(10)), "found a tuple of 10 items"),
])
def test_wrong_arity_is_reported(tmp_path, obj, message):
    path = write_pickle(tmp_path / "x.pkl", obj)
    with pytest.raises(DataError, match=message):
        readers.read("conv-emotion-iemocap", {"main": path})
