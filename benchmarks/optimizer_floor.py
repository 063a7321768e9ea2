"""Is it the model or its training that keeps a network under a context-free baseline? The same
model as a baseline of maln/baselines.py (`--model mlp`: mlp_all's one hidden layer of MLP_HIDDEN
units on the utterance's standardised, concatenated features; `--model logreg`: the logistic
regression on the modalities `--modalities` names, all by default), written in torch and trained on
one dataset's splits two ways, seeds 0-2:

- as the baseline is: full batch, L-BFGS, an L2 penalty alpha/(2n) ||W||^2 (alpha chosen on the
  validation split from params.yaml's `baselines.mlp_alpha`, or 1/C for C in `baselines.logreg_C`),
  at most as many iterations as the baseline's (torch's L-BFGS, not scipy's: its history and
  tolerances differ, so the MLP's fit is close to sklearn's, not equal; the regression's is equal);
- about as the study's networks are: Adam at the dataset's learning rate, minibatches of the
  dataset's `train.batch_dialogues` dialogues, its `train.epochs`, input dropout as its
  `model.input_dropout` or none, the epoch chosen by validation WF1 (without the networks' weight
  decay of 3e-5 and gradient clipping); and Adam on the full batch under the L2 penalty L-BFGS chose,
  1000 steps, the step chosen by validation every 10.

The study's sklearn baseline (one fit; printed where the study has that baseline) is shown beside
them. Test weighted F1 (%).

    python benchmarks/optimizer_floor.py --datasets synthetic-meld-nuisance synthetic-meld \\
        --out benchmarks/results/optimizer-floor.md
    python benchmarks/optimizer_floor.py --model logreg --modalities visual --datasets synthetic-iemocap
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from experiments import _ensure_store  # noqa: E402
from maln.baselines import BASELINES, LOGREG_MAX_ITER, MLP_HIDDEN, MLP_MAX_ITER, features_of, fit, split_rows  # noqa: E402
from maln.config import load_params  # noqa: E402
from maln.data.store import load_store  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402


def network(kind: str, d_in: int, n_classes: int, in_dropout: float = 0.0) -> nn.Module:
    if kind == "logreg":
        return nn.Sequential(nn.Dropout(in_dropout), nn.Linear(d_in, n_classes))
    return nn.Sequential(nn.Dropout(in_dropout), nn.Linear(d_in, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, n_classes))


def l2(model: nn.Module, alpha: float, n: int) -> torch.Tensor:
    """sklearn's MLP penalty: alpha / (2 n) times the squared weights (not the biases)."""
    return alpha / (2 * n) * sum((p ** 2).sum() for name, p in model.named_parameters() if name.endswith("weight"))


class Data:
    def __init__(self, store, names, kind: str, modalities):
        rows = {s: split_rows(store, s) for s in ("train", "valid", "test")}
        self.kind = kind
        self.x = {s: torch.tensor(features_of(store, modalities, r)) for s, r in rows.items()}
        self.y = {s: torch.tensor(np.asarray(store.labels[r]), dtype=torch.long) for s, r in rows.items()}
        self.names, self.n = names, len(rows["train"])
        self.dialogue_of = np.repeat(np.arange(len(store.dialogues("train"))), store.lengths()[store.dialogues("train")])

    def wf1(self, model: nn.Module, split: str) -> float:
        model.eval()
        with torch.no_grad():
            pred = model(self.x[split]).argmax(-1).numpy()
        return 100 * classification_metrics(self.y[split].numpy(), pred, self.names)["weighted_f1"]


def lbfgs(data: Data, seed: int, alpha: float) -> nn.Module:
    torch.manual_seed(seed)
    model = network(data.kind, data.x["train"].shape[1], len(data.names)).double()
    iterations = LOGREG_MAX_ITER if data.kind == "logreg" else MLP_MAX_ITER
    opt = torch.optim.LBFGS(model.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(data.x["train"]), data.y["train"]) + l2(model, alpha, data.n)
        loss.backward()
        return loss

    model.train()
    opt.step(closure)
    return model


def adam(data: Data, seed: int, lr: float, epochs: int, batch_dialogues: int, in_dropout: float,
         alpha: float = 0.0, full_batch_steps: int = 0) -> tuple[float, float]:
    """(valid, test) WF1 at the epoch (or, full batch, every 10th step) validation chose."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = network(data.kind, data.x["train"].shape[1], len(data.names), in_dropout).double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (-1.0, 0.0)
    dialogues = np.unique(data.dialogue_of)
    for epoch in range(full_batch_steps // 10 if full_batch_steps else epochs):
        if full_batch_steps:
            batches = [np.arange(data.n)] * 10
        else:
            order = rng.permutation(dialogues)
            batches = [np.flatnonzero(np.isin(data.dialogue_of, order[i:i + batch_dialogues]))
                       for i in range(0, len(order), batch_dialogues)]
        model.train()
        for rows in batches:
            rows = torch.from_numpy(rows)
            loss = F.cross_entropy(model(data.x["train"][rows]), data.y["train"][rows]) + l2(model, alpha, data.n)
            opt.zero_grad()
            loss.backward()
            opt.step()
        valid = data.wf1(model, "valid")
        if valid > best[0]:
            best = (valid, data.wf1(model, "test"))
    return best


def measure(params, dataset: str, kind: str, modalities) -> list[tuple[str, list]]:
    _ensure_store(params, dataset)
    store = load_store(params.root / "data" / "features" / dataset)
    used = [m for m in store.modalities if not modalities or m in modalities]
    data = Data(store, list(store.class_names), kind, used)
    model_cfg, train_cfg = params.run_config(dataset)
    lr, epochs, batch = train_cfg["lr"], train_cfg["epochs"], train_cfg["batch_dialogues"]
    drop = model_cfg["input_dropout"]
    grid_c, grid_alpha = params.data["baselines"]["logreg_C"], params.data["baselines"]["mlp_alpha"]
    alphas = sorted(grid_alpha if kind == "mlp" else [1 / c for c in grid_c], reverse=True)
    seeds = (0, 1, 2)
    rows = []
    name = "mlp_all" if kind == "mlp" else "logreg_all" if len(used) > 1 else f"logreg_{used[0]}"
    if BASELINES[name].uses(store.modalities) == tuple(used):  # the study has this baseline (no MLP per modality)
        sk = fit(store, BASELINES[name], grid_c, grid_alpha)
        chosen_value = f"alpha {sk['alpha']:g}" if kind == "mlp" else f"C {sk['C']:g}"
        rows.append((f"sklearn, L-BFGS (the study's {name}, {chosen_value})",
                     [(100 * sk["valid"]["weighted_f1"], 100 * sk["test"]["weighted_f1"])]))
    chosen, penalties = [], []
    for seed in seeds:  # alpha by validation per seed, strongest first on ties, as the baseline
        fits = [(data.wf1(m, "valid"), data.wf1(m, "test"), a) for a, m in ((a, lbfgs(data, seed, a)) for a in alphas)]
        *scores, alpha = max(fits, key=lambda f: f[0])
        chosen.append(scores)
        penalties.append(alpha)
    rows.append(("torch, L-BFGS, L2 by validation, the baseline's iterations", chosen))
    rows.append((f"torch, Adam lr {lr:g}, {epochs} epochs of {batch}-dialogue batches, input dropout {drop:g}",
                 [adam(data, s, lr, epochs, batch, drop) for s in seeds]))
    rows.append((f"torch, Adam lr {lr:g}, {epochs} epochs of {batch}-dialogue batches, no input dropout",
                 [adam(data, s, lr, epochs, batch, 0.0) for s in seeds]))
    rows.append((f"torch, Adam lr {lr:g}, full batch, L2 as L-BFGS chose it, 1000 steps",
                 [adam(data, s, lr, 0, 0, 0.0, alpha=a, full_batch_steps=1000) for s, a in zip(seeds, penalties)]))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic-meld-nuisance"])
    ap.add_argument("--model", choices=("mlp", "logreg"), default="mlp")
    ap.add_argument("--modalities", nargs="+", default=None, help="the modalities it reads (default: all)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    what = "MLP (mlp_all's" if args.model == "mlp" else "logistic regression (logreg's"
    reads = ", ".join(args.modalities) if args.modalities else "every modality"
    lines = [f"The same context-free {what}, maln/baselines.py) on {reads}, trained as the baseline is and as "
             "the networks are (benchmarks/optimizer_floor.py). Weighted F1 (%), mean ± std over seeds 0-2 "
             "(the sklearn row: one fit).", ""]
    for dataset in args.datasets:
        lines += [f"### {dataset}", "", "| training | valid WF1 | test WF1 |", "| --- | --- | --- |"]
        for name, scores in measure(load_params(REPO / "params.yaml"), dataset, args.model, args.modalities):
            s = np.array(scores)
            sd = lambda c: f" ± {s[:, c].std(ddof=1):.2f}" if len(s) > 1 else ""  # noqa: E731
            lines.append(f"| {name} | {s[:, 0].mean():.2f}{sd(0)} | {s[:, 1].mean():.2f}{sd(1)} |")
            print(lines[-1], flush=True)
        lines.append("")
    options = f" --model {args.model}" + (f" --modalities {' '.join(args.modalities)}" if args.modalities else "")
    lines.append(f"{time.time() - t0:.0f} s; command: `python benchmarks/optimizer_floor.py{options} --datasets "
                 f"{' '.join(args.datasets)}`")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
