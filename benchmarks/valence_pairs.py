"""Text alone on an interaction dataset: how well each reader tells the valence pairs apart, and how
it splits its predictions within them. On synthetic-iemocap-interaction text shows the prototype of
the valence-inverted emotion half the time (maln/data/fusion.py, INVERT), so text alone can tell the
pair {y, INVERT[y]} and, within it, nothing but the prior (and a little context). The WF1 of a reader
then depends on how it splits its predictions within the pairs, which accuracy does not reward and WF1
does. For the single-modality networks of a runs folder, the study's logistic regression and the
exact Bayes rule of the modality alone (with and without the dialogue's context): accuracy, pair
accuracy (the right pair), accuracy within the right pair, WF1 and the share of each predicted emotion.

    python benchmarks/valence_pairs.py --runs results/runs --out benchmarks/results/valence-pairs.md
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from maln.config import load_params  # noqa: E402
from maln.data import fusion, layouts, oracle  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402


def row(name, gold, pred, pair, names) -> list:
    right_pair = pair[pred] == pair[gold]
    share = np.bincount(pred, minlength=len(names)) / len(pred)
    return [name, 100 * (pred == gold).mean(), 100 * right_pair.mean(), 100 * (pred == gold)[right_pair].mean(),
            100 * classification_metrics(gold, pred, names)["weighted_f1"], " / ".join(f"{s:.2f}" for s in share)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="synthetic-iemocap-interaction")
    ap.add_argument("--runs", default="results/runs", help="runs folder: DATASET/<modality>_only/seedK/predictions.csv")
    ap.add_argument("--out", help="Markdown file to write")
    args = ap.parse_args(argv)
    started = time.time()
    entry = load_params(REPO / "params.yaml").dataset(args.dataset)
    spec = entry["synthetic"]["interaction"]
    modality = spec["inverted"]
    names = list(layouts.get(entry["layout"]).class_names)
    invert = np.array(fusion.INVERT[layouts.get(entry["layout"]).synthetic_of])
    pair = np.minimum(np.arange(len(names)), invert)  # each emotion's pair, named by its smaller index
    dialogues, test_ids, emission, chain = fusion.sample(entry["layout"], entry["synthetic"])
    test = set(test_ids)
    gold, rules = [], {"context": [], "utterance": []}
    for vid, _, labels, feats in dialogues:
        if vid in test:
            gold.append(np.asarray(labels))
            ll = oracle.loglik(feats, emission, [modality])
            rules["context"].append(oracle.forward_backward(ll, chain).argmax(1))
            rules["utterance"].append(oracle.utterance_posteriors(ll, chain).argmax(1))
    gold = np.concatenate(gold)
    rows = [row(f"exact Bayes rule of {modality} alone, {k}", gold, np.concatenate(v), pair, names) for k, v in rules.items()]
    baseline = json.loads((REPO / "results/baselines" / f"{args.dataset}.json").read_text())["baselines"][f"logreg_{modality}"]
    rows.append(row(f"logreg_{modality}", gold, np.asarray(baseline["test_predictions"]), pair, names))
    index = {n: i for i, n in enumerate(names)}
    runs = sorted(Path(args.runs, args.dataset, f"{modality}_only").glob("seed*/predictions.csv"))
    nets = []
    for path in runs:
        with path.open() as f:
            pred = np.array([index[r["predicted"]] for r in csv.DictReader(f)])
        nets.append(row(f"{modality}_only, {path.parent.name}", gold, pred, pair, names))
    if nets:
        rows += nets + [[f"{modality}_only, mean of {len(nets)}", *np.mean([r[1:5] for r in nets], 0), "–"]]
    lines = [f"Text alone on {args.dataset}'s test split ({len(gold)} utterances): accuracy, pair accuracy "
             f"(the right valence pair), accuracy within the right pair, weighted F1 (%), and the share of each "
             f"predicted emotion ({' / '.join(names)}; gold: {' / '.join(f'{s:.2f}' for s in np.bincount(gold, minlength=len(names)) / len(gold))}).",
             "", "| reader | accuracy | pair accuracy | within the pair | WF1 | predicted shares |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} |" for r in rows]
    lines += ["", f"{time.time() - started:.0f} s; command: `python benchmarks/valence_pairs.py --runs {args.runs}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
