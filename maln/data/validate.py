"""Checks every dataset passes before it reaches the store. Each failure names the file, the dialogue
and the problem, so a user can find it in their own data."""

from __future__ import annotations

import numpy as np

from maln.data.readers import RawDataset
from maln.errors import DataError


def validate(raw: RawDataset) -> None:
    src = raw.source
    if not raw.dialogues:
        raise DataError(src, "holds no dialogues")
    n_classes = len(raw.class_names)
    dims: dict[str, tuple[int, str]] = {}
    modalities = None
    for k, d in raw.dialogues.items():
        if modalities is None:
            modalities = tuple(d.features)
        elif tuple(d.features) != modalities:
            raise DataError(src, f"has modalities {list(d.features)}, others have {list(modalities)}", k)
        n = len(d.labels)
        if n == 0:
            raise DataError(src, "is empty (no utterances)", k)
        counts = {"labels": n, "speakers": len(d.speakers), **{m: x.shape[0] for m, x in d.features.items()}}
        if len(set(counts.values())) != 1:
            raise DataError(src, "utterance counts disagree: " + ", ".join(f"{v} {w}" for w, v in counts.items()), k)
        for m, x in d.features.items():
            if m in dims and dims[m][0] != x.shape[1]:
                raise DataError(src, f"{m} features are {x.shape[1]}-d here but {dims[m][0]}-d in dialogue {dims[m][1]!r}", k)
            dims.setdefault(m, (x.shape[1], k))
            if x.shape[1] == 0:
                raise DataError(src, f"{m} features have no dimensions", k)
            bad = ~np.isfinite(x)
            if bad.any():
                i, j = map(int, np.argwhere(bad)[0])
                raise DataError(src, f"{m} features are not finite ({x[i, j]}) at utterance {i}, dimension {j}", k)
        out_of_range = (d.labels < 0) | (d.labels >= n_classes)
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            raise DataError(src, f"label {d.labels[i]} at utterance {i} is outside 0..{n_classes - 1} "
                                 f"({', '.join(raw.class_names)})", k)
    seen: dict[str, str] = {}
    for split, ids in raw.splits.items():
        for k in ids:
            if k not in raw.dialogues:
                raise DataError(src, f"is listed in the {split} split but has no features", k)
            if k in seen:
                raise DataError(src, f"is in both the {seen[k]} and the {split} split", k)
            seen[k] = split
    unassigned = [k for k in raw.dialogues if k not in seen]
    if unassigned:
        raise DataError(src, f"is in no split ({len(unassigned)} dialogue(s) are in none of "
                             f"{', '.join(raw.splits)})", unassigned[0])
    if not raw.splits.get("train") or not raw.splits.get("test"):
        raise DataError(src, "needs training and test dialogues; one of the two lists is empty")
