"""The study's late-fusion baseline (maln/report/ensemble.py) over the ten-seed runs of
benchmarks/experiments/seed-spread-ten.yaml, under the shipped combination rule and under a
candidate, with `full` of those runs and of a candidate experiment beside it, test WF1 mean ± std.

    python benchmarks/late_fusion_rule.py --full-candidate combination-temper-ten/"full, tempered"

The candidate rule is whatever maln.combination does when MALN_TEMPER=1 (a patch under
benchmarks/experiments/ that this script does not apply); without the patch both rules coincide.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maln.metrics import classification_metrics  # noqa: E402
from maln.report.aggregate import training_log_prior  # noqa: E402

EXPERIMENTS = REPO / "results" / "experiments"


def _slug(name: str) -> str:  # benchmarks/experiments.py's folder name of a configuration
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")


def log_probs(run: Path, split: str, names: list) -> tuple[np.ndarray, np.ndarray]:
    """(gold, log-probabilities) of a run's split, as maln/report/runs.py reads them."""
    import csv
    rows = list(csv.DictReader((run / ("predictions.csv" if split == "test" else "valid_predictions.csv")).open()))
    index = {c: i for i, c in enumerate(names)}
    gold = np.array([index[r["gold"]] for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    return gold, np.log(np.clip(probs, 1e-6, 1.0))


def late_fusion(dataset: str, seed: int, rule: str) -> float:
    os.environ["MALN_TEMPER"] = "1" if rule == "candidate" else "0"
    import maln.combination as combination
    combination = importlib.reload(combination)
    base = EXPERIMENTS / "seed-spread-ten" / dataset
    members = [m for m in ("text", "audio", "visual") if (base / f"{m}_only" / f"seed{seed}").is_dir()]
    names = json.loads((base / "text_only" / f"seed{seed}" / "metrics.json").read_text())["class_names"]
    prior = training_log_prior(REPO, dataset)
    lp = {s: [log_probs(base / f"{m}_only" / f"seed{seed}", s, names) for m in members] for s in ("valid", "test")}
    w = combination.choose_combination([x[1] for x in lp["valid"]], lp["valid"][0][0], prior, anchor=0)
    z = combination.combine([x[1] for x in lp["test"]], w, prior)
    return classification_metrics(lp["test"][0][0], z.argmax(1), names)["weighted_f1"], w


def full(stem_config: str, dataset: str, seeds) -> list:
    stem, config = stem_config.split("/", 1)
    path = EXPERIMENTS / stem / dataset / _slug(config)
    return [json.loads((path / f"seed{s}" / "metrics.json").read_text())["test"]["weighted_f1"] for s in seeds]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic-iemocap", "synthetic-iemocap-noise", "synthetic-meld",
                                                       "synthetic-iemocap-interaction", "synthetic-meld-nuisance"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--full-candidate", default="combination-temper-ten/full, tempered")
    args = ap.parse_args()
    seeds = range(args.seeds)
    fmt = lambda v: f"{100 * np.mean(v):.2f} ± {100 * np.std(v, ddof=1):.2f}"  # noqa: E731
    print("| dataset | full, shipped rule | late fusion, shipped rule | full, candidate | late fusion, candidate "
          "| full − late fusion, shipped | full − late fusion, candidate |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for d in args.datasets:
        lf = {r: [late_fusion(d, s, r)[0] for s in seeds] for r in ("shipped", "candidate")}
        f = {"shipped": full("seed-spread-ten/full", d, seeds), "candidate": full(args.full_candidate, d, seeds)}
        gap = {r: np.array(f[r]) - np.array(lf[r]) for r in f}
        print(f"| {d} | {fmt(f['shipped'])} | {fmt(lf['shipped'])} | {fmt(f['candidate'])} | {fmt(lf['candidate'])} "
              f"| {fmt(gap['shipped'])} | {fmt(gap['candidate'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
