"""A linear baseline the study does not run: linear discriminant analysis with a Ledoit-Wolf shrunk
covariance (scikit-learn's LinearDiscriminantAnalysis, solver lsqr, shrinkage auto; no value to
choose), on each utterance's features without context, per modality and concatenated, and the
concatenated one decoded by the training split's emotion chain as logreg_all_chain is
(maln/baselines.py). The synthetic kinds draw each emotion's features from Gaussians with one
shared covariance, the model LDA assumes, so it is favoured there by construction: a check of how
far the logistic-regression floors sit under what a linear rule can read at these sizes, not a
floor of its own. Beside it, from a study's results/metrics.json: the study's regression, its
network (X_only, or full for the concatenation) and, where the data has an exact oracle, that
modality's exact rule alone (maln/data/oracle.py). Test WF1 (%).

    python benchmarks/shrinkage_lda.py                  # the default study's datasets, after a study run
    python benchmarks/shrinkage_lda.py --root /tmp/clone   # a clone where a --configfile study ran
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from maln import baselines, chain  # noqa: E402
from maln.data.store import load_store  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402


def lda_scores(store) -> dict:
    """{modality or "all": test WF1 of LDA}, and "all_chain": the concatenated LDA decoded by the chain."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    names = list(store.class_names)
    rows = {s: baselines.split_rows(store, s) for s in ("train", "valid", "test")}
    labels = {s: np.asarray(store.labels[r]) for s, r in rows.items()}
    out = {}
    for key, used in [(m, (m,)) for m in store.modalities] + [("all", tuple(store.modalities))]:
        x = {s: baselines.features_of(store, used, r) for s, r in rows.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x["train"], labels["train"])
        out[key] = 100 * classification_metrics(labels["test"], model.predict(x["test"]), names)["weighted_f1"]
        if key == "all":
            preds, _ = baselines._decoded(store, model, x, labels)
            out["all_chain"] = 100 * classification_metrics(labels["test"], preds["test"], names)["weighted_f1"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=REPO, help="where the study ran (its data/ and results/)")
    ap.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = ap.parse_args(argv)
    metrics = json.loads((args.root / "results" / "metrics.json").read_text())
    lines = ["| dataset | inputs | regression | LDA | network | exact rule alone (WAA / WF1) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for dataset, rows in metrics.items():
        lda = lda_scores(load_store(args.root / "data" / "features" / dataset))
        oracle = rows.get("oracle", {})
        for key in [k for k in lda if k != "all_chain"] + ["all_chain"]:
            base = "logreg_all_chain" if key == "all_chain" else f"logreg_{key}"
            net = "full" if key.startswith("all") else f"{key}_only"
            rule = oracle.get("joint_context" if key.startswith("all") else f"{key}_context")
            cells = [f"{rows[base]['test_wf1_mean']:.2f}", f"{lda[key]:.2f}",
                     f"{rows[net]['test_wf1_mean']:.2f}" if net in rows else "n/a",
                     f"{rule['test_acc']:.2f} / {rule['test_wf1']:.2f}" if rule else "n/a"]
            lines.append(f"| {dataset} | {key.replace('_', ', ')} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
