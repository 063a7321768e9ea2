"""Linear models on the study's stores, context-free and decoded by the emotion chain, to locate what
separates the learned models from the oracle (docs/findings.md, "Chain decoding", 2026-12-04):
per dataset, test WF1 (validation in brackets) of

- logreg: the study's logreg_all (standardised concatenated features, C by validation WF1);
- logreg, Ledoit-Wolf whitened: the same on inputs whitened by the training split's shrunk covariance;
- logreg / mlp, within-class whitened: on inputs whitened by a factor-analysis estimate (10 factors)
  of the training split's within-class covariance;
- FA-LDA: class means with that covariance, Bayes' rule with the training prior (a generative model);
- logreg + chain: the study's logreg_all_chain (maln/chain.py).

    python benchmarks/linear_context.py synthetic-meld-nuisance synthetic-meld
    python benchmarks/linear_context.py --saturation \
        synthetic-meld-nuisance:results/experiments/label-smoothing/synthetic-meld-nuisance/audio_only_smoothing_0.1/seed0:audio

--saturation DATASET:RUN:MODALITY: instead, how far a trained branch's GRU gates saturate on the test
split (the share of its first layer's input pre-activations, per gate, larger than 3 in size).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from maln.baselines import BASELINES, features_of, fit, split_rows  # noqa: E402
from maln.config import load_params  # noqa: E402
from maln.data.prepare import store_dir  # noqa: E402
from maln.data.store import load_store  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0)


def chosen(make, grid, x, y, names) -> str:
    """Test (validation) WF1 of the grid value validation WF1 prefers."""
    best = None
    for value in grid:
        model = make(value).fit(x["train"], y["train"])
        wf1 = {s: 100 * classification_metrics(y[s], model.predict(x[s]), names)["weighted_f1"] for s in ("valid", "test")}
        if best is None or wf1["valid"] > best["valid"]:
            best = wf1
    return f"{best['test']:.2f} ({best['valid']:.2f})"


def saturation(params, dataset: str, run: str, modality: str) -> None:
    import torch

    state = torch.load(Path(run) / "model.pt", weights_only=True)["model"]
    w, b = (state[f"context.{modality}.gru.{k}_ih_l0"].double().numpy() for k in ("weight", "bias"))
    store = load_store(store_dir(params, dataset))
    pre = features_of(store, [modality], split_rows(store, "test")) @ w.T + b  # gates r, z, n of nn.GRU
    h = w.shape[0] // 3
    shares = ", ".join(f"{g} {100 * np.mean(np.abs(pre[:, i * h:(i + 1) * h]) > 3):.1f} %" for i, g in enumerate("rzn"))
    print(f"{dataset} {run} {modality}: |pre-activation| > 3: {shares}")


def main() -> int:
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import FactorAnalysis
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="*")
    ap.add_argument("--saturation", nargs="+", default=[], metavar="DATASET:RUN:MODALITY")
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    for spec in args.saturation:
        saturation(params, *spec.split(":"))
    if not args.datasets:
        return 0
    logreg = lambda c: LogisticRegression(C=c, max_iter=2000)  # noqa: E731
    mlp = lambda a: MLPClassifier((32,), alpha=a, solver="lbfgs", max_iter=100, random_state=0)  # noqa: E731
    print("| dataset | logreg | logreg, Ledoit-Wolf whitened | logreg, within-class whitened | mlp, within-class "
          "whitened | FA-LDA | logreg + chain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        store = load_store(store_dir(params, dataset))
        names = store.class_names
        used = BASELINES["logreg_all"].uses(store.modalities)
        rows = {s: split_rows(store, s) for s in ("train", "valid", "test")}
        x = {s: features_of(store, used, r) for s, r in rows.items()}
        y = {s: np.asarray(store.labels[r]) for s, r in rows.items()}
        lw = LedoitWolf().fit(x["train"])
        w, v = np.linalg.eigh(lw.covariance_)
        x_lw = {s: (a - lw.location_) @ (v / np.sqrt(w)) for s, a in x.items()}
        means = np.stack([x["train"][y["train"] == k].mean(0) if (y["train"] == k).any() else np.zeros(x["train"].shape[1])
                          for k in range(len(names))])
        fa = FactorAnalysis(n_components=10, random_state=0).fit(x["train"] - means[y["train"]])
        precision = fa.get_precision()
        w, v = np.linalg.eigh(precision)
        root = (v * np.sqrt(w)) @ v.T
        x_wc = {s: (a - fa.mean_) @ root for s, a in x.items()}
        scale = x_wc["train"].std(0)
        x_wc = {s: a / scale for s, a in x_wc.items()}
        prior = np.maximum(np.bincount(y["train"], minlength=len(names)) / len(y["train"]), 1e-12)
        coef = means @ precision
        bias = -0.5 * np.einsum("kd,kd->k", coef, means) + np.log(prior)
        lda = {s: 100 * classification_metrics(y[s], (x[s] @ coef.T + bias).argmax(1), names)["weighted_f1"]
               for s in ("valid", "test")}
        grid = params.data["baselines"]["logreg_C"]
        plain, decoded = fit(store, BASELINES["logreg_all"], grid), fit(store, BASELINES["logreg_all_chain"], grid)
        cells = [f"{100 * r['test']['weighted_f1']:.2f} ({100 * r['valid']['weighted_f1']:.2f})" for r in (plain, decoded)]
        print(f"| {dataset} | {cells[0]} | {chosen(logreg, C_GRID, x_lw, y, names)} | "
              f"{chosen(logreg, C_GRID, x_wc, y, names)} | {chosen(mlp, ALPHA_GRID, x_wc, y, names)} | "
              f"{lda['test']:.2f} ({lda['valid']:.2f}) | {cells[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
