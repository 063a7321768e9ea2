"""How far under the best possible does each single-modality floor lie? For each synthetic dataset
with an exact oracle (maln/data/fusion.py), the exact Bayes rule of every modality read alone
(maln.data.oracle.loglik on that modality), with the dialogue's context (forward-backward over the
generator's chain) and without it, on the test split; beside them the joint rule, as a check
against the main table's oracle rows. The data is drawn again from the registry's `synthetic:`
section, the same draws as `maln synth` writes. Test weighted F1 and accuracy (%). The rules take
the posterior's argmax, which maximises expected accuracy, not WF1: a model that predicts the rarer
of two classes it cannot tell apart more often can score a higher WF1 than these.

    python benchmarks/modality_oracle.py --out benchmarks/results/modality-oracle.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from maln.config import load_params  # noqa: E402
from maln.data import fusion, layouts, oracle, synthetic  # noqa: E402
from maln.metrics import classification_metrics  # noqa: E402


def ceilings(entry: dict) -> dict:
    """{(rule, modalities): (test WF1 %, accuracy %)} for every modality alone and all together."""
    dialogues, test_ids, emission, chain = fusion.sample(entry["layout"], entry["synthetic"])
    names = list(layouts.get(entry["layout"]).class_names)
    test = set(test_ids)
    sets = [(m,) for m in emission.modalities] + [tuple(emission.modalities)]
    decided = {(rule, s): [] for s in sets for rule in ("context", "utterance")}
    gold = []
    for vid, _, labels, feats in dialogues:
        if vid not in test:
            continue
        gold.append(np.asarray(labels))
        for s in sets:
            ll = oracle.loglik(feats, emission, s)
            decided[("context", s)].append(oracle.forward_backward(ll, chain).argmax(1))
            decided[("utterance", s)].append(oracle.utterance_posteriors(ll, chain).argmax(1))
    gold = np.concatenate(gold)
    out = {}
    for k, v in decided.items():
        m = classification_metrics(gold, np.concatenate(v), names)
        out[k] = (100 * m["weighted_f1"], 100 * m["accuracy"])
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=None, help="default: every study dataset with an oracle")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    params = load_params(REPO / "params.yaml")
    names = args.datasets or [d for d in params.data["study"]["datasets"]
                              if synthetic.has_oracle(params.dataset(d).get("synthetic") or {})]
    lines = [__doc__.split("\n\n")[0].replace("\n", " "), ""]
    for name in names:
        scores = ceilings(params.dataset(name))
        lines += [f"### {name}", "", "| modalities | WF1 with context | without | accuracy with context | without |",
                  "| --- | --- | --- | --- | --- |"]
        order = {m: i for i, m in enumerate(params.dataset(name)["synthetic"]["dims"])}  # the registry's order
        for s in sorted({s for _, s in scores}, key=lambda s: (len(s), [order[m] for m in s])):
            label = "+".join(s) + (" (joint rule)" if len(s) > 1 else "")
            (wc, ac), (wu, au) = scores[("context", s)], scores[("utterance", s)]
            lines.append(f"| {label} | {wc:.2f} | {wu:.2f} | {ac:.2f} | {au:.2f} |")
        lines.append("")
    cmd = "python benchmarks/modality_oracle.py" + (f" --datasets {' '.join(args.datasets)}" if args.datasets else "")
    lines.append(f"{time.perf_counter() - started:.0f} s; command: `{cmd}`")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
