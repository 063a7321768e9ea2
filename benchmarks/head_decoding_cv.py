"""The two ways a branchwise model's heads meet the chain, compared out of sample on the validation
split: combined, then the combination decoded (the rule until 2026-12-05), or each head decoded with
its own setting, then combined (the rule since). Each run's selected weights give the validation
split's head posteriors once; the split's dialogues fall into FOLDS folds, each fold is predicted
with the settings and weights fitted on the other folds, and the pooled held-out predictions are
scored (weighted F1). Nothing is retrained and the test split is not read.

    python benchmarks/head_decoding_cv.py distill distill-step-branches --seeds 10

STEM: an experiment's folder under results/experiments/ whose `full` runs load with this code
(their decoder settings are ignored). Its weights are one flat grid over every head, as before
2026-12-05 (seventeenth session): for runs with each modality's regression (model.linear_head) that
is 2 x 5^7 candidates and not the shipped two-stage rule (inference._choose_weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from maln import chain  # noqa: E402
from maln.combination import choose_combination, posterior  # noqa: E402
from maln.config import load_params  # noqa: E402
from maln.inference import predict  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402
from maln.train import Run  # noqa: E402

DATASETS = ["synthetic-iemocap", "synthetic-iemocap-noise", "synthetic-meld", "synthetic-iemocap-interaction",
            "synthetic-meld-nuisance"]
FOLDS = 5


def _fit_and_apply(rule, heads, gold, dialogue, fit, held, transition, prior, log_prior, anchors):
    def decoded(lp, rows, setting):
        return np.log(np.maximum(chain.decode(np.exp(lp[rows]), dialogue[rows], transition, prior, *setting), 1e-12))

    if rule == "combined, then decoded":
        w = choose_combination([h[fit] for h in heads], gold[fit], log_prior, anchors)
        setting = chain.choose(posterior([h[fit] for h in heads], w, log_prior), gold[fit], dialogue[fit], transition,
                               prior)
        return chain.decode(posterior([h[held] for h in heads], w, log_prior), dialogue[held], transition, prior,
                            *setting)
    settings = [chain.choose(np.exp(h[fit]), gold[fit], dialogue[fit], transition, prior) for h in heads]
    w = choose_combination([decoded(h, fit, s) for h, s in zip(heads, settings)], gold[fit], log_prior, anchors)
    return posterior([decoded(h, held, s) for h, s in zip(heads, settings)], w, log_prior)


def scores(stem: str, dataset: str, seeds: int, params) -> dict:
    run = Run(params, dataset, "full", threads=1)
    out = {r: [] for r in ("combined, then decoded", "decoded, then combined")}
    for seed in range(seeds):
        model = run.build_model(seed)
        state = torch.load(REPO / "results/experiments" / stem / dataset / "full" / f"seed{seed}" / "model.pt",
                           weights_only=True)["model"]
        state.pop("decoder.setting")  # its shape is this code's; the rules below choose their own
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing != ["decoder.setting"] or unexpected:
            raise SystemExit(f"{stem}/{dataset}/seed{seed}: the weights do not fit this model ({missing}, {unexpected})")
        p = predict(model, run.data, run.splits["valid"], 8, heads=True)
        heads = [p.heads[n] for n in model.head_names]
        transition, prior = model.decoder.transition.double().numpy(), model.decoder.prior.double().numpy()
        log_prior = model.log_prior.numpy()
        anchors = (1 + model.modalities.index("text"), 0)
        dialogues = np.unique(p.dialogue)
        fold_of = dict(zip(dialogues, np.random.default_rng(seed).permutation(len(dialogues)) % FOLDS))
        fold = np.array([fold_of[d] for d in p.dialogue])
        for rule in out:
            pred = np.zeros(len(p.gold), dtype=int)
            for f in range(FOLDS):
                fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
                pred[held] = _fit_and_apply(rule, heads, p.gold, p.dialogue, fit, held, transition, prior, log_prior,
                                            anchors).argmax(1)
            out[rule].append(100 * classification_metrics(p.gold, pred, run.store.class_names)["weighted_f1"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stems", nargs="+")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    print("| runs | dataset | combined, then decoded | decoded, then combined | difference [95 % t interval] |")
    print("| --- | --- | --- | --- | --- |")
    for stem in args.stems:
        for dataset in args.datasets:
            s = scores(stem, dataset, args.seeds, params)
            a, b = (np.array(v) for v in s.values())
            d = b - a
            h = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            print(f"| {stem} | {dataset} | {a.mean():.2f} | {b.mean():.2f} | {d.mean():+.2f} "
                  f"[{d.mean() - h:+.2f}, {d.mean() + h:+.2f}] |", flush=True)
    print(f"\n{FOLDS}-fold cross-fitting over each run's validation dialogues; command: `python "
          f"benchmarks/head_decoding_cv.py {' '.join(args.stems)} --seeds {args.seeds}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
