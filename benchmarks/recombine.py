"""A change to the combination rule (maln/inference.py, _choose_weights), measured on runs already trained.

Training never reads the rule: each network's epoch is chosen by its own head's score (maln/selection.py), and
the combination is chosen once, on validation, after training. So a run trained before a change holds the very
networks the changed code would train, and re-choosing its weights with this checkout's rule gives what a
rerun would. For each run's model.pt: its heads' predictions on the validation and test splits of its store,
each decoded with the chain setting the run chose (the settings are chosen head by head, before the weights),
the weights chosen again with this checkout's rule, and the test WF1 of the run as stored beside the one with
the weights chosen now (twenty-third session: the same numbers as the ten-seed and held-out reruns, to the bit).

    python benchmarks/recombine.py --store-root CLONE CLONE/results/experiments/full-size-regression-anchor/*/full_paper_sizes/seed*
    python benchmarks/recombine.py --on test --store-root CLONE RUN...   # the weights the test split would choose

With --on test the weights are chosen on the test split instead: not a model (it reads the labels it is scored
on), but where it differs from the validation's choice, that choice read its split's sample rather than the heads
(twenty-seventh session: pure-noise heads on synthetic-iemocap-noise).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maln.combination import combine  # noqa: E402
from maln.data.batching import DeviceData  # noqa: E402
from maln.data.store import load_store  # noqa: E402
from maln.evaluate import build_from_checkpoint, load_checkpoint  # noqa: E402
from maln.inference import _choose_weights, _decoded_heads, _settings, predict  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402


def recombine(run: Path, store_root: Path, on: str = "valid") -> dict:
    """The run's stored test (and validation) WF1 and the ones with its weights chosen by this checkout's rule, on
    the split `on` (test: what the test split's own likelihood would choose, a diagnostic and not a model)."""
    stored = json.loads((run / "metrics.json").read_text())
    ckpt = load_checkpoint(run / "model.pt")
    model = build_from_checkpoint(ckpt, torch.device("cpu"), run / "model.pt")
    if not model.combined or model.decoder is None:
        raise SystemExit(f"{run}: not a model whose prediction combines decoded heads (nothing to re-choose)")
    store = load_store(store_root / "data" / "features" / stored["dataset"], verify=False)
    data = DeviceData(store, model.modalities, torch.device("cpu"))
    batch = ckpt["config"]["train"]["batch_dialogues"]
    split = {s: predict(model, data, store.dialogues(s), batch, False, heads=True) for s in ("valid", "test")}
    heads = {s: _decoded_heads(model, p, _settings(model)) for s, p in split.items()}
    weights = _choose_weights(model, heads[on], split[on].gold)
    prior = model.log_prior.numpy()
    now = {s: 100 * classification_metrics(split[s].gold, combine(heads[s], weights, prior).argmax(1),
                                           store.class_names)["weighted_f1"] for s in split}
    return {"dataset": stored["dataset"], "variant": stored["variant"], "seed": stored["seed"],
            "stored": {s: 100 * stored[s]["weighted_f1"] for s in split}, "now": now,
            "weights": {n: float(w) for n, w in zip(model.head_names, weights) if w}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (each with model.pt and metrics.json)")
    ap.add_argument("--store-root", type=Path, default=REPO, help="the project folder whose data/features/ holds the runs' stores")
    ap.add_argument("--on", choices=("valid", "test"), default="valid",
                    help="the split the weights are chosen on (test: what that split's own likelihood prefers, to diagnose a "
                         "choice made on validation; default valid, as training chooses)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    groups = defaultdict(list)
    for run in args.runs:
        r = recombine(run, args.store_root, args.on)
        groups[(r["dataset"], r["variant"])].append(r)
        print(f"{r['dataset']} {r['variant']} seed {r['seed']}: test {r['stored']['test']:.2f} -> {r['now']['test']:.2f} "
              f"(validation {r['stored']['valid']:.2f} -> {r['now']['valid']:.2f}); weights now {r['weights']}")
    print("\n| dataset | variant | seeds | test WF1 stored | test WF1, weights chosen now | change |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (dataset, variant), rs in groups.items():
        before, after = (np.array([r[k]["test"] for r in rs]) for k in ("stored", "now"))
        print(f"| {dataset} | {variant} | {len(rs)} | {before.mean():.2f} | {after.mean():.2f} | {after.mean() - before.mean():+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
