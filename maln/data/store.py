"""The canonical store: what training reads, written once by `maln prepare`.

data/features/<dataset>/
  <modality>.npy   float32 [utterances x dim], every dialogue's utterances one after another
  offsets.npy      int64 [dialogues + 1]: dialogue i is rows offsets[i]:offsets[i+1]
  speakers.npy     int64 [utterances]: party index within the dialogue
  labels.npy       int64 [utterances]
  split.npy        int8 [dialogues]: 0 train, 1 valid, 2 test
  <modality>.mean.npy, <modality>.std.npy
                   float32 [dim]: each feature's mean and standard deviation over the training
                   split's utterances (1 where a feature is constant), for the model's standardisation
  meta.json        dataset, layout, class names, modality dimensions, dialogue ids, split sizes and
                   rule, source files with their hashes, the SHA-256 of every array, store_hash

Plain .npy and JSON only: loading needs no pickle, and the arrays can be memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maln.data.readers import SPLITS, RawDataset
from maln.errors import DataError
from maln.io import DIR_MODE, FILE_MODE, canonical_hash, reporting_faults, sha256_file

FORMAT = "maln-store"
VERSION = 2
VALID_RULE = (
    "valid = the round(valid_fraction * n_train) training dialogues with the smallest "
    "SHA-256(dialogue id) (at least 1); used only when the file ships no validation list"
)


def carve_validation(train_ids: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """The documented rule above: deterministic, independent of file order and of any seed."""
    n = max(1, round(fraction * len(train_ids))) if len(train_ids) > 1 else 0
    ranked = sorted(train_ids, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    valid = set(ranked[:n])
    return [k for k in train_ids if k not in valid], [k for k in train_ids if k in valid]


@dataclass
class Store:
    path: Path
    meta: dict
    features: dict  # modality -> [N, d] (memory-mapped)
    offsets: np.ndarray
    speakers: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    arrays: dict  # every array by name, the ones above included

    @property
    def name(self) -> str:
        return self.meta["dataset"]

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]

    @property
    def modalities(self) -> dict:
        return self.meta["modalities"]

    @property
    def dialogue_ids(self) -> list[str]:
        return self.meta["dialogue_ids"]

    @property
    def standardization(self) -> dict:
        """modality -> (mean, std) of each feature over the training split."""
        return {m: (np.asarray(self.arrays[f"{m}.mean"]), np.asarray(self.arrays[f"{m}.std"])) for m in self.modalities}

    @property
    def class_prior(self) -> np.ndarray:
        """Each class's share of the training split's utterances."""
        d = self.dialogues("train")
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in d])
        counts = np.bincount(np.asarray(self.labels)[rows], minlength=len(self.class_names))
        return counts / max(counts.sum(), 1)

    @property
    def hash(self) -> str:
        return self.meta["store_hash"]

    def dialogues(self, split: str) -> np.ndarray:
        """Indices of the dialogues of one split."""
        return np.flatnonzero(self.split == SPLITS.index(split))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def write_store(raw: RawDataset, out_dir: Path, dataset: str, valid_fraction: float, sources: list[dict]) -> dict:
    """Write `raw` (already validated) as a store; the folder appears whole or not at all."""
    splits = {s: list(raw.splits.get(s, [])) for s in SPLITS}
    if splits["valid"]:
        rule = "the validation list shipped with the file"
    else:
        splits["train"], splits["valid"] = carve_validation(splits["train"], valid_fraction)
        rule = VALID_RULE.replace("valid_fraction", str(valid_fraction))
    order = [k for k in raw.dialogues]  # file order; split membership is an array beside it
    split_of = {k: SPLITS.index(s) for s, ids in splits.items() for k in ids}
    dialogues = [raw.dialogues[k] for k in order]
    lengths = np.array([len(d.labels) for d in dialogues], dtype=np.int64)
    arrays = {
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "speakers": np.concatenate([d.speakers for d in dialogues]).astype(np.int64),
        "labels": np.concatenate([d.labels for d in dialogues]).astype(np.int64),
        "split": np.array([split_of[k] for k in order], dtype=np.int8),
        **{m: np.concatenate([d.features[m] for d in dialogues]).astype(np.float32) for m in raw.modalities},
    }
    arrays.update(training_statistics(arrays, raw.modalities, lengths))
    out_dir = Path(out_dir)
    tmp = None
    try:
        # inside the try: a full disk is recognised before the partial folder is removed
        with reporting_faults(out_dir, "store"):
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
            hashes = {}
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
                hashes[f"{name}.npy"] = sha256_file(tmp / f"{name}.npy")
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "dataset": dataset,
                "layout": raw.layout,
                "class_names": list(raw.class_names),
                "modalities": {m: int(arrays[m].shape[1]) for m in raw.modalities},
                "n_dialogues": len(order),
                "n_utterances": int(lengths.sum()),
                "n_parties": int(arrays["speakers"].max()) + 1,
                "speaker_symbols": list(raw.speaker_symbols),
                "splits": {s: len(ids) for s, ids in splits.items()},
                "split_utterances": {s: int(lengths[arrays["split"] == i].sum()) for i, s in enumerate(SPLITS)},
                "valid_rule": rule,
                "sources": sources,
                "dialogue_ids": order,
                "arrays": hashes,
            }
            meta["store_hash"] = canonical_hash(meta)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
            os.chmod(tmp, DIR_MODE)
            for file in tmp.iterdir():
                os.chmod(file, FILE_MODE)
            _replace_dir(tmp, out_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return meta


def training_statistics(arrays: dict, modalities, lengths: np.ndarray) -> dict:
    """Per-feature mean and std of each modality over the training split's utterances (the model
    standardises its inputs with them; fitted on train only, so valid and test stay unseen)."""
    rows = np.repeat(arrays["split"] == SPLITS.index("train"), lengths)
    out = {}
    for m in modalities:
        x = arrays[m][rows].astype(np.float64)
        std = x.std(0) if len(x) else np.ones(arrays[m].shape[1])
        out[f"{m}.mean"] = (x.mean(0) if len(x) else np.zeros(arrays[m].shape[1])).astype(np.float32)
        out[f"{m}.std"] = np.where(std > 1e-6 * (1 + np.abs(out[f"{m}.mean"])), std, 1.0).astype(np.float32)
    return out


def _replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` at `target`; a reader sees the old store or the new one, never a mix."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_store(path: str | Path, verify: bool = True, mmap: bool = True) -> Store:
    """Open a store; with `verify`, every array's SHA-256 is checked against meta.json, so a
    corrupted store is reported instead of trained on."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise DataError(path, "no prepared store here (run `maln prepare DATASET`)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(meta_path, f"not valid JSON ({e}); prepare the dataset again") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(meta_path, f"not a version-{VERSION} maln store; prepare the dataset again")
    body = {k: v for k, v in meta.items() if k != "store_hash"}
    if canonical_hash(body) != meta.get("store_hash"):
        raise DataError(meta_path, "meta.json does not match its store_hash (edited or corrupted); prepare the dataset again")
    arrays = {}
    for name, digest in meta["arrays"].items():
        file = path / name
        if not file.is_file():
            raise DataError(file, "missing from the store; prepare the dataset again")
        if verify and sha256_file(file) != digest:
            raise DataError(file, "corrupted: its SHA-256 differs from the one recorded in meta.json; prepare the dataset again")
        try:
            arrays[name.removesuffix(".npy")] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as e:
            raise DataError(file, f"unreadable ({e}); prepare the dataset again") from None
    return Store(
        path=path,
        meta=meta,
        features={m: arrays[m] for m in meta["modalities"]},
        offsets=np.asarray(arrays["offsets"]),
        speakers=np.asarray(arrays["speakers"]),
        labels=np.asarray(arrays["labels"]),
        split=np.asarray(arrays["split"]),
        arrays=arrays,
    )
