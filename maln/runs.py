"""A run's folder: the files a finished run leaves (maln.study.RUN_FILES; metrics.json is written
last and marks completion), the resume state a running one keeps, and whether a folder holds a
finished run of a configuration.

The resume state: checkpoint-epoch<N>.pt holds epoch N's state; checkpoint.json names that file and
its SHA-256, and is replaced only after the file is complete, so a kill at any moment leaves a
pointer to an intact state (the previous file is deleted only after the pointer moves on)."""

from __future__ import annotations

import csv
import io as _io
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from maln import io
from maln.data.store import Store
from maln.errors import MalnError
from maln.inference import Predictions
from maln.study import RUN_FILES, run_path

CHECKPOINT = "checkpoint.json"
CHECKPOINT_FILE = re.compile(r"checkpoint-epoch\d+\.pt")
TIMING = "timing.json"  # a run's wall-clock times (save_run); not one of RUN_FILES, not versioned
RESUME_KEYS = ("model", "optimizer", "epoch", "history", "best_epoch", "best_score", "best_model", "parts", "stale", "combination", "decoding")


def run_dir(root: Path, dataset: str, variant: str, seed: int) -> Path:
    return root / run_path(dataset, variant, seed)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def completed(out_dir: Path, config_hash: str, store_hash: str) -> dict | None:
    """The folder's finished run of this configuration, or None: a missing, unreadable or foreign
    metrics.json means the run is trained (again) and replaced. Something other than a file there
    (a folder, a FIFO, which is never opened) could not be replaced at the end, so it stops the
    command before any work."""
    path = out_dir / "metrics.json"
    if os.path.lexists(path) and (problem := io.not_regular(path)) is not None:
        raise MalnError(f"{io.shown(path)}: {problem}; remove it (the run's results are written there)")
    try:
        with io.open_regular(path) as f:
            metrics = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(metrics, dict):
        return None
    if metrics.get("config_hash") == config_hash and metrics.get("store_hash") == store_hash and all(
            (out_dir / f).is_file() for f in RUN_FILES):
        return metrics
    return None


def save_checkpoint(out_dir: Path, state: dict) -> None:
    name = f"checkpoint-epoch{state['epoch']}.pt"
    with io.atomic_path(out_dir / name) as tmp:
        torch.save(state, tmp)
        digest = io.sha256_file(tmp)
    io.write_json(out_dir / CHECKPOINT, {"file": name, "sha256": digest, "epoch": state["epoch"]})
    remove_checkpoints(out_dir, keep=name)


def remove_checkpoints(out_dir: Path, keep: str | None = None) -> None:
    for old in out_dir.glob("checkpoint-epoch*.pt"):
        if old.name != keep:
            old.unlink(missing_ok=True)
    if keep is None:
        (out_dir / CHECKPOINT).unlink(missing_ok=True)


def load_resume_state(out_dir: Path, config_hash: str, store_hash: str) -> dict | None:
    """The last checkpointed epoch's state if it is intact and belongs to this configuration; otherwise None
    (with a warning), and training starts from scratch."""
    pointer = out_dir / CHECKPOINT
    if not os.path.lexists(pointer):
        return None
    try:
        with io.open_regular(pointer) as f:  # a FIFO is refused, not waited on
            meta = json.loads(f.read())
        path = out_dir / meta["file"]
        expected = meta["sha256"]
        if not CHECKPOINT_FILE.fullmatch(meta["file"]):
            raise ValueError(f"unexpected file name {meta['file']!r}")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        log(f"warning: {pointer} is unreadable ({e}); starting from scratch")
        return None
    if not path.is_file() or io.sha256_file(path) != expected:
        log(f"warning: {path} does not match its recorded SHA-256 (corrupted or missing); starting from scratch")
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        log(f"warning: {path} is unreadable ({type(e).__name__}); starting from scratch")
        return None
    if not isinstance(ckpt, dict) or ckpt.get("config_hash") != config_hash or ckpt.get("store_hash") != store_hash:
        log(f"warning: {path} belongs to another configuration or data store; starting from scratch")
        return None
    if missing := [k for k in RESUME_KEYS if k not in ckpt]:
        log(f"warning: {path} lacks {', '.join(missing)} (written by another version?); starting from scratch")
        return None
    return ckpt


def write_predictions(path: Path, p: Predictions, store: Store) -> None:
    names, symbols, ids = store.class_names, store.meta["speaker_symbols"], store.dialogue_ids
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dialogue_id", "position", "speaker", "gold", "predicted", *(f"p_{c}" for c in names)])
    for i in range(len(p.gold)):
        spk = int(p.speaker[i])
        w.writerow([ids[p.dialogue[i]], int(p.position[i]), symbols[spk] if spk < len(symbols) else spk,
                    names[p.gold[i]] if p.gold[i] >= 0 else "", names[p.pred[i]],
                    *(f"{x:.5f}" for x in p.probs[i])])
    io.write_text(path, buf.getvalue())


def write_history(path: Path, history: list) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    io.write_text(path, buf.getvalue())


def write_features(path: Path, p: Predictions, modalities, class_names) -> None:
    """Test-set common and specific features ([N, M, W], float16) for the decomposition figure;
    single-modality variants have no decomposition and store labels only."""
    arrays = {"gold": p.gold, "predicted": p.pred, "modalities": np.array(modalities), "classes": np.array(class_names)}
    if p.specific is not None:
        arrays.update(specific=p.specific.astype(np.float16), common=p.common.astype(np.float16))
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def save_run(out_dir: Path, store: Store, valid: Predictions, test: Predictions, history: list, model,
             best_score: float, metrics: dict, timing: dict) -> None:
    """Write a finished run's files (RUN_FILES), metrics.json last: it marks the run complete. The
    wall-clock times (`timing`, and each epoch's seconds from the history) go to TIMING instead:
    they describe the machine, not the result, so the versioned files of a rerun equal the old ones
    byte for byte and `dvc repro` leaves dvc.lock as it was (.dvcignore keeps TIMING out of DVC)."""
    write_predictions(out_dir / "predictions.csv", test, store)
    write_predictions(out_dir / "valid_predictions.csv", valid, store)  # for the report's late fusion
    write_history(out_dir / "history.csv", [{k: v for k, v in row.items() if k != "seconds"} for row in history])
    write_features(out_dir / "features.npz", test, model.modalities, metrics["class_names"])
    # to an open file: given a path, torch names the archive's folder after it (the temporary name
    # here), and the same weights would give a different model.pt on every run
    with io.atomic_path(out_dir / "model.pt") as tmp, open(tmp, "wb") as f:
        torch.save({
            "format": "maln-model", "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "config": metrics["config"], "config_hash": metrics["config_hash"], "class_names": metrics["class_names"],
            "dims": dict(store.modalities), "dataset": metrics["dataset"], "layout": store.meta["layout"],
            "store_hash": store.hash, "epoch": metrics["best_epoch"], "best_valid_weighted_f1": best_score,
        }, f)
    io.write_json(out_dir / TIMING, {**timing, "epoch_seconds": [row["seconds"] for row in history]})
    io.write_json(out_dir / "metrics.json", metrics)


def history_row(epoch: int, losses: dict, valid: dict, curve: dict, seconds: float) -> dict:
    return {"epoch": epoch, **{k: round(v, 6) for k, v in losses.items()},
            "valid_accuracy": round(valid["accuracy"], 6), "valid_weighted_f1": round(valid["weighted_f1"], 6),
            "valid_macro_f1": round(valid["macro_f1"], 6), **curve, "seconds": round(seconds, 3)}


def log_result(name: str, metrics: dict, out_dir: Path) -> None:
    t, probes = metrics["test"], metrics.get("invariance")
    log(f"{name}: best epoch {metrics['best_epoch']}, valid WF1 {100 * metrics['valid']['weighted_f1']:.2f}, test acc "
         f"{100 * t['accuracy']:.2f} WF1 {100 * t['weighted_f1']:.2f} macro-F1 {100 * t['macro_f1']:.2f} -> {out_dir}")
    if probes:
        log(f"{name}: modality probe accuracy on common features {probes['common_modality_accuracy']:.3f} (chance "
             f"{probes['chance']:.3f}), on specific features {probes['specific_modality_accuracy']:.3f}; emotion probe "
             f"on common features {probes['common_emotion_accuracy']:.3f}")


class EpochLog:
    """A progress bar on a terminal (or when asked), one log line per epoch otherwise."""

    def __init__(self, epochs: int, state: dict, desc: str, progress: bool | None):
        from tqdm import tqdm

        self.epochs, self.show = epochs, sys.stderr.isatty() if progress is None else progress
        self.bar = tqdm(total=epochs, initial=state["epoch"], desc=desc, unit="epoch", disable=not self.show,
                        file=sys.stderr)

    def epoch(self, epoch: int, losses: dict, valid: dict, improved: bool, state: dict, t0: float) -> None:
        if self.show:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{losses['loss']:.3f}", valid_wf1=f"{100 * valid['weighted_f1']:.1f}",
                                 best=f"{100 * state['best_score']:.1f}@{state['best_epoch']}")
            return
        log(f"epoch {epoch}/{self.epochs} loss {losses['loss']:.4f} (ce {losses['ce']:.3f} uni "
             f"{losses['unimodal']:.3f} adv {losses['adversarial']:.3f} disc {losses['discriminator']:.3f} "
             f"orth {losses['orthogonality']:.3f}) valid acc {100 * valid['accuracy']:.2f} wf1 "
             f"{100 * valid['weighted_f1']:.2f}{' *' if improved else ''} [{time.perf_counter() - t0:.2f}s]")

    def close(self) -> None:
        self.bar.close()
