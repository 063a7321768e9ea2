"""`maln prepare`: raw files -> verified -> read -> validated -> canonical store."""

from __future__ import annotations

from pathlib import Path

from maln.config import Params
from maln.data import readers
from maln.data.fetch import raw_files, verify
from maln.data.store import write_store
from maln.data.validate import validate

FEATURES_DIR = Path("data") / "features"


def store_dir(params: Params, dataset: str) -> Path:
    return params.root / FEATURES_DIR / dataset


def prepare(params: Params, dataset: str) -> dict:
    entry = params.dataset(dataset)
    files = raw_files(params, dataset)
    sources = []
    for f in files:
        hashes = verify(f)
        try:
            path = str(f.path.relative_to(params.root))
        except ValueError:
            path = str(f.path)
        sources.append({"role": f.role, "path": path, "url": f.url, **hashes})
    raw = readers.read(entry["layout"], {f.role: f.path for f in files})
    validate(raw)
    fraction = entry.get("valid_fraction", params.data["data"]["valid_fraction"])
    return write_store(raw, store_dir(params, dataset), dataset, fraction, sources)
