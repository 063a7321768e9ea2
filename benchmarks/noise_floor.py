"""What a linear floor on a modality without label signal is worth: the study's `logreg_<m>` test
predictions (results/baselines/<dataset>.json) scored against the test labels after random
permutations of the predictions, PERMUTATIONS times. A permutation keeps how often each emotion is
predicted and breaks any tie to the labels, so the permuted scores are what the regression's
predictions score by chance; where the modality is pure noise (visual and audio on
synthetic-iemocap-noise: `signal: 0`), the study's floor is one such draw and its p-value says how
lucky it was. The same for each run of an experiment's single-modality network, beside it.

    python benchmarks/noise_floor.py --dataset synthetic-iemocap-noise --modality visual --runs distill
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from maln.baselines import split_rows  # noqa: E402
from maln.config import load_params  # noqa: E402
from maln.data.prepare import store_dir  # noqa: E402
from maln.data.store import load_store  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402


def permuted(gold, pred, names, n, seed=0) -> tuple[float, np.ndarray]:
    score = lambda q: 100 * classification_metrics(gold, q, names)["weighted_f1"]  # noqa: E731
    rng = np.random.default_rng(seed)
    return score(pred), np.array([score(pred[rng.permutation(len(pred))]) for _ in range(n)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="synthetic-iemocap-noise")
    ap.add_argument("--modality", default="visual")
    ap.add_argument("--runs", help="an experiment under results/experiments/ whose <modality>_only runs to score too")
    ap.add_argument("--permutations", type=int, default=2000)
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    store = load_store(store_dir(params, args.dataset))
    names = store.class_names
    gold = np.asarray(store.labels)[split_rows(store, "test")]
    baseline = json.loads((REPO / "results/baselines" / f"{args.dataset}.json").read_text())
    pred = np.array(baseline["baselines"][f"logreg_{args.modality}"]["test_predictions"])
    floor, null = permuted(gold, pred, names, args.permutations)
    print(f"{args.dataset}, logreg_{args.modality}: test WF1 {floor:.2f}; its predictions permuted "
          f"{args.permutations} times: {null.mean():.2f} ± {null.std(ddof=1):.2f}, p(permuted >= it) = "
          f"{np.mean(null >= floor):.3f}")
    if args.runs:
        folder = REPO / "results/experiments" / args.runs / args.dataset / f"{args.modality}_only"
        for run in sorted(folder.glob("seed*"), key=lambda p: int(p.name[4:])):
            rows = (run / "predictions.csv").read_text().splitlines()[1:]
            order = {name: i for i, name in enumerate(names)}
            run_pred = np.array([order[r.split(",")[4]] for r in rows])
            run_gold = np.array([order[r.split(",")[3]] for r in rows])
            score, run_null = permuted(run_gold, run_pred, names, args.permutations)
            print(f"  {args.runs}/{args.modality}_only/{run.name}: {score:.2f}; permuted {run_null.mean():.2f} ± "
                  f"{run_null.std(ddof=1):.2f}, p = {np.mean(run_null >= score):.3f}")
    print(f"command: `python benchmarks/noise_floor.py --dataset {args.dataset} --modality {args.modality}"
          f"{' --runs ' + args.runs if args.runs else ''} --permutations {args.permutations}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
