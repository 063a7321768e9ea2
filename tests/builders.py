"""Small raw feature files in every layout, built from scratch, for the tests (no binaries in git)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent

IEMOCAP_LIKE = ("conv-emotion-iemocap", "cosmic-iemocap")
ONE_HOT_SPEAKERS = ("conv-emotion-meld", "mmgcn-meld", "cosmic-meld")


def dialogues(n=8, dims=None, seed=0, parties=2, length=(2, 7), n_classes=6):
    """id -> dict(speakers=[party], labels=[int], features={modality: [L, d]})."""
    dims = dims or {"text": 5, "audio": 4, "visual": 3}
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        L = int(rng.integers(length[0], length[1] + 1))
        out[f"d{i:02d}"] = {
            "speakers": [int(rng.integers(parties)) for _ in range(L)],
            "labels": [int(rng.integers(n_classes)) for _ in range(L)],
            "features": {m: rng.normal(size=(L, d)).astype(np.float32) for m, d in dims.items()},
        }
    return out


def raw_tuple(layout: str, dlg: dict, train=None, test=None, valid=None, int_ids=False):
    """The pickle tuple of `layout` holding `dlg`; splits default to a 3/4 train, 1/4 test cut."""
    ids = list(dlg)
    key = (lambda k: int(k[1:])) if int_ids else (lambda k: k)
    n_test = max(1, len(ids) // 4)
    train = [key(k) for k in (train if train is not None else ids[: len(ids) - n_test])]
    test = [key(k) for k in (test if test is not None else ids[len(ids) - n_test:])]
    valid = [key(k) for k in (valid or [])]

    def field(f):
        return {key(k): copy.deepcopy(v[f]) for k, v in dlg.items()}

    def feats(m):
        return {key(k): v["features"][m] for k, v in dlg.items()}

    if layout in IEMOCAP_LIKE:
        spk = {key(k): ["MF"[s] for s in v["speakers"]] for k, v in dlg.items()}
    else:
        spk = {key(k): [[int(j == s) for j in range(9)] for s in v["speakers"]] for k, v in dlg.items()}
    labels = field("labels")
    utt = {key(k): [f"{k}_{t}" for t in range(len(v["labels"]))] for k, v in dlg.items()}
    sentences = {key(k): ["hello"] * len(v["labels"]) for k, v in dlg.items()}
    if layout == "conv-emotion-iemocap":
        return (utt, spk, labels, feats("text"), feats("audio"), feats("visual"), sentences, train, test)
    if layout == "conv-emotion-meld":
        return (utt, spk, labels, feats("text"), feats("audio"), sentences, train, test, field("labels"))
    if layout == "mmgcn-meld":
        return (utt, spk, labels, feats("text"), feats("audio"), feats("visual"), sentences, train, test, None)
    # COSMIC: four RoBERTa layers whose mean is the text modality
    layers = [{key(k): v["features"]["text"] * (i + 1) / 2.5 for k, v in dlg.items()} for i in range(4)]
    if layout == "cosmic-iemocap":
        return (spk, labels, *layers, sentences, train, test, valid)
    if layout == "cosmic-meld":
        return (spk, labels, field("labels"), *layers, sentences, train, test, valid)
    raise ValueError(layout)


def write_pickle(path, obj, protocol=4) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def write_params(root: Path, datasets: dict | None = None, study_datasets=None, **sections) -> Path:
    """A params.yaml in `root`: the shipped one with registry entries added and sections overridden
    (a dict merges into the shipped section, so tests name only what they change)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"].update(datasets or {})
    if study_datasets is not None:
        params["study"]["datasets"] = list(study_datasets)
    for k, v in sections.items():
        params[k] = {**params[k], **v} if isinstance(v, dict) else v
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root / "params.yaml"


def shared_lists(depth: int = 40) -> list:
    """A list holding the same list twice, `depth` levels deep: pickled once, 2^(depth+1) numbers."""
    x = [0.5, 0.5]
    for _ in range(depth):
        x = [x, x]
    return x


def nested_aliases(levels: int = 9) -> str:
    """Nested YAML aliases: a few hundred bytes that denote 9^levels values."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)
