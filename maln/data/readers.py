"""Readers: one function per layout turns a raw file (read by the restricted unpickler) into a
RawDataset, the in-memory form that validation and the store share. Dimensions come from the data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maln.data import layouts, safe_pickle
from maln.errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass
class Dialogue:
    speakers: np.ndarray  # int64 [L], party index within the dialogue's file convention
    labels: np.ndarray  # int64 [L]
    features: dict  # modality -> float32 [L, dim]


@dataclass
class RawDataset:
    source: str  # the file(s), for messages
    layout: str
    class_names: tuple
    dialogues: dict  # id (str) -> Dialogue, in file order
    splits: dict  # 'train'/'test' (and 'valid' when the file ships one) -> list of ids
    speaker_symbols: list = field(default_factory=list)  # party index -> the file's symbol

    @property
    def modalities(self) -> tuple:
        first = next(iter(self.dialogues.values()), None)
        return tuple(first.features) if first else ()


def _tuple(obj, arity: int, names: str, source: str, layout: str) -> tuple:
    if not isinstance(obj, (tuple, list)) or len(obj) != arity:
        found = f"a {type(obj).__name__} of {len(obj)} items" if isinstance(obj, (tuple, list)) else f"a {type(obj).__name__}"
        raise DataError(source, f"layout {layout} expects a {arity}-tuple ({names}); found {found}")
    return tuple(obj)


def _mapping(obj, what: str, source: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(source, f"{what} should map dialogue ids to values; found a {type(obj).__name__}")
    return obj


def _id_list(obj, what: str, source: str) -> list[str]:
    if isinstance(obj, dict):
        obj = list(obj)
    if not isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        raise DataError(source, f"{what} should be a list of dialogue ids; found a {type(obj).__name__}")
    ids = [str(x) for x in obj]
    dupes = [k for k, n in Counter(ids).items() if n > 1]
    if dupes:
        raise DataError(source, f"{what} lists a dialogue more than once", dialogue=dupes[0])
    return ids


REAL = "biuf"  # numpy dtype kinds of real numbers: bool, signed and unsigned integers, floats


def _real_array(value, source: str, dialogue: str, what: str, expected: str = "real numbers") -> np.ndarray:
    """`value` as an array of real numbers, its dtype kept; the one check of the element type of
    features, labels and one-hot speakers. Any other dtype is refused by name: converting complex
    numbers drops their imaginary part, converting strings parses text, both silently."""
    try:
        arr = np.asarray(value)
        if arr.dtype.hasobject:  # a list of arrays of mixed types, or an object array: look inside once
            arr = np.asarray(arr.tolist())
    except (TypeError, ValueError):
        raise DataError(source, f"{what} are not a rectangular array of numbers", dialogue) from None
    if arr.size and arr.dtype.kind not in REAL:
        raise DataError(source, f"{what} are not {expected} (dtype {arr.dtype}; only bool, integer and float "
                                "arrays are read, nothing is converted from other types)", dialogue)
    return arr


def _float_matrix(value, source: str, dialogue: str, modality: str) -> np.ndarray:
    arr = _real_array(value, source, dialogue, f"{modality} features")
    if arr.ndim != 2:
        raise DataError(source, f"{modality} features have shape {arr.shape}; expected [utterances x dim]", dialogue)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        # the store keeps float32: a larger finite value would silently become inf there
        beyond = np.isfinite(arr) & (np.abs(arr) > np.finfo(np.float32).max)
    else:
        beyond = np.zeros(0, bool)
    if beyond.any():
        i, j = map(int, np.argwhere(beyond)[0])
        raise DataError(source, f"{modality} features exceed the float32 range ({arr[i, j]:g} at utterance {i}, "
                                f"dimension {j})", dialogue)
    return arr.astype(np.float32, copy=False)


def _int_vector(value, source: str, dialogue: str, what: str) -> np.ndarray:
    arr = _real_array(value, source, dialogue, what, "a list of integers")
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise DataError(source, f"{what} are not a list of integers (dtype {arr.dtype}, shape {arr.shape})", dialogue)
    return arr.astype(np.int64)


class _Speakers:
    """Turns a file's speaker notation into party indices: symbols ('M'/'F') or one-hot vectors."""

    def __init__(self, preferred=()):
        self.symbols = list(preferred)

    def __call__(self, value, source: str, dialogue: str) -> np.ndarray:
        if isinstance(value, np.ndarray) and value.ndim == 2 or (
            isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray))
        ):
            onehot = _real_array(value, source, dialogue, "speakers")
            if onehot.ndim != 2 or not np.all((onehot == 0) | (onehot == 1)) or not np.all(onehot.sum(1) == 1):
                raise DataError(source, "speakers should be one-hot vectors (exactly one 1 each)", dialogue)
            while len(self.symbols) < onehot.shape[1]:
                self.symbols.append(str(len(self.symbols)))
            return onehot.argmax(1).astype(np.int64)
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(source, f"speakers should be a list; found a {type(value).__name__}", dialogue)
        out = []
        for s in value:
            if not isinstance(s, (str, bytes, int, np.integer)) or isinstance(s, bool):
                raise DataError(source, f"speakers should be names (strings), party numbers (integers) or one-hot "
                                        f"vectors; found a {type(s).__name__} ({s!r:.40})", dialogue)
            s = str(s)
            if s not in self.symbols:
                self.symbols.append(s)
            out.append(self.symbols.index(s))
        return np.asarray(out, dtype=np.int64)


def _by_id(mapping: dict, what: str, source: str) -> dict:
    out = {}
    for k, v in mapping.items():
        if str(k) in out:
            raise DataError(source, f"{what}: two dialogue ids read the same ({k!r}); ids must be unique", str(k))
        out[str(k)] = v
    return out


def _dialogues(source, speakers, labels, features: dict, speaker_reader) -> dict:
    """Assemble dialogues from per-field dicts, naming the dialogue and the field that is missing."""
    fields = {"speakers": speakers, "labels": labels, **{f"{m} features": v for m, v in features.items()}}
    by_field = {what: _by_id(mapping, what, source) for what, mapping in fields.items()}
    ids = list(dict.fromkeys(k for mapping in by_field.values() for k in mapping))
    out = {}
    for k in ids:
        missing = [what for what, mapping in by_field.items() if k not in mapping]
        if missing:
            present = [what for what in fields if what not in missing]
            raise DataError(source, f"has no {', '.join(missing)} (it has {', '.join(present)})", k)
        out[k] = Dialogue(
            speakers=speaker_reader(by_field["speakers"][k], source, k),
            labels=_int_vector(by_field["labels"][k], source, k, "labels"),
            features={m: _float_matrix(by_field[f"{m} features"][k], source, k, m) for m in features},
        )
    return out


def _read(path: Path, source: str | None = None):
    return safe_pickle.load(path, source or str(path))


def read_conv_emotion_iemocap(path: Path, layout: str = "conv-emotion-iemocap") -> RawDataset:
    src = str(path)
    (vid_ids, speakers, labels, text, audio, visual, _sentences, train, test) = _tuple(
        _read(path), 9,
        "videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid",
        src, layout,
    )
    m = {name: _mapping(v, name, src) for name, v in
         (("videoSpeakers", speakers), ("videoLabels", labels), ("videoText", text), ("videoAudio", audio), ("videoVisual", visual))}
    splits = {"train": _id_list(train, "trainVid", src), "test": _id_list(test, "testVid", src)}
    reader = _Speakers(preferred=("M", "F"))  # conv-emotion's convention: M -> [1, 0]
    dialogues = _dialogues(src, m["videoSpeakers"], m["videoLabels"],
                           {"text": m["videoText"], "audio": m["videoAudio"], "visual": m["videoVisual"]}, reader)
    return RawDataset(src, layout, layouts.IEMOCAP_CLASSES, dialogues, splits, reader.symbols)


def read_conv_emotion_meld(path: Path, layout: str = "conv-emotion-meld") -> RawDataset:
    src = str(path)
    (vid_ids, speakers, labels, text, audio, _sentences, train, test, _sentiment) = _tuple(
        _read(path), 9,
        "videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoSentence, trainVid, testVid, videoLabelsSentiment",
        src, layout,
    )
    m = {name: _mapping(v, name, src) for name, v in
         (("videoSpeakers", speakers), ("videoLabels", labels), ("videoText", text), ("videoAudio", audio))}
    splits = {"train": _id_list(train, "trainVid", src), "test": _id_list(test, "testVid", src)}
    reader = _Speakers()
    dialogues = _dialogues(src, m["videoSpeakers"], m["videoLabels"],
                           {"text": m["videoText"], "audio": m["videoAudio"]}, reader)
    return RawDataset(src, layout, layouts.MELD_CLASSES, dialogues, splits, reader.symbols)


def read_mmgcn_meld(path: Path, layout: str = "mmgcn-meld") -> RawDataset:
    src = str(path)
    (vid_ids, speakers, labels, text, audio, visual, _sentences, train, test, _rest) = _tuple(
        _read(path), 10,
        "videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid, _",
        src, layout,
    )
    m = {name: _mapping(v, name, src) for name, v in
         (("videoSpeakers", speakers), ("videoLabels", labels), ("videoText", text), ("videoAudio", audio), ("videoVisual", visual))}
    splits = {"train": _id_list(train, "trainVid", src), "test": _id_list(test, "testVid", src)}
    reader = _Speakers()
    dialogues = _dialogues(src, m["videoSpeakers"], m["videoLabels"],
                           {"text": m["videoText"], "audio": m["videoAudio"], "visual": m["videoVisual"]}, reader)
    return RawDataset(src, layout, layouts.MELD_CLASSES, dialogues, splits, reader.symbols)


def _roberta_mean(layers: list[dict], src: str) -> dict:
    """The MALN authors' text modality: the mean of COSMIC's four RoBERTa layers."""
    first = layers[0]
    out = {}
    for k in first:
        parts = []
        for i, layer in enumerate(layers, 1):
            if k not in layer:
                raise DataError(src, f"roberta{i} has no features for this dialogue", str(k))
            parts.append(_float_matrix(layer[k], src, str(k), f"roberta{i}"))
        if len({p.shape for p in parts}) != 1:
            raise DataError(src, f"the four RoBERTa layers have different shapes {[p.shape for p in parts]}", str(k))
        out[k] = np.mean(parts, axis=0)
    return out


def read_cosmic_iemocap(path: Path, layout: str = "cosmic-iemocap") -> RawDataset:
    src = str(path)
    (speakers, labels, r1, r2, r3, r4, _sentences, train, test, valid) = _tuple(
        _read(path), 10, "speakers, labels, roberta1..4, sentences, trainIds, testIds, validIds", src, layout,
    )
    layers = [_mapping(r, f"roberta{i}", src) for i, r in enumerate((r1, r2, r3, r4), 1)]
    splits = {"train": _id_list(train, "trainIds", src), "valid": _id_list(valid, "validIds", src),
              "test": _id_list(test, "testIds", src)}
    reader = _Speakers(preferred=("M", "F"))
    dialogues = _dialogues(src, _mapping(speakers, "speakers", src), _mapping(labels, "labels", src),
                           {"text": _roberta_mean(layers, src)}, reader)
    return RawDataset(src, layout, layouts.IEMOCAP_CLASSES, dialogues, splits, reader.symbols)


def read_cosmic_meld(path: Path, layout: str = "cosmic-meld") -> RawDataset:
    src = str(path)
    (speakers, labels, _sentiment, r1, r2, r3, r4, _sentences, train, test, valid) = _tuple(
        _read(path), 11,
        "speakers, emotion_labels, sentiment_labels, roberta1..4, sentences, trainIds, testIds, validIds", src, layout,
    )
    layers = [_mapping(r, f"roberta{i}", src) for i, r in enumerate((r1, r2, r3, r4), 1)]
    splits = {"train": _id_list(train, "trainIds", src), "valid": _id_list(valid, "validIds", src),
              "test": _id_list(test, "testIds", src)}
    reader = _Speakers()
    dialogues = _dialogues(src, _mapping(speakers, "speakers", src), _mapping(labels, "emotion_labels", src),
                           {"text": _roberta_mean(layers, src)}, reader)
    return RawDataset(src, layout, layouts.MELD_CLASSES, dialogues, splits, reader.symbols)


def read_composite_iemocap(text_path: Path, av_path: Path, layout: str = "composite-iemocap") -> RawDataset:
    """Text from COSMIC, audio/visual from conv-emotion, joined by dialogue id; the join is checked
    utterance by utterance (count, label, speaker), because the two files were made independently."""
    text = read_cosmic_iemocap(text_path)
    av = read_conv_emotion_iemocap(av_path)
    src = f"{text_path} + {av_path}"
    only_text = sorted(set(text.dialogues) - set(av.dialogues))
    only_av = sorted(set(av.dialogues) - set(text.dialogues))
    if only_text or only_av:
        raise DataError(src, f"the files hold different dialogues: {len(only_text)} only in the text file "
                             f"(e.g. {only_text[:3]}), {len(only_av)} only in the audio/visual file (e.g. {only_av[:3]})")
    dialogues = {}
    for k, t in text.dialogues.items():
        a = av.dialogues[k]
        if len(t.labels) != len(a.labels):
            raise DataError(src, f"not aligned: {len(t.labels)} utterances in the text file, {len(a.labels)} in the audio/visual file", k)
        bad = np.flatnonzero(t.labels != a.labels)
        if bad.size:
            i = int(bad[0])
            raise DataError(src, f"not aligned: utterance {i} is labelled {t.labels[i]} in the text file and {a.labels[i]} in the audio/visual file", k)
        t_sym = [text.speaker_symbols[s] for s in t.speakers]
        a_sym = [av.speaker_symbols[s] for s in a.speakers]
        if t_sym != a_sym:
            i = next(i for i, (x, y) in enumerate(zip(t_sym, a_sym)) if x != y)
            raise DataError(src, f"not aligned: utterance {i} is spoken by {t_sym[i]!r} in the text file and {a_sym[i]!r} in the audio/visual file", k)
        dialogues[k] = Dialogue(a.speakers, a.labels, {"text": t.features["text"], **a.features})
    if set(text.splits["test"]) != set(av.splits["test"]):
        raise DataError(src, "the two files disagree on the test dialogues; results would not be comparable")
    return RawDataset(src, layout, layouts.IEMOCAP_CLASSES, dialogues, text.splits, av.speaker_symbols)


READERS = {
    "conv-emotion-iemocap": read_conv_emotion_iemocap,
    "conv-emotion-meld": read_conv_emotion_meld,
    "mmgcn-meld": read_mmgcn_meld,
    "cosmic-iemocap": read_cosmic_iemocap,
    "cosmic-meld": read_cosmic_meld,
}


def read(layout_name: str, files: dict) -> RawDataset:
    """Read the raw file(s) of `layout_name`; `files` maps the layout's roles to paths."""
    layout = layouts.get(layout_name)
    if layout_name == "composite-iemocap":
        return read_composite_iemocap(Path(files["text"]), Path(files["audio_visual"]))
    base = layout.synthetic_of or layout_name
    raw = READERS[base](Path(files["main"]))
    raw.layout = layout_name
    return raw
