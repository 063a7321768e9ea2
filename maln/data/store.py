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
from maln.io import DIR_MODE, FILE_MODE, canonical_hash, reporting_faults, sha256_file, shown

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


STORE_META = {  # what write_store writes in meta.json (format, version and store_hash are checked first)
    "type": "object",
    "required": ["dataset", "layout", "class_names", "modalities", "n_dialogues", "n_utterances", "n_parties",
                 "speaker_symbols", "splits", "dialogue_ids", "arrays"],
    "properties": {
        "dataset": {"type": "string"}, "layout": {"type": "string"},
        "class_names": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "modalities": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[a-z]+$"},
                       "additionalProperties": {"type": "integer", "minimum": 1}},
        "n_dialogues": {"type": "integer", "minimum": 1}, "n_utterances": {"type": "integer", "minimum": 1},
        "n_parties": {"type": "integer", "minimum": 1}, "speaker_symbols": {"type": "array"},
        "splits": {"type": "object"}, "dialogue_ids": {"type": "array", "items": {"type": ["string", "integer"]}},
        # plain names in the store's folder, never a path elsewhere
        "arrays": {"type": "object", "propertyNames": {"pattern": "^[a-z_]+(\\.(mean|std))?\\.npy$"},
                   "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    },
}


def load_store(path: str | Path, verify: bool = True, mmap: bool = True) -> Store:
    """Open a store; with `verify`, every array's SHA-256 is checked against meta.json, so a
    corrupted store is reported instead of trained on. Either way meta.json and every array's type
    and shape are checked (maln/readback.py), so a broken store is one DataError, never a crash."""
    from maln import readback

    path = Path(path)
    meta_path = path / "meta.json"
    remedy = f"prepare the dataset again (`maln prepare {path.name}`)"
    if not os.path.lexists(meta_path):
        raise DataError(shown(path), f"no prepared store here (run `maln prepare {path.name}`)")
    meta = readback.read_json(meta_path, remedy)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(shown(meta_path), f"not a version-{VERSION} maln store; {remedy}")
    body = {k: v for k, v in meta.items() if k != "store_hash"}
    if canonical_hash(body) != meta.get("store_hash"):
        raise DataError(shown(meta_path), f"meta.json does not match its store_hash (edited or corrupted); {remedy}")
    if found := readback.problems(meta, STORE_META, limit=1):
        raise DataError(shown(meta_path), f"{readback.field_words(found[0])}; {remedy}")
    arrays = {}
    for name, digest in meta["arrays"].items():
        file = path / name
        if not file.is_file():
            raise DataError(shown(file), f"missing from the store; {remedy}")
        if verify and sha256_file(file) != digest:
            raise DataError(shown(file), f"corrupted: its SHA-256 differs from the one recorded in meta.json; {remedy}")
        try:
            arrays[name.removesuffix(".npy")] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:
            raise DataError(shown(file), f"unreadable ({type(e).__name__}: {str(e)[:120] or 'cut short?'}); {remedy}") from None
    _check_arrays(path, meta, arrays, remedy)
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


def _check_arrays(path: Path, meta: dict, arrays: dict, remedy: str) -> None:
    """Every array write_store writes, of its dtype and of the shape meta.json gives, the indices
    in range: what training, baselines and the report index with (labels and offsets are small)."""
    n, u, classes = meta["n_dialogues"], meta["n_utterances"], len(meta["class_names"])
    shapes = {"offsets": ("i", (n + 1,)), "speakers": ("i", (u,)), "labels": ("i", (u,)), "split": ("i", (n,))}
    for m, d in meta["modalities"].items():
        shapes.update({m: ("f", (u, d)), f"{m}.mean": ("f", (d,)), f"{m}.std": ("f", (d,))})
    for name, (kind, shape) in shapes.items():
        a = arrays.get(name)
        if a is None:
            raise DataError(shown(path / f"{name}.npy"), f"missing from the store; {remedy}")
        if a.dtype.kind != kind or a.shape != shape:
            raise DataError(shown(path / f"{name}.npy"), f"is {a.dtype} {list(a.shape)}, meta.json says "
                                                  f"{'integers' if kind == 'i' else 'floats'} {list(shape)}; {remedy}")
    offsets, labels, speakers = (np.asarray(arrays[k]) for k in ("offsets", "labels", "speakers"))
    problem = ("offsets do not run from 0 to n_utterances in order" if offsets[0] != 0 or offsets[-1] != u
               or (np.diff(offsets) < 0).any() else
               f"labels outside -1..{classes - 1}" if ((labels < -1) | (labels >= classes)).any() else
               "speakers outside 0..n_parties - 1" if ((speakers < 0) | (speakers >= meta["n_parties"])).any() else
               "split values other than 0, 1, 2" if ((arrays["split"] < 0) | (arrays["split"] > 2)).any() else
               "dialogue_ids are not n_dialogues names" if len(meta["dialogue_ids"]) != n else
               next((f"{m}.std is not positive and finite" for m in meta["modalities"]
                     if not (np.isfinite(arrays[f"{m}.std"]) & (np.asarray(arrays[f"{m}.std"]) > 0)).all()), None))
    if problem is not None:
        raise DataError(shown(path / "meta.json"), f"the store is inconsistent: {problem}; {remedy}")
