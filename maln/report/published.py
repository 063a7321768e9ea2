"""Published numbers to place our results against (../shared/design/data-sources.md), with the
features they used and how they picked their epoch. They are shown beside our rows when the study
trains on a real benchmark, never mixed into our statistics: most of these papers selected the
epoch with the best *test* score (see the protocol table for what that is worth), and features
dominate the numbers, so a row says both."""

from __future__ import annotations

from dataclasses import dataclass

BY_TEST = "epoch chosen on the test split"
BY_VALID = "epoch chosen on a validation split"
UNSTATED = "selection not stated here"


@dataclass(frozen=True)
class Published:
    method: str
    benchmark: str  # iemocap | meld
    weighted_f1: float
    text_features: str
    selection: str


PUBLISHED = (
    Published("DialogueGCN", "iemocap", 64.18, "textCNN 100-d", BY_TEST),
    Published("MMGCN", "iemocap", 66.22, "textCNN", BY_TEST),
    Published("MMGCN", "meld", 58.65, "textCNN", BY_TEST),
    Published("MM-DFN", "iemocap", 68.18, "textCNN", BY_TEST),
    Published("MM-DFN", "meld", 59.46, "textCNN", BY_TEST),
    Published("COGMEN", "iemocap", 67.63, "SBERT", BY_VALID),
    Published("M2FNet", "iemocap", 69.86, "own extractors", UNSTATED),
    Published("M2FNet", "meld", 66.71, "own extractors", UNSTATED),
    Published("AR-IIGCN", "iemocap", 70.36, "RoBERTa", UNSTATED),
    Published("AR-IIGCN", "meld", 64.01, "RoBERTa", UNSTATED),
    Published("GraphSmile", "iemocap", 72.81, "RoBERTa", BY_TEST),
    Published("GraphSmile", "meld", 66.71, "RoBERTa", BY_TEST),
    Published("SDT", "iemocap", 74.08, "RoBERTa", BY_TEST),
    Published("SDT", "meld", 66.60, "RoBERTa", BY_TEST),
)

# the real benchmarks' layouts; synthetic data has no published numbers
BENCHMARK_OF_LAYOUT = {
    "conv-emotion-iemocap": "iemocap", "cosmic-iemocap": "iemocap", "composite-iemocap": "iemocap",
    "conv-emotion-meld": "meld", "mmgcn-meld": "meld", "cosmic-meld": "meld",
}


def for_layout(layout: str) -> list[Published]:
    benchmark = BENCHMARK_OF_LAYOUT.get(layout)
    return [p for p in PUBLISHED if p.benchmark == benchmark]
