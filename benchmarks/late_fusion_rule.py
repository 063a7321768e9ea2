"""The study's late-fusion baseline (maln/report/ensemble.py) over the ten-seed runs of
benchmarks/experiments/seed-spread-ten.yaml and over a candidate's, with `full` of each beside it,
test WF1 mean ± std over the seeds.

    python benchmarks/late_fusion_rule.py --full-candidate "combination-temper-ten/full, tempered" --candidate-rule
    python benchmarks/late_fusion_rule.py --full-candidate "label-smoothing/full, smoothing 0.1" \
        --candidate-singles label-smoothing:_smoothing_0.1
    python benchmarks/late_fusion_rule.py --shipped-full "label-smoothing/full, smoothing 0.1" \
        --shipped-singles label-smoothing:_smoothing_0.1 --full-candidate "chain-decoding/full, chain" \
        --candidate-singles chain-decoding:_chain

--candidate-rule: the candidate's late fusion combines under whatever maln.combination does when
MALN_TEMPER=1 (combination-temper.patch, which this script does not apply; without the patch both
rules coincide). --candidate-singles STEM:SUFFIX: its single-modality runs are the experiment
STEM's configurations `<m>_only<SUFFIX>` instead of seed-spread-ten's. --shipped-full and
--shipped-singles: the same for the reference rows (default: seed-spread-ten's).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmarks"))
from experiments import _slug  # noqa: E402  (a configuration's run folder name)
from maln.metrics import classification_metrics  # noqa: E402
from maln.report.aggregate import training_log_prior  # noqa: E402

EXPERIMENTS = REPO / "results" / "experiments"


def log_probs(run: Path, split: str, names: list) -> tuple[np.ndarray, np.ndarray]:
    """(gold, log-probabilities) of a run's split, as maln/report/runs.py reads them."""
    import csv
    rows = list(csv.DictReader((run / ("predictions.csv" if split == "test" else "valid_predictions.csv")).open()))
    index = {c: i for i, c in enumerate(names)}
    gold = np.array([index[r["gold"]] for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    return gold, np.log(np.clip(probs, 1e-6, 1.0))


def late_fusion(dataset: str, seed: int, tempered: bool, singles: str = "seed-spread-ten:") -> float:
    os.environ["MALN_TEMPER"] = "1" if tempered else "0"
    import maln.combination as combination
    combination = importlib.reload(combination)
    stem, suffix = singles.split(":", 1)
    base = EXPERIMENTS / stem / dataset
    run = {m: base / f"{m}_only{suffix}" / f"seed{seed}" for m in ("text", "audio", "visual")}
    members = [m for m in run if run[m].is_dir()]
    names = json.loads((run["text"] / "metrics.json").read_text())["class_names"]
    prior = training_log_prior(REPO, dataset)
    lp = {s: [log_probs(run[m], s, names) for m in members] for s in ("valid", "test")}
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
    ap.add_argument("--candidate-rule", action="store_true", help="combine the candidate under MALN_TEMPER=1")
    ap.add_argument("--candidate-singles", default="seed-spread-ten:", help="STEM:SUFFIX of its single-modality runs")
    ap.add_argument("--shipped-full", default="seed-spread-ten/full", help="STEM/CONFIG of the reference full runs")
    ap.add_argument("--shipped-singles", default="seed-spread-ten:", help="STEM:SUFFIX of the reference single runs")
    args = ap.parse_args()
    seeds = range(args.seeds)
    fmt = lambda v: f"{100 * np.mean(v):.2f} ± {100 * np.std(v, ddof=1):.2f}"  # noqa: E731
    print("| dataset | full, shipped | late fusion, shipped | full, candidate | late fusion, candidate "
          "| full − late fusion, shipped | full − late fusion, candidate |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for d in args.datasets:
        lf = {"shipped": [late_fusion(d, s, False, args.shipped_singles)[0] for s in seeds],
              "candidate": [late_fusion(d, s, args.candidate_rule, args.candidate_singles)[0] for s in seeds]}
        f = {"shipped": full(args.shipped_full, d, seeds), "candidate": full(args.full_candidate, d, seeds)}
        gap = {r: np.array(f[r]) - np.array(lf[r]) for r in f}
        print(f"| {d} | {fmt(f['shipped'])} | {fmt(lf['shipped'])} | {fmt(f['candidate'])} | {fmt(lf['candidate'])} "
              f"| {fmt(gap['shipped'])} | {fmt(gap['candidate'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
