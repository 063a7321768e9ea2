"""Does an L-BFGS refit of the fusion path under an L2 penalty help a trained `full` model? On
synthetic-meld-nuisance the same MLP as mlp_all scores ~3.6 WF1 points more fitted by L-BFGS under
its L2 penalty than trained as the networks are (benchmarks/optimizer_floor.py). This script takes
the study's trained `full` models (the selected epoch's weights, results/runs/DATASET/full/seedK/model.pt), refits part of the fusion
path the same way on the training split (full batch, evaluation mode, cross-entropy of the fusion
classifier plus alpha / (2 n) times the squared weight matrices, L-BFGS), chooses the combination on
validation again, and reports validation and test WF1 of the prediction and of the fusion classifier
alone. The common encoders stay as trained (the eraser's statistics are theirs).

    python benchmarks/fusion_refit.py --runs results/runs --datasets synthetic-meld-nuisance \\
        --out benchmarks/results/fusion-refit.md
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maln.config import load_params  # noqa: E402
from maln.inference import fit_combination, metrics_of  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402
from maln.train import Run  # noqa: E402

PARTS = {  # what is refitted
    "fusion classifier": lambda m: [*m.classifier.parameters()],
    "specific encoders + fusion classifier": lambda m: [*m.amdm.specific.parameters(), *m.classifier.parameters()],
    "specific encoders + cross-modal block + fusion classifier":
        lambda m: [*m.amdm.specific.parameters(), *m.cross.parameters(), *m.classifier.parameters()],
}


def scores(run: Run, model) -> tuple:
    """(valid, test) WF1 of the prediction, then of the fusion classifier alone; the combination refitted."""
    names = run.store.class_names
    valid = run.predict(model, "valid", heads=True)
    fit_combination(model, valid)
    test = run.predict(model, "test", heads=True)
    head = [100 * classification_metrics(p.gold, p.heads["fusion"].argmax(1), names)["weighted_f1"] for p in (valid, test)]
    return (100 * metrics_of(valid, names)["weighted_f1"], 100 * metrics_of(test, names)["weighted_f1"], *head)


def refit(run: Run, model, part: str, alpha: float, iterations: int) -> tuple:
    """A refitted copy and (training CE + penalty before, after)."""
    model = copy.deepcopy(model).eval()
    chosen = PARTS[part](model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in chosen:
        p.requires_grad_(True)
    b = run.data.batch(run.splits["train"])
    n = int(b.mask.sum())
    opt = torch.optim.LBFGS(chosen, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = model(b.features, b.speakers, b.mask, b.lengths).fused_logits  # the parts not refitted are frozen
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b.labels.reshape(-1), ignore_index=-100)
        loss = loss + alpha / (2 * n) * sum((p ** 2).sum() for p in chosen if p.dim() >= 2)
        loss.backward()
        return loss

    before = float(closure())
    opt.step(closure)
    return model, (before, float(closure()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="a finished study's results/runs")
    ap.add_argument("--datasets", nargs="+", default=["synthetic-meld-nuisance"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--alpha", type=float, default=10.0)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    params = load_params(REPO / "params.yaml")
    lines = [f"The study's `full` models with part of the fusion path refitted by L-BFGS ({args.iterations} iterations, "
             f"L2 alpha {args.alpha:g}) on the training split (benchmarks/fusion_refit.py). Weighted F1 (%), mean ± std "
             f"over seeds {args.seeds}; training loss: cross-entropy + penalty, before -> after.", ""]
    for dataset in args.datasets:
        run = Run(params, dataset, "full", threads=1)
        rows = {"as trained (Adam, validation-selected epoch)": []}
        losses = {}
        for seed in args.seeds:
            model = run.build_model(seed)
            state = torch.load(args.runs / dataset / "full" / f"seed{seed}" / "model.pt", weights_only=True)
            model.load_state_dict(state["model"])
            rows["as trained (Adam, validation-selected epoch)"].append(scores(run, model.eval()))
            for part in PARTS:
                refitted, loss = refit(run, model, part, args.alpha, args.iterations)
                rows.setdefault(f"refit: {part}", []).append(scores(run, refitted))
                losses.setdefault(f"refit: {part}", []).append(loss)
        lines += [f"### {dataset}", "", "| model | valid WF1 | test WF1 | fusion classifier valid | fusion classifier test "
                  "| training loss |", "| --- | --- | --- | --- | --- | --- |"]
        for name, r in rows.items():
            r = np.array(r)
            cells = [f"{r[:, c].mean():.2f} ± {r[:, c].std(ddof=1):.2f}" for c in range(4)]
            loss = np.array(losses[name]).mean(0) if name in losses else None
            lines.append(f"| {name} | {' | '.join(cells)} | {f'{loss[0]:.3f} -> {loss[1]:.3f}' if loss is not None else '–'} |")
            print(lines[-1], flush=True)
        lines.append("")
    lines.append(f"{time.time() - t0:.0f} s; command: `python benchmarks/fusion_refit.py --runs RUNS --datasets "
                 f"{' '.join(args.datasets)}`")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
