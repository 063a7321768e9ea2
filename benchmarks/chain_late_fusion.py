"""The late-fusion baseline decoded by the emotion chain (maln/chain.py) as `full` is under
`model.decode: chain`: the study's late fusion (maln/report/ensemble.py's rule) of an experiment's
undecoded single-modality runs, its combined posterior then decoded with (mix, temperature) chosen on
validation by likelihood; beside it the late fusion undecoded and `full` of another experiment.
Test WF1, mean ± std over the seeds.

    python benchmarks/chain_late_fusion.py --singles label-smoothing:_smoothing_0.1 --full "chain-decoding/full, chain"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from experiments import _slug  # noqa: E402
from late_fusion_rule import EXPERIMENTS, log_probs  # noqa: E402
from maln import chain  # noqa: E402
from maln.combination import choose_combination, posterior  # noqa: E402
from maln.config import load_params  # noqa: E402
from maln.data.prepare import store_dir  # noqa: E402
from maln.data.store import load_store  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402

DATASETS = ["synthetic-iemocap", "synthetic-iemocap-noise", "synthetic-meld", "synthetic-iemocap-interaction",
            "synthetic-meld-nuisance"]


def dialogue_rows(store, split: str) -> np.ndarray:
    """Each utterance's dialogue, in the order predictions.csv lists them (by dialogue, then position)."""
    d = store.dialogues(split)
    return np.repeat(d, store.lengths()[d])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--singles", required=True, help="STEM:SUFFIX of the single-modality runs (<m>_only<SUFFIX>)")
    ap.add_argument("--full", required=True, help="STEM/CONFIG of the full runs shown beside")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    stem, suffix = args.singles.split(":", 1)
    fstem, fconfig = args.full.split("/", 1)
    fmt = lambda v: f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}"  # noqa: E731
    print("| dataset | late fusion | late fusion, chain-decoded | chain mix chosen (mean) | full |")
    print("| --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        store = load_store(store_dir(params, dataset))
        names, prior = list(store.class_names), np.maximum(np.asarray(store.class_prior, dtype=float), 1e-12)
        transition = chain.transitions(store.labels, store.offsets, store.dialogues("train"), len(names))
        rows = {s: dialogue_rows(store, s) for s in ("valid", "test")}
        plain, decoded, mixes, full = [], [], [], []
        for seed in range(args.seeds):
            runs = [EXPERIMENTS / stem / dataset / f"{m}_only{suffix}" / f"seed{seed}" for m in ("text", "audio", "visual")]
            runs = [r for r in runs if r.is_dir()]
            lp = {s: [log_probs(r, s, names) for r in runs] for s in ("valid", "test")}
            gold = {s: lp[s][0][0] for s in lp}
            w = choose_combination([x[1] for x in lp["valid"]], gold["valid"], np.log(prior), anchor=0)
            p = {s: posterior([x[1] for x in lp[s]], w, np.log(prior)) for s in lp}
            setting = chain.choose(p["valid"], gold["valid"], rows["valid"], transition, prior)
            q = chain.decode(p["test"], rows["test"], transition, prior, *setting)
            plain.append(100 * classification_metrics(gold["test"], p["test"].argmax(1), names)["weighted_f1"])
            decoded.append(100 * classification_metrics(gold["test"], q.argmax(1), names)["weighted_f1"])
            mixes.append(setting[0])
            metrics = json.loads((EXPERIMENTS / fstem / dataset / _slug(fconfig) / f"seed{seed}" / "metrics.json").read_text())
            full.append(100 * metrics["test"]["weighted_f1"])
        print(f"| {dataset} | {fmt(plain)} | {fmt(decoded)} | {np.mean(mixes):.2f} | {fmt(full)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
