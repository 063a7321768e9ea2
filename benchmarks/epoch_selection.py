"""Is a single-modality floor the epoch selection's optimism? Every run records, after each epoch, its
validation WF1 and (for the protocol table) its test WF1, each of the epoch's own combination and
decoding (history.csv). Read off those curves, with no training, the test WF1 of the epoch chosen
by six rules: the highest validation WF1 (the shipped rule; the first on ties), the highest
3- or 5-epoch centred moving average of it (edges padded with the end values), the last epoch, and
the lowest validation NLL (runs that record it, valid_nll; "-" for the others), and the highest
validation WF1 before the chain's decoding (valid_weighted_f1_undecoded, where recorded): the
decoded WF1 is read after a decoding chosen on the same validation split.
Test WF1 (%), mean over the seeds, beside the row's floor (its context-free logistic regression).

    python benchmarks/epoch_selection.py chain-decoding --out benchmarks/results/epoch-selection.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
RULES = ("validation max", "moving average 3", "moving average 5", "last epoch", "validation NLL min",
         "undecoded validation max")
FLOOR = {"full": "logreg_all", "text_only": "logreg_text", "audio_only": "logreg_audio", "visual_only": "logreg_visual"}


def chosen(history: pd.DataFrame, rule: str) -> int | None:
    """The epoch's row that `rule` picks; None where the run did not record what the rule reads."""
    if rule == "validation NLL min":
        return int(np.argmin(history["valid_nll"].to_numpy())) if "valid_nll" in history else None
    if rule == "undecoded validation max":  # the epoch by its WF1 before the chain's decoding, fitted on it after
        column = "valid_weighted_f1_undecoded"
        return int(np.argmax(history[column].to_numpy())) if column in history else None
    valid = history["valid_weighted_f1"].to_numpy()
    if rule == "validation max":
        return int(np.argmax(valid))
    if rule == "last epoch":
        return len(valid) - 1
    k = int(rule.rsplit(" ", 1)[1])
    padded = np.pad(valid, (k // 2, k // 2), mode="edge")
    return int(np.argmax(np.convolve(padded, np.ones(k) / k, mode="valid")))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", help="a folder of results/experiments/")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    root = REPO / "results" / "experiments" / args.experiment
    lines = [__doc__.split("\n\n")[0].replace("\n", " "), "",
             "| dataset | row | seeds | floor | " + " | ".join(RULES) + " |", "| --- " * (4 + len(RULES)) + "|"]
    for ds_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        baselines = json.loads((REPO / "results" / "metrics.json").read_text()).get(ds_dir.name, {})  # the study's
        for row in sorted(p for p in ds_dir.iterdir() if p.is_dir()):
            variant = next((v for v in FLOOR if row.name.startswith(v)), None)
            histories = [pd.read_csv(s / "history.csv") for s in sorted(row.glob("seed*"))]
            if variant is None or not histories or FLOOR[variant] not in baselines:
                continue
            floor = baselines[FLOOR[variant]]["test_wf1_mean"]
            picks = [[chosen(h, r) for h in histories] for r in RULES]
            scores = [np.mean([100 * h["test_weighted_f1"].to_numpy()[e] for h, e in zip(histories, es)])
                      if None not in es else None for es in picks]
            lines.append(f"| {ds_dir.name} | {row.name} | {len(histories)} | {floor:.2f} | "
                         + " | ".join("-" if s is None else f"{s:.2f}" for s in scores) + " |")
    lines += ["", f"command: `python benchmarks/epoch_selection.py {args.experiment}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
