"""Readers: one function per layout turns a raw file (read by the restricted unpickler) into a
RawDataset, the in-memory form that validation and the store share. Dimensions come from the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maln.data import layouts, safe_pickle
from maln.data.fields import Speakers, by_id, float_matrix, id_list, int_vector, mapping_of, tuple_of
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


def _dialogues(source, speakers, labels, features: dict, speaker_reader) -> dict:
    """Assemble dialogues from per-field dicts, naming the dialogue and the field that is missing."""
    fields = {"speakers": speakers, "labels": labels, **{f"{m} features": v for m, v in features.items()}}
    by_field = {what: by_id(mapping, what, source) for what, mapping in fields.items()}
    ids = list(dict.fromkeys(k for mapping in by_field.values() for k in mapping))
    out = {}
    for k in ids:
        missing = [what for what, mapping in by_field.items() if k not in mapping]
        if missing:
            present = [what for what in fields if what not in missing]
            raise DataError(source, f"has no {', '.join(missing)} (it has {', '.join(present)})", k)
        out[k] = Dialogue(
            speakers=speaker_reader(by_field["speakers"][k], source, k),
            labels=int_vector(by_field["labels"][k], source, k, "labels"),
            features={m: float_matrix(by_field[f"{m} features"][k], source, k, m) for m in features},
        )
    return out


def _read(path: Path, source: str | None = None):
    return safe_pickle.load(path, source or str(path))


def read_conv_emotion_iemocap(path: Path, layout: str = "conv-emotion-iemocap") -> RawDataset:
    src = str(path)
    (vid_ids, speakers, labels, text, audio, visual, _sentences, train, test) = tuple_of(
        _read(path), 9,
        "videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid",
        src, layout,
    )
    m = {name: mapping_of(v, name, src) for name, v in
         (("videoSpeakers", speakers), ("videoLabels", labels), ("videoText", text), ("videoAudio", audio), ("videoVisual", visual))}
    splits = {"train": id_list(train, "trainVid", src), "test": id_list(test, "testVid", src)}
    reader = Speakers(preferred=("M", "F"))  # conv-emotion's convention: M -> [1, 0]
    dialogues = _dialogues(src, m["videoSpeakers"], m["videoLabels"],
                           {"text": m["videoText"], "audio": m["videoAudio"], "visual": m["videoVisual"]}, reader)
    return RawDataset(src, layout, layouts.IEMOCAP_CLASSES, dialogues, splits, reader.symbols)


def read_conv_emotion_meld(path: Path, layout: str = "conv-emotion-meld") -> RawDataset:
    src = str(path)
    (vid_ids, speakers, labels, text, audio, _sentences, train, test, _sentiment) = tuple_of(
        _read(path), 9,
        "videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoSentence, trainVid, testVid, videoLabelsSentiment",
        src, layout,
    )
    m = {name: mapping_of(v, name, src) for name, v in
         (("videoSpeakers", speakers), ("videoLabels", labels), ("videoText", text), ("videoAudio", audio))}
    splits = {"train": id_list(train, "trainVid", src), "test": id_list(test, "testVid", src)}
    reader = Speakers()
    dialogues = _dialogues(src, m["videoSpeakers"], m["videoLabels"],
                           {"text": m["videoText"], "audio": m["videoAudio"]}, reader)
    return RawDataset(src, layout, layouts.MELD_CLASSES, dialogues, splits, reader.symbols)


def read_mmgcn_meld(path: Path, layout: str = "mmgcn-meld") -> RawDataset:
    src = str(path)
    (vid_ids, speakers, labels, text, audio, visual, _sentences, train, test, _rest) = tuple_of(
        _read(path), 10,
        "videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid, _",
        src, layout,
    )
    m = {name: mapping_of(v, name, src) for name, v in
         (("videoSpeakers", speakers), ("videoLabels", labels), ("videoText", text), ("videoAudio", audio), ("videoVisual", visual))}
    splits = {"train": id_list(train, "trainVid", src), "test": id_list(test, "testVid", src)}
    reader = Speakers()
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
            parts.append(float_matrix(layer[k], src, str(k), f"roberta{i}"))
        if len({p.shape for p in parts}) != 1:
            raise DataError(src, f"the four RoBERTa layers have different shapes {[p.shape for p in parts]}", str(k))
        out[k] = np.mean(parts, axis=0)
    return out


def read_cosmic_iemocap(path: Path, layout: str = "cosmic-iemocap") -> RawDataset:
    src = str(path)
    (speakers, labels, r1, r2, r3, r4, _sentences, train, test, valid) = tuple_of(
        _read(path), 10, "speakers, labels, roberta1..4, sentences, trainIds, testIds, validIds", src, layout,
    )
    layers = [mapping_of(r, f"roberta{i}", src) for i, r in enumerate((r1, r2, r3, r4), 1)]
    splits = {"train": id_list(train, "trainIds", src), "valid": id_list(valid, "validIds", src),
              "test": id_list(test, "testIds", src)}
    reader = Speakers(preferred=("M", "F"))
    dialogues = _dialogues(src, mapping_of(speakers, "speakers", src), mapping_of(labels, "labels", src),
                           {"text": _roberta_mean(layers, src)}, reader)
    return RawDataset(src, layout, layouts.IEMOCAP_CLASSES, dialogues, splits, reader.symbols)


def read_cosmic_meld(path: Path, layout: str = "cosmic-meld") -> RawDataset:
    src = str(path)
    (speakers, labels, _sentiment, r1, r2, r3, r4, _sentences, train, test, valid) = tuple_of(
        _read(path), 11,
        "speakers, emotion_labels, sentiment_labels, roberta1..4, sentences, trainIds, testIds, validIds", src, layout,
    )
    layers = [mapping_of(r, f"roberta{i}", src) for i, r in enumerate((r1, r2, r3, r4), 1)]
    splits = {"train": id_list(train, "trainIds", src), "valid": id_list(valid, "validIds", src),
              "test": id_list(test, "testIds", src)}
    reader = Speakers()
    dialogues = _dialogues(src, mapping_of(speakers, "speakers", src), mapping_of(labels, "emotion_labels", src),
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
