"""Training and evaluation speed of MALN at the paper's sizes (params.yaml model: and train:), on data
of the benchmarks' shapes, printed as a table (and written as Markdown with --out).

    python benchmarks/speed.py                       # CPU with 2 threads, and CUDA when present
    python benchmarks/speed.py --shape iemocap --device cpu --threads 2 --epochs 3
    python benchmarks/speed.py --shape iemocap --path fast --adversary reversal erasure   # modes side by side
    python benchmarks/speed.py --shape iemocap --device cpu --path fast --authors /tmp/authors-maln   # against theirs

Shapes (synthetic data written in the real layouts, read through the real readers and store):
  iemocap: 120 training dialogues of 24..110 utterances, 2 parties, text 1024 / audio 100 /
           visual 512, 6 classes (the paper's composite: RoBERTa text, conv-emotion audio/visual)
  meld:    1152 training dialogues of 1..24 utterances, up to 9 parties, text 600 / audio 300, 7 classes
Model: params.yaml `model:` and `train:` as written, the recommended configuration as real data trains it
(the authors' sizes: GRU hidden text 1024, visual 512, audio 100; width 100; batches of 32 dialogues),
variant `full`.

Paths: `fast` is the training loop the study runs (length-bucketed batches, packed GRUs, data on
the device, one host sync per epoch); `plain` is the same model and losses run the straightforward
way (random batches padded to their longest dialogue, a host sync per batch), for comparison in
the same process.

With --authors PATH (a checkout of github.com/rmjrmj/MALN), the authors' model is timed in the same
run at the iemocap shape on CPU (benchmarks/authors_speed.py, in a process of its own), and the
table compares their training epoch with an epoch of this project with everything it needs: the
training pass, the eraser's refit over the training split, the validation pass (over the
validation share of data.valid_fraction) that selection reads, and the share of one epoch in the
regressions fitted once per run (teachers and linear heads, over the run's epochs); the test curve
(train.record_test_curve) is reported apart, as it serves the protocol table only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maln.config import load_params  # noqa: E402
from maln.data import synthetic  # noqa: E402
from maln.data.prepare import prepare  # noqa: E402
from maln import selection  # noqa: E402
from maln.inference import autocast, fit_eraser, fit_prediction, metrics_of, precision, predict  # noqa: E402
from maln.model.amdm import ADVERSARIES  # noqa: E402
from maln.train import Run, make_optimizer, train_epoch  # noqa: E402

SHAPES = {
    "iemocap": {"layout": "synthetic-iemocap", "train": 120, "test": 31, "length": [24, 110],
                "dims": {"text": 1024, "audio": 100, "visual": 512}},
    "meld": {"layout": "synthetic-meld", "train": 1152, "test": 280, "length": [1, 24],
             "dims": {"text": 600, "audio": 300}},
}


def build(shape: str, root: Path, dialogues: int | None = None):
    """A project folder whose registry has one dataset of `shape`, prepared; returns its params."""
    import yaml

    spec = dict(SHAPES[shape])
    if dialogues:  # a smaller study of the same shape, for a quick check of the script
        spec.update(train=dialogues, test=max(2, dialogues // 4))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    n = spec["train"] + spec["test"]
    params["datasets"] = {f"bench-{shape}": {
        "layout": spec["layout"],
        # the validation share is 1 dialogue: the benchmark times epochs over all `train` dialogues
        "valid_fraction": 1 / spec["train"],
        "synthetic": {"dialogues": n, "test_fraction": spec["test"] / n, "length": spec["length"],
                      "dims": spec["dims"], "signal": {m: 1.5 for m in spec["dims"]}, "seed": 1},
    }}
    params["study"]["datasets"] = [f"bench-{shape}"]
    params["study"].pop("rows", None)  # it names the shipped registry's datasets
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = load_params(root / "params.yaml")
    entry = p.dataset(f"bench-{shape}")
    synthetic.write(root / "data" / "raw" / f"bench-{shape}.pkl", entry["layout"], entry["synthetic"])
    with contextlib.redirect_stderr(io.StringIO()):
        prepare(p, f"bench-{shape}")
    return p


def set_value(params_path: Path, section: str, key: str, value) -> None:
    import yaml

    data = yaml.safe_load(params_path.read_text())
    data[section][key] = value
    params_path.write_text(yaml.safe_dump(data, sort_keys=False))


def plain_epoch(run: Run, model, dialogues, optimizer, rng) -> None:
    """Same model and losses; random batches padded to their longest dialogue; a host sync per batch."""
    cfg = run.train_cfg
    order = rng.permutation(dialogues)
    model.train()
    for i in range(0, len(order), cfg.batch_dialogues):
        b = run.data.batch(order[i:i + cfg.batch_dialogues])
        with autocast(run.device, cfg.bf16):
            out = model(b.features, b.speakers, b.mask, b.lengths)
            terms = model.loss(out, b.labels, b.mask, cfg.loss_weights)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        _ = {k: v.item() for k, v in terms.items()}  # per-batch logging, as the public code does


def fast_epoch(run: Run, model, dialogues, optimizer, rng) -> None:
    batches = run.data.training_batches(dialogues, run.train_cfg.batch_dialogues, rng)
    losses = train_epoch(run, model, model, batches, optimizer, run.train_cfg.loss_weights, None)
    assert np.isfinite(losses["loss"])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(params, shape: str, device: str, threads: int, epochs: int, path: str, variant: str = "full") -> dict:
    torch.set_num_threads(threads)
    params = load_params(params.path, [f"train.device={device}"])
    run = Run(params, f"bench-{shape}", variant, threads)
    # once per run, before its first epoch: the branches' teachers (train.distill) and the linear heads' regressions
    # (model.linear_head, which building the model reads), timed apart from the epochs
    t = time.perf_counter()
    run.teachers.fit()
    teachers_s = time.perf_counter() - t if run.train_cfg.distill or run.model_cfg.linear_head else 0.0
    model = run.build_model(0)
    optimizer = make_optimizer(model, run.train_cfg)
    dialogues = np.concatenate([run.splits["train"], run.splits["valid"]])
    step = fast_epoch if path == "fast" else plain_epoch
    from maln.model.context import ContextEncoder

    ContextEncoder.fused_cpu_gru = path == "fast"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s, eval_s, test_s, refit_s, valid_s = [], [], [], [], []
    # the validation split a real run of this shape holds out (data.valid_fraction of the file's dialogues)
    valid = dialogues[:max(1, round(params.data["data"]["valid_fraction"] * len(dialogues)))]
    for epoch in range(epochs + 1):  # the first epoch is a warm-up, not counted
        rng = np.random.default_rng(epoch)
        sync(run.device)
        t0 = time.perf_counter()
        step(run, model, dialogues, optimizer, rng)
        sync(run.device)
        t1 = time.perf_counter()
        predict(model, run.data, dialogues, run.train_cfg.batch_dialogues, run.train_cfg.bf16)
        sync(run.device)
        t2 = time.perf_counter()
        # what train.record_test_curve adds to every epoch: one pass over the test split
        predict(model, run.data, run.splits["test"], run.train_cfg.batch_dialogues, run.train_cfg.bf16)
        sync(run.device)
        t3 = time.perf_counter()
        # what the erasure adversary adds to every epoch: its statistics, one pass over the training split
        fit_eraser(model, run.data, dialogues, run.train_cfg.batch_dialogues, run.train_cfg.bf16)
        sync(run.device)
        t4 = time.perf_counter()
        # what selection reads every epoch: one pass over the validation split (its share of the file),
        # and what it fits on it: the combination (branchwise) and the chain decoding (model.decode), then each
        # part's own score (maln/selection.py), as training does
        p = predict(model, run.data, valid, run.train_cfg.batch_dialogues, run.train_cfg.bf16, heads=True)
        fit_prediction(model, p)
        selection.scores(model, p, metrics_of(p, run.store.class_names), run.store.class_names)
        sync(run.device)
        t5 = time.perf_counter()
        if epoch:
            train_s.append(t1 - t0)
            eval_s.append(t2 - t1)
            test_s.append(t3 - t2)
            refit_s.append(t4 - t3)
            valid_s.append(t5 - t4)
    utterances = int(run.data.lengths[dialogues].sum())
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "shape": shape, "path": path, "variant": variant, "device": run.placement.describe(), "threads": torch.get_num_threads(),
        "train_s": statistics.median(train_s), "eval_s": statistics.median(eval_s), "test_s": statistics.median(test_s),
        "refit_s": statistics.median(refit_s), "valid_s": statistics.median(valid_s), "valid_dialogues": len(valid),
        "adversary": run.model_cfg.adversary,
        # on the CPU, nn.GRU (the plain path) ignores the bf16 products, which only maln.model.fast_gru computes
        "precision": precision(run.device, run.train_cfg.bf16) if path == "fast" or device == "cuda" else "float32",
        "utt_per_s": utterances / statistics.median(train_s), "peak_mib": peak,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "dialogues": len(dialogues),
        "utterances": utterances, "teachers_s": teachers_s, "run_epochs": run.train_cfg.epochs,
    }


def table(rows: list[dict], epochs: int, authors: dict | None = None) -> str:
    head = ("| shape | path | device | threads | train s/epoch | eval s/pass | train utt/s | peak MiB | params (M) |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = [f"| {r['shape']} ({r['dialogues']} dialogues, {r['utterances']} utt.) | {r['path']}, {r['adversary']}, "
             f"{r['precision']} | "
             f"{r['device']} | {r['threads']} | {r['train_s']:.2f} | {r['eval_s']:.2f} | {r['utt_per_s']:.0f} | "
             f"{r['peak_mib']:.0f} | {r['params_m']:.1f} |" for r in rows]
    fast = [r for r in rows if r["path"] == "fast"]
    notes = [f"- Recording the test curve (train.record_test_curve) adds one pass over the test split per epoch: "
             f"{r['test_s']:.2f} s at the {r['shape']} shape on {r['device']} ({r['precision']}), {100 * r['test_s'] / r['train_s']:.0f} % of a "
             f"training epoch." for r in fast]
    notes += [f"- Fitting the regressions (the branches' teachers, train.distill, and the linear heads, model.linear_head) "
              f"takes {r['teachers_s']:.1f} s once per run at the "
              f"{r['shape']} shape on {r['device']} ({r['precision']}): {r['teachers_s'] / r['run_epochs']:.2f} s an epoch over a run's "
              f"{r['run_epochs']} epochs (counted in the epoch with everything it needs, below)." for r in fast
              if r.get("teachers_s")]
    notes += [f"- The {r['adversary']} adversary refits its statistics on the training split after every epoch: "
              f"{r['refit_s']:.2f} s at the {r['shape']} shape on {r['device']} ({r['precision']}), {100 * r['refit_s'] / r['train_s']:.0f} % of "
              f"a training epoch." for r in fast if r["adversary"] == "erasure"]
    text = head + "\n".join(lines) + (f"\n\nMedian of {epochs} epochs after one warm-up epoch; each row runs in its own "
                                      "process; peak memory is that process's maximum RSS on CPU and torch's peak "
                                      "allocation on CUDA.\n\n" + "\n".join(notes) + "\n")
    if authors:
        ours = [r for r in fast if r["shape"] == "iemocap" and r["device"].startswith("cpu")]
        text += ("\n### Against the authors' model, measured in this run\n\n"
                 "| model | training pass | eraser refit | validation pass | regressions' fit, per epoch | "
                 "epoch with everything it needs | parameters (M) | speed-up |\n"
                 "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
                 f"| the authors' (their code, {authors['dialogues']} dialogues) | {authors['seconds_per_epoch']:.2f} | – | – | – | "
                 f"{authors['seconds_per_epoch']:.2f} | {authors['parameters'] / 1e6:.1f} | 1.00x |\n")
        for r in ours:
            fit = r["teachers_s"] / r["run_epochs"]  # once per run, shared by its epochs
            total = r["train_s"] + (r["refit_s"] if r["adversary"] == "erasure" else 0.0) + r["valid_s"] + fit
            text += (f"| this project's, {r['adversary']}, {r['precision']} ({r['dialogues']} dialogues, validation "
                     f"{r['valid_dialogues']}) | {r['train_s']:.2f} | "
                     f"{r['refit_s'] if r['adversary'] == 'erasure' else 0:.2f} | {r['valid_s']:.2f} | {fit:.2f} | {total:.2f} | "
                     f"{r['params_m']:.1f} | {authors['seconds_per_epoch'] / total:.2f}x |\n")
        text += (f"\nThe authors' epoch: forward, loss, backward and Adam step over the same number of dialogues of "
                 f"the same lengths (benchmarks/authors_speed.py; their code from {authors['path']}); stand-ins for "
                 f"modules that are not installed: {', '.join(authors['stand_ins']) or 'none'}.\n")
    return text


def measure_in_child(params_path: Path, shape: str, device: str, threads: int, epochs: int, path: str,
                     variant: str = "full") -> dict:
    """One row in a fresh process, so its peak memory and its timing are its own."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--child", str(params_path), "--shape", shape, "--device", device,
           "--threads", str(threads), "--epochs", str(epochs), "--path", path, "--variant", variant]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark row {shape}/{device}/{path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


STUDY = {"seeds": 5, "epochs": 60}  # the paper study: every variant, 5 seeds, 60 epochs


def study_estimate(args) -> int:
    """Per-variant epoch times (fast path) and the paper study's estimated wall time, one job at a
    time on one device: sum over datasets and variants of seeds x epochs x (train + evaluation)."""
    from maln.data.layouts import get as layout
    from maln.model.variants import VARIANTS

    lines = ["| shape | variant | device | train s/epoch | eval s/pass | one run of 60 epochs (min) |",
             "| --- | --- | --- | --- | --- | --- |"]
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shape:
            params = build(shape, Path(tmp) / shape, args.dialogues)
            modalities = layout(SHAPES[shape]["layout"]).modalities
            for device in args.device:
                for name, variant in VARIANTS.items():
                    if not variant.applicable(modalities):
                        continue
                    r = measure_in_child(params.path, shape, device, args.threads, 1, "fast", name)
                    run_s = STUDY["epochs"] * (r["train_s"] + r["eval_s"])
                    total += STUDY["seeds"] * run_s
                    lines.append(f"| {shape} | {name} | {r['device']} | {r['train_s']:.2f} | {r['eval_s']:.2f} | {run_s / 60:.1f} |")
                    print(lines[-1], file=sys.stderr, flush=True)
    text = (f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}, {args.threads} CPU threads\n\n" + "\n".join(lines)
            + f"\n\nPaper study ({', '.join(args.shape)}; every variant x {STUDY['seeds']} seeds x {STUDY['epochs']} "
            f"epochs, one job at a time): about {total / 3600:.1f} hours. One timed epoch per variant after a warm-up.\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--shape", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
                    choices=["cpu", "cuda"])
    ap.add_argument("--path", nargs="+", default=["fast", "plain"], choices=["fast", "plain"])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the anchor was measured with 2)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    ap.add_argument("--study", action="store_true",
                    help="time one epoch of every variant and estimate the whole paper study's wall time")
    ap.add_argument("--variant", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--adversary", nargs="+", choices=ADVERSARIES,
                    help="measure each of these model.adversary modes side by side (default: params.yaml's)")
    ap.add_argument("--float32", action="store_true",
                    help="time this project's epochs with train.bf16 false too (float32 everywhere), side by side")
    ap.add_argument("--dialogues", type=int, help="training dialogues (default: the shape's; fewer for a quick check)")
    ap.add_argument("--authors", type=Path, help="a checkout of github.com/rmjrmj/MALN: time their model in this run too")
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = ap.parse_args(argv)
    if args.child:  # one measurement, for measure_in_child
        import json

        params = load_params(args.child)
        print(json.dumps(measure(params, args.shape[0], args.device[0], args.threads, args.epochs, args.path[0],
                                 args.variant)))
        return 0
    if args.study:
        return study_estimate(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shape:
            params = build(shape, Path(tmp) / shape, args.dialogues)
            for device in args.device:
                for path in args.path:
                    for adversary in args.adversary or [None]:
                        if adversary is not None:  # the same project, only model.adversary changed
                            set_value(params.path, "model", "adversary", adversary)
                        for bf16 in (True, False) if args.float32 else (None,):
                            if bf16 is not None:  # the same project, only train.bf16 changed
                                set_value(params.path, "train", "bf16", bf16)
                            r = measure_in_child(params.path, shape, device, args.threads, args.epochs, path)
                            rows.append(r)
                            print(f"{shape} {path} {r['adversary']} {r['device']} {r['precision']}: {r['train_s']:.2f} "
                                  f"s/epoch, {r['eval_s']:.2f} s/eval, {r['refit_s']:.2f} s refit", file=sys.stderr,
                                  flush=True)
    authors = None
    if args.authors and "iemocap" in args.shape and "cpu" in args.device:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from authors_speed import authors_epoch_seconds

        spec = SHAPES["iemocap"]
        authors = authors_epoch_seconds(args.authors, args.threads, args.epochs, args.dialogues or spec["train"],
                                        tuple(spec["length"])) | {"path": str(args.authors)}
        print(f"the authors' model: {authors['seconds_per_epoch']:.2f} s/epoch", file=sys.stderr, flush=True)
    text = (f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
            f"{time.strftime('%Y-%m-%d')}\n\n" + table(rows, args.epochs, authors)
            + f"\n`python benchmarks/speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
