"""Seconds per training epoch of the authors' MALN model (github.com/rmjrmj/MALN) at the paper's
IEMOCAP shape, on synthetic inputs, imported from a checkout of their repository (none of their
code is copied here).

    git clone https://github.com/rmjrmj/MALN /tmp/authors-maln
    python benchmarks/authors_speed.py --authors /tmp/authors-maln                 # 2 threads, 2 epochs
    python benchmarks/authors_speed.py --authors /tmp/authors-maln --out results/benchmarks/authors-cpu-2-threads.md
    python benchmarks/authors_speed.py --authors /tmp/authors-maln --dialogues 4 --epochs 1 --threads 1 --lengths 5 10

What is timed is their training step as train_MALN.py writes it: `MALN(args)` (line 377) with the
argparse defaults it reads (dropout 0.66, cross_n_layers 1, cross_n_heads 4; lines 277, 346-347),
Adam with lr 4e-4 and weight decay 3e-5 (lines 271-273, 391), batches of 32 (line 279),
`model(True, label, roberta, visuf, acouf, x1..x6, o1..o3, qmask, umask)` (line 115),
`loss = 0.1 * loss_cat + nll + all_loss` with MaskedNLLLoss from their transformer_model.py
(lines 9, 137-139, 390), backward, step, and the per-batch `loss.item()` (line 192).
Left out, as not training: their data loading, the averaging of the four RoBERTa layers (line 108,
one text tensor is passed instead), and the feature matrices their loop gathers for t-SNE.

Inputs (their (seq_len, batch, dim) layout, as COSMIC's collate pads them): text 1024, visual 512,
audio 100 (the model's own LANGUAGE/ACOUSTIC/VISUAL_DIM, MALN_model_fix.py lines 443-445, 496-498);
qmask (seq_len, batch, 2) one-hot speaker, zero on padding; umask and label (batch, seq_len), 6
classes. x1..x6 and o1..o3 (COMET features, 768-d in COSMIC's data) are never read by
MALN.forward (lines 608-758), so one zero tensor of that shape is passed for all nine.
Dialogues: `--dialogues` (120, IEMOCAP's training split) of uniform 24..110 utterances drawn with
a fixed seed, in batches of 32 in drawn order (their sampler reshuffles each epoch; with 32 draws
from 24..110 nearly every batch pads to about 110 either way).

Stand-ins: their MALN_model_fix.py and transformer_model.py import `transformers` (Albert classes)
and `sklearn.metrics.pairwise.cosine_distances` at top level but never call them, and
MALN_model/file_utils.py imports `tqdm` only for downloads; when one of these is not installed,
a stand-in whose names raise if called is put in sys.modules, and the run says so. `einops.repeat`
IS called, at one place, Transformer.forward (MALN_model_fix.py line 224), with the one pattern
'() n e -> b n e'; when einops is missing the stand-in does exactly that pattern
(`x.expand(b, -1, -1)`: the same values and gradients as einops) and refuses any other.
`pip install einops` (and transformers) makes them the real ones.

Each measurement runs in a child process (`--child`): their module silences every warning at
import (MALN_model_fix.py line 21), puts their folder (with its own transformer.py) first on sys.path and leaves
stand-ins in sys.modules; none of that should reach a caller that also times this project's model,
and the two models should not share one allocator.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

# train_MALN.py's argparse defaults that the model, the optimiser and the loader read
ARGS = {"dropout": 0.66, "cross_n_layers": 1, "cross_n_heads": 4, "lr": 4e-4, "l2": 3e-5, "batch_size": 32}
DIMS = {"text": 1024, "visual": 512, "audio": 100, "comet": 768}
PARTIES, CLASSES = 2, 6
SEED = 100  # train_MALN.py line 12
# imported at top level by their files, never called by the model's training step
UNUSED = {"transformers": ["AlbertModel", "AlbertPreTrainedModel", "AlbertConfig", "load_tf_weights_in_albert"],
          "sklearn.metrics.pairwise": ["cosine_distances"], "tqdm": ["tqdm"]}


def _missing(name: str) -> bool:
    try:
        __import__(name)
        return False
    except ImportError:
        return True


def _refuse(name: str):
    def call(*args, **kwargs):
        raise NotImplementedError(f"{name} is a benchmark stand-in: install the real package")
    return call


def _einops_repeat(tensor, pattern, **axes):
    if " ".join(pattern.split()) != "() n e -> b n e" or set(axes) != {"b"} or tensor.shape[0] != 1:
        raise NotImplementedError(f"einops stand-in covers only '() n e -> b n e'; got {pattern!r}: pip install einops")
    return tensor.expand(axes["b"], -1, -1)


def install_stand_ins() -> list[str]:
    """Puts a stand-in in sys.modules for each module of UNUSED, and einops, that is not installed."""
    stood = []
    for dotted, names in UNUSED.items():
        if not _missing(dotted):
            continue
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):  # sklearn, sklearn.metrics, sklearn.metrics.pairwise
            name = ".".join(parts[:i])
            if sys.modules.get(name) is None:
                sys.modules[name] = types.ModuleType(name)
        for name in names:
            setattr(sys.modules[dotted], name, _refuse(f"{dotted}.{name}"))
        stood.append(dotted)
    if _missing("einops"):
        einops = types.ModuleType("einops")
        einops.repeat = _einops_repeat
        einops.rearrange, einops.reduce = _refuse("einops.rearrange"), _refuse("einops.reduce")
        sys.modules["einops"] = einops
        stood.append("einops (repeat '() n e -> b n e' only)")
    return stood


def synthetic_batches(dialogues: int, lengths: tuple[int, int], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lengths[0], lengths[1] + 1, size=dialogues)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(0, dialogues, ARGS["batch_size"]):
        n = torch.as_tensor(sizes[i:i + ARGS["batch_size"]])
        T, B = int(n.max()), len(n)
        umask = (torch.arange(T)[None, :] < n[:, None]).float()  # (batch, seq_len)
        pad = umask.T[..., None]  # (seq_len, batch, 1): zero where collate padded
        speaker = torch.randint(0, PARTIES, (T, B), generator=gen)
        batches.append({
            "text": torch.randn(T, B, DIMS["text"], generator=gen) * pad,
            "visual": torch.randn(T, B, DIMS["visual"], generator=gen) * pad,
            "audio": torch.randn(T, B, DIMS["audio"], generator=gen) * pad,
            "comet": torch.zeros(T, B, DIMS["comet"]),
            "qmask": torch.nn.functional.one_hot(speaker, PARTIES).float() * pad,
            "umask": umask,
            "label": torch.randint(0, CLASSES, (B, T), generator=gen) * umask.long(),
        })
    return batches


def train_epoch(model, loss_function, optimizer, batches) -> None:
    model.train()
    for b in batches:
        optimizer.zero_grad()
        out = model(True, b["label"], b["text"], b["visual"], b["audio"], *[b["comet"]] * 9, b["qmask"], b["umask"])
        all_loss, log_prob, lp_audio, lp_text, lp_visual = out[0], out[2], out[3], out[4], out[5]
        labels, umask = b["label"].view(-1), b["umask"]

        def flat(lp):  # (seq_len, batch, classes) -> (batch*seq_len, classes), as their loop does
            return lp.transpose(0, 1).contiguous().view(-1, lp.size(2))

        loss_cat = loss_function(flat(lp_audio), labels, umask) + loss_function(flat(lp_text), labels, umask) \
            + loss_function(flat(lp_visual), labels, umask)
        loss = 0.1 * loss_cat + loss_function(flat(log_prob), labels, umask) + all_loss
        if not np.isfinite(loss.item()):  # the per-batch .item() of their loop; a diverged run times nothing
            raise RuntimeError(f"the authors' loss is {loss.item()}")
        loss.backward()
        optimizer.step()


def measure(authors: Path, threads: int, epochs: int, dialogues: int, lengths: tuple[int, int]) -> dict:
    """In this process: import their model, build it, time `epochs` epochs after one warm-up."""
    torch.set_num_threads(threads)
    stood = install_stand_ins()
    if stood:
        print(f"stood in for: {', '.join(stood)}", file=sys.stderr)
    sys.path.insert(0, str(authors.resolve()))
    from MALN_model_fix import MALN
    from transformer_model import MaskedNLLLoss

    torch.manual_seed(SEED)
    model = MALN(argparse.Namespace(**ARGS))
    optimizer = torch.optim.Adam(model.parameters(), lr=ARGS["lr"], weight_decay=ARGS["l2"])
    batches = synthetic_batches(dialogues, lengths)
    seconds = []
    for epoch in range(epochs + 1):  # the first epoch is a warm-up, not counted
        t0 = time.perf_counter()
        train_epoch(model, MaskedNLLLoss(), optimizer, batches)
        if epoch:
            seconds.append(time.perf_counter() - t0)
    return {"seconds_per_epoch": float(np.median(seconds)), "epochs": epochs, "threads": torch.get_num_threads(),
            "dialogues": dialogues, "utterances": int(sum(b["umask"].sum() for b in batches)),
            "lengths": list(lengths), "torch": torch.__version__,
            "parameters": sum(p.numel() for p in model.parameters()),
            # modules MALN.__init__ builds but forward never calls get no gradient
            "parameters_trained": sum(p.numel() for p in model.parameters() if p.grad is not None),
            "stand_ins": stood}


def authors_epoch_seconds(authors_path, threads: int = 2, epochs: int = 2, dialogues: int = 120,
                          lengths: tuple[int, int] = (24, 110)) -> dict:
    """The measurement of `measure`, run in a fresh child process; returns its dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--authors", str(authors_path),
           "--threads", str(threads), "--epochs", str(epochs), "--dialogues", str(dialogues),
           "--lengths", str(lengths[0]), str(lengths[1])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the authors' model failed to train:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(r: dict, command: str) -> str:
    return ("| date | torch | threads | dialogues (utterances) | s/epoch | parameters (trained) |\n"
            "| --- | --- | --- | --- | --- | --- |\n"
            f"| {time.strftime('%Y-%m-%d')} | {r['torch']} | {r['threads']} | {r['dialogues']} ({r['utterances']}) | "
            f"{r['seconds_per_epoch']:.2f} | {r['parameters'] / 1e6:.1f} M ({r['parameters_trained'] / 1e6:.1f} M) |\n\n"
            f"The authors' MALN, one training epoch (forward, loss, backward, Adam step), median of "
            f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''} after one warm-up; synthetic IEMOCAP-shaped "
            f"inputs of {r['lengths'][0]}..{r['lengths'][1]} utterances. "
            f"Stand-ins: {', '.join(r['stand_ins']) or 'none'}.\n\n`{command}`\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors", type=Path, required=True, help="a checkout of github.com/rmjrmj/MALN")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    ap.add_argument("--dialogues", type=int, default=120, help="training dialogues (fewer for a quick check)")
    ap.add_argument("--lengths", type=int, nargs=2, default=[24, 110], metavar=("MIN", "MAX"),
                    help="utterances per dialogue, drawn uniformly (smaller for a quick check)")
    ap.add_argument("--out", type=Path, help="also write a Markdown table here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.dialogues < 1:
        ap.error("--epochs and --dialogues must be at least 1")
    if not (args.authors / "MALN_model_fix.py").is_file():
        ap.error(f"{args.authors} has no MALN_model_fix.py: pass a checkout of the authors' repository")
    if args.child:  # one measurement, for authors_epoch_seconds
        print(json.dumps(measure(args.authors, args.threads, args.epochs, args.dialogues, tuple(args.lengths))))
        return 0
    r = authors_epoch_seconds(args.authors, args.threads, args.epochs, args.dialogues, tuple(args.lengths))
    if r["stand_ins"]:
        print(f"stood in for: {', '.join(r['stand_ins'])}")
    command = shlex.join(["python", "benchmarks/authors_speed.py", *(argv if argv is not None else sys.argv[1:])])
    text = markdown(r, command)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
