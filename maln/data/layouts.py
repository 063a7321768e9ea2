"""The feature-file layouts this project reads (facts from ../shared/design/data-sources.md): what
modalities and classes each has. The list of layouts is defined here and nowhere else; the schema's
enum is checked against it by a test, and the workflow asks it which variants a dataset supports."""

from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("text", "audio", "visual")

IEMOCAP_CLASSES = ("hap", "sad", "neu", "ang", "exc", "fru")
MELD_CLASSES = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    modalities: tuple[str, ...]
    class_names: tuple[str, ...]
    files: tuple[str, ...] = ("main",)  # the roles of its raw files
    synthetic_of: str | None = None  # a synthetic kind: the real layout `maln synth` writes

    @property
    def synthetic(self) -> bool:
        return self.synthetic_of is not None


LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout(
            "conv-emotion-iemocap",
            "9-tuple (videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, "
            "videoSentence, trainVid, testVid); speakers 'M'/'F'",
            MODALITIES,
            IEMOCAP_CLASSES,
        ),
        Layout(
            "conv-emotion-meld",
            "9-tuple (videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoSentence, "
            "trainVid, testVid, videoLabelsSentiment); one-hot speakers; no visual",
            ("text", "audio"),
            MELD_CLASSES,
        ),
        Layout(
            "mmgcn-meld",
            "10-tuple (videoIDs, videoSpeakers, videoLabels, videoText, videoAudio, videoVisual, "
            "videoSentence, trainVid, testVid, _); one-hot speakers",
            MODALITIES,
            MELD_CLASSES,
        ),
        Layout(
            "cosmic-iemocap",
            "10-tuple (speakers, labels, roberta1..4, sentences, trainIds, testIds, validIds); "
            "text = mean of the four RoBERTa layers",
            ("text",),
            IEMOCAP_CLASSES,
        ),
        Layout(
            "cosmic-meld",
            "11-tuple (speakers, emotion_labels, sentiment_labels, roberta1..4, sentences, trainIds, "
            "testIds, validIds); text = mean of the four RoBERTa layers",
            ("text",),
            MELD_CLASSES,
        ),
        Layout(
            "composite-iemocap",
            "the paper's setup: text from a cosmic-iemocap file, audio and visual from a "
            "conv-emotion-iemocap file, aligned by dialogue id and utterance order (checked)",
            MODALITIES,
            IEMOCAP_CLASSES,
            files=("text", "audio_visual"),
        ),
        Layout(
            "synthetic-iemocap",
            "synthetic IEMOCAP-like data written by `maln synth` in the conv-emotion-iemocap layout",
            MODALITIES,
            IEMOCAP_CLASSES,
            synthetic_of="conv-emotion-iemocap",
        ),
        Layout(
            "synthetic-meld",
            "synthetic MELD-like data written by `maln synth` in the conv-emotion-meld layout",
            ("text", "audio"),
            MELD_CLASSES,
            synthetic_of="conv-emotion-meld",
        ),
    )
}


def get(name: str) -> Layout:
    return LAYOUTS[name]
