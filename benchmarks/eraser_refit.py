"""Can the erasure adversary's per-epoch refit be made cheaper by fitting on part of the training
split? At the paper's IEMOCAP shape the refit is one evaluation pass over the training split
(about 30 % of a training epoch on 2 CPU threads, benchmarks/speed.py); this script trains the
full model there for a few epochs, then refits the eraser on the whole training split and on
fixed random subsets of whole dialogues, and reports the refit's time and what a fresh linear
probe reads from the test split's common features (fitted and scored on disjoint test dialogues,
as the study's invariance table does, maln/probes.py).

    python benchmarks/eraser_refit.py --out benchmarks/results/eraser-refit-cpu-2-threads.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import speed  # noqa: E402
from maln.config import load_params  # noqa: E402
from maln.inference import fit_eraser, predict  # noqa: E402
from maln.probes import invariance  # noqa: E402
from maln.train import Run, make_optimizer  # noqa: E402


def subset(run: Run, dialogues: np.ndarray, utterances: int | None) -> np.ndarray:
    """Whole training dialogues in a fixed random order, as many as fit in `utterances`."""
    if utterances is None:
        return dialogues
    order = np.random.default_rng(0).permutation(dialogues)
    return np.sort(order[np.cumsum(run.data.lengths[order]) <= utterances])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="training epochs before the comparison")
    ap.add_argument("--caps", type=int, nargs="+", default=[4096, 2048, 1024], help="utterances in the subsets")
    ap.add_argument("--dialogues", type=int, help="training dialogues (default: the shape's; fewer for a quick check)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        params = speed.build("iemocap", Path(tmp) / "iemocap", args.dialogues)
        params = load_params(params.path, ["train.device=cpu", "model.adversary=erasure"])
        run = Run(params, "bench-iemocap", "full", args.threads)
        model = run.build_model(0)
        optimizer = make_optimizer(model, run.train_cfg)
        train, test = run.splits["train"], run.splits["test"]
        for epoch in range(args.epochs):
            speed.fast_epoch(run, model, train, optimizer, np.random.default_rng(epoch))
        batch = run.train_cfg.batch_dialogues
        rows = []
        for cap in [None, *args.caps]:
            part = subset(run, train, cap)
            t0 = time.perf_counter()
            fit_eraser(model, run.data, part, batch)
            seconds = time.perf_counter() - t0
            p = predict(model, run.data, test, batch, keep_features=True)
            probes = invariance({"specific": p.specific, "common": p.common, "gold": p.gold, "dialogue": p.dialogue})
            rows.append((cap, len(part), int(run.data.lengths[part].sum()), seconds, probes))
            print(f"refit on {rows[-1][2]} utterances: {seconds:.2f} s, modality probe on common "
                  f"{probes['common_modality_accuracy']:.3f}", file=sys.stderr, flush=True)
    lines = [f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, {args.threads} CPU threads; the full model at "
             f"the paper's IEMOCAP shape after {args.epochs} training epochs (`{' '.join(['python', *sys.argv])}`)",
             "", "| eraser fitted on | dialogues | utterances | refit s | modality probe, common (chance 33.3) "
             "| emotion probe, common |", "| --- | --- | --- | --- | --- | --- |"]
    for cap, n, utt, seconds, p in rows:
        lines.append(f"| {'the whole training split' if cap is None else f'a subset of at most {cap} utterances'} "
                     f"| {n} | {utt} | {seconds:.2f} | {100 * p['common_modality_accuracy']:.1f} "
                     f"| {100 * p['common_emotion_accuracy']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
