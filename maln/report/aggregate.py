"""`maln aggregate`: every run of the study -> tables, figures and results/metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maln import io
from maln.config import Params
from maln.errors import MalnError
from maln.study import cells, run_path, runs

METRICS = {"acc": "accuracy", "wf1": "weighted_f1", "mf1": "macro_f1"}


def load_runs(params: Params) -> dict:
    """{(dataset, variant): [metrics.json of each seed]}; a clear error lists every missing run."""
    root = params.root
    found, missing = {}, []
    for dataset, variant, seed in runs(params.data):
        path = root / run_path(dataset, variant, seed) / "metrics.json"
        try:
            found.setdefault((dataset, variant), []).append(json.loads(path.read_text()))
        except FileNotFoundError:
            missing.append(str(run_path(dataset, variant, seed)))
        except json.JSONDecodeError as e:
            raise MalnError(f"{path}: unreadable ({e}); train that run again") from None
    if missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise MalnError(f"{len(missing)} run(s) of the study have no metrics.json (train them first, e.g. with "
                        f"`snakemake --cores 4 --resources gpu=1`):\n  {shown}")
    return found


def summary(found: dict) -> dict:
    """dataset -> variant -> {split_metric_mean, ..._std, n}, in percent, for results/metrics.json."""
    out = {}
    for (dataset, variant), seeds in found.items():
        row = {}
        for split in ("test", "valid"):
            for short, key in METRICS.items():
                values = np.array([100 * m[split][key] for m in seeds])
                row[f"{split}_{short}_mean"] = round(float(values.mean()), 2)
                row[f"{split}_{short}_std"] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 2)
        row["n"] = len(seeds)
        out.setdefault(dataset, {})[variant] = row
    return out


def aggregate(params: Params) -> dict:
    found = load_runs(params)
    metrics = summary(found)
    for c in cells(params.data):
        if not c.applicable:
            metrics.setdefault(c.dataset, {})
    io.write_json(params.root / "results" / "metrics.json", metrics)
    return metrics
