"""A context-free mixture of linear experts on a prepared store's standardised features, beside the study's
context-free baselines: how much of a fusion dataset a gated mixture of linear reads takes where one hidden
layer (mlp_all) does not (docs/findings.md, 2026-12-06: why the fusion classifier has model.fusion_experts).

    python benchmarks/context_free_mixture.py data/features/heldout-c-iemocap-interaction --experts 1 2 4 8

Each (K, L2) is fitted by L-BFGS on the training split (full batch, 300 iterations at most), its loss the mean
negative log-likelihood plus L2 times the squared weights (not the biases); validation and test weighted F1 are
printed, so the L2 and K that validation prefers can be read off. K = 1 is a logistic regression.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def fit(x: dict, y: dict, experts: int, l2: float, seed: int = 0) -> dict:
    """Test and validation log-posteriors of maln's LinearExperts (the fusion classifier's mixture) fitted alone."""
    from maln.model.fusion import LinearExperts

    torch.manual_seed(seed)
    n_classes = int(max(v.max() for v in y.values())) + 1
    mixture = LinearExperts(x["train"].shape[1], n_classes, experts)
    opt = torch.optim.LBFGS(mixture.parameters(), max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(mixture(x["train"]), y["train"])
        loss = loss + l2 * (mixture.experts.weight.square().sum() + mixture.gate.weight.square().sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return {s: mixture(v) for s, v in x.items()}


def main() -> int:
    from sklearn.metrics import f1_score

    from maln.baselines import features_of, split_rows
    from maln.data.store import load_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path, help="a prepared store, data/features/NAME")
    ap.add_argument("--experts", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-3, 1e-2, 3e-2])
    args = ap.parse_args()
    torch.set_num_threads(2)
    store = load_store(args.store)
    rows = {s: split_rows(store, s) for s in ("train", "valid", "test")}
    x = {s: torch.tensor(features_of(store, store.modalities, r), dtype=torch.float32) for s, r in rows.items()}
    y = {s: torch.tensor(np.asarray(store.labels[r])) for s, r in rows.items()}
    print(f"{args.store.name}: {len(y['train'])} training utterances, {x['train'].shape[1]} features")
    print("| experts | L2 | valid WF1 | test WF1 |\n| --- | --- | --- | --- |")
    for k in args.experts:
        for l2 in args.l2:
            out = fit(x, y, k, l2)
            wf1 = {s: 100 * f1_score(y[s], out[s].argmax(1), average="weighted") for s in ("valid", "test")}
            print(f"| {k} | {l2:g} | {wf1['valid']:.2f} | {wf1['test']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
