"""`maln train`: one dataset x variant, one or several seeds.

Model selection is on the validation split (weighted F1); the test split is evaluated once, with
the selected weights. Every epoch ends with an atomic checkpoint (model, optimiser, best weights,
history) and its SHA-256, so a killed run started again with the same command resumes where it
stopped and ends with the same metrics: each epoch reseeds every random generator from
(seed, epoch), so nothing depends on how many epochs ran in this process. (The authors' code reset
the seed inside each pass, giving the same data order every epoch; here the order differs per
epoch and is still reproducible.)
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import maln
from maln import io
from maln.config import Params
from maln.data.batching import DeviceData
from maln.data.prepare import store_dir
from maln.data.store import Store, load_store
from maln.devices import Placement, place
from maln.errors import ConfigError, MalnError
from maln.evaluate import Predictions, autocast, fit_combination, head_scores, metrics_of, predict
from maln.model.config import ModelConfig
from maln.model.maln import MALN, LossWeights
from maln.model.variants import get as get_variant
from maln.probes import invariance
from maln.study import run_path

# What a finished run leaves in its folder; metrics.json is written last and marks completion.
RUN_FILES = ("predictions.csv", "valid_predictions.csv", "history.csv", "features.npz", "model.pt", "metrics.json")
# The resume state: checkpoint-epoch<N>.pt holds epoch N's state; checkpoint.json names that file
# and its SHA-256, and is replaced only after the file is complete, so a kill at any moment leaves
# a pointer to an intact state (the previous file is deleted only after the pointer moves on).
CHECKPOINT = "checkpoint.json"
CHECKPOINT_FILE = re.compile(r"checkpoint-epoch\d+\.pt")
RESUME_KEYS = ("model", "optimizer", "epoch", "history", "best_epoch", "best_score", "best_model", "stale", "combination")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_dialogues: int
    lr: float
    amdm_lr_scale: float
    weight_decay: float
    loss_weights: LossWeights
    class_weights: bool
    grad_clip: float
    patience: int
    device: str
    bf16: bool
    compile: bool
    record_test_curve: bool

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{**d, "loss_weights": LossWeights(**d["loss_weights"])})


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam; AMDM's parameters (its encoders and the discriminator) at amdm_lr_scale times the
    learning rate. Adam's steps are about lr in size whatever the loss weight, so a stronger
    adversary weight does not move the encoders further per step; a larger rate does."""
    amdm = list(model.amdm.parameters()) if getattr(model, "amdm", None) is not None else []
    taken = {id(p) for p in amdm}
    groups = [{"params": [p for p in model.parameters() if id(p) not in taken]}]
    if amdm:
        groups.append({"params": amdm, "lr": cfg.lr * cfg.amdm_lr_scale})
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit_eraser(model, data, dialogues, batch_size: int, bf16: bool = False) -> None:
    """The `erasure` adversary's evaluation statistics: those of `dialogues` (the training split)
    in evaluation mode, one pass (amdm.LinearEraser). Nothing for any other model."""
    eraser = model.amdm.eraser if getattr(model, "amdm", None) is not None else None
    if eraser is not None:
        eraser.begin_fit()
        predict(model, data, dialogues, batch_size, bf16)
        eraser.end_fit()


def run_dir(root: Path, dataset: str, variant: str, seed: int) -> Path:
    return root / run_path(dataset, variant, seed)


def effective_config(params: Params, dataset: str, variant: str, seed: int) -> dict:
    model, train = params.run_config(dataset)
    return {"dataset": dataset, "variant": variant, "seed": seed, "model": model, "train": train}


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def class_weight_vector(store: Store, device) -> torch.Tensor:
    """Inverse class frequency on the training split, mean 1 over the classes."""
    rows = np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in store.dialogues("train")])
    counts = np.bincount(store.labels[rows], minlength=len(store.class_names)).astype(float)
    w = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return torch.tensor(w / w.mean(), dtype=torch.float32, device=device)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Run:
    """Everything one (dataset, variant) shares across its seeds: the store, the data on the device."""

    def __init__(self, params: Params, dataset: str, variant: str, threads: int | None = None):
        self.params, self.dataset, self.variant_name = params, dataset, variant
        self.variant = get_variant(variant)
        self.store = load_store(store_dir(params, dataset))
        self.modalities = self.variant.check(self.store.modalities, dataset)  # NotApplicable: exit 3
        model_dict, train_dict = params.run_config(dataset)
        self.model_cfg = ModelConfig.from_dict(model_dict)
        self.train_cfg = TrainConfig.from_dict(train_dict)
        if threads:
            torch.set_num_threads(threads)
        self.placement: Placement = place(self.train_cfg.device)
        self.device = self.placement.device
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
            # ...which also NaN-fills every fresh allocation, costing seconds per epoch at the paper's
            # sizes; nothing here reads memory it has not written, so results stay deterministic.
            torch.utils.deterministic.fill_uninitialized_memory = False
        longest = int(self.store.lengths().max())
        if self.variant.sclm and longest > self.model_cfg.sclm_max_positions:
            raise ConfigError(f"model.sclm.max_positions: {self.model_cfg.sclm_max_positions} is shorter than the "
                              f"longest dialogue of {dataset} ({longest} utterances)")
        self.data = DeviceData(self.store, self.modalities, self.device)
        self.splits = {s: self.store.dialogues(s) for s in ("train", "valid", "test")}
        if not len(self.splits["valid"]):
            raise MalnError(f"{dataset}: the store has no validation dialogues; model selection needs some")

    def build_model(self, seed: int) -> MALN:
        torch.manual_seed(seed)
        model = MALN(self.store.modalities, len(self.store.class_names), self.model_cfg, self.variant, self.dataset)
        model.set_statistics(self.store.standardization, self.store.class_prior)
        return model.to(self.device)

    def train_seed(self, seed: int, out_dir: Path, force: bool = False, progress: bool | None = None) -> dict:
        config = effective_config(self.params, self.dataset, self.variant_name, seed)
        config_hash = io.canonical_hash(config)
        done = _completed(out_dir, config_hash, self.store.hash)
        if done and not force:
            _log(f"{self.dataset}/{self.variant_name}/seed{seed}: already complete in {out_dir} (use --force to retrain)")
            return done
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.train_cfg
        start_time = self._started = time.time()
        model = self.build_model(seed)
        optimizer = make_optimizer(model, cfg)
        class_weights = class_weight_vector(self.store, self.device) if cfg.class_weights else None
        state = {"epoch": 0, "history": [], "best_epoch": 0, "best_score": -1.0, "best_model": None, "stale": 0,
                 "combination": None}
        resumed = _load_checkpoint(out_dir, config_hash, self.store.hash)
        try:
            if resumed is not None:
                model.load_state_dict(resumed["model"])
                optimizer.load_state_dict(resumed["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:  # the model's code changed since
            _log(f"warning: the checkpoint in {out_dir} does not fit this model ({str(e)[:200]}); starting from scratch")
            resumed, model = None, self.build_model(seed)
            optimizer = make_optimizer(model, cfg)
        if resumed is not None:
            state = {k: resumed[k] for k in state}
            _log(f"resuming {self.dataset}/{self.variant_name}/seed{seed} after epoch {state['epoch']} "
                 f"(best valid WF1 {100 * state['best_score']:.2f} at epoch {state['best_epoch']})")
        step = model
        if cfg.compile and self.device.type == "cuda":
            step = torch.compile(model)
        n_params = sum(p.numel() for p in model.parameters())
        _log(f"{self.dataset}/{self.variant_name}/seed{seed}: {n_params:,} parameters, modalities "
             f"{'+'.join(self.modalities)}, {len(self.splits['train'])}/{len(self.splits['valid'])}/"
             f"{len(self.splits['test'])} train/valid/test dialogues, device {self.placement.describe()}, "
             f"{torch.get_num_threads()} threads")
        show = sys.stderr.isatty() if progress is None else progress
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=f"{self.variant_name} seed{seed}", unit="epoch",
                   disable=not show, file=sys.stderr)
        weights = cfg.loss_weights
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"] + 1
            t0 = time.perf_counter()
            torch.manual_seed(_epoch_seed(seed, epoch))
            rng = np.random.default_rng([seed, epoch])
            batches = self.data.training_batches(self.splits["train"], cfg.batch_dialogues, rng)
            losses = self._train_epoch(step, model, batches, optimizer, weights, class_weights)
            if not np.isfinite(losses["loss"]):
                raise MalnError(f"training diverged: loss {losses['loss']} at epoch {epoch} "
                                "(try a lower train.lr or train.grad_clip)")
            fit_eraser(model, self.data, self.splits["train"], cfg.batch_dialogues, cfg.bf16)
            if model.branchwise:  # this epoch's combination, from the validation split (as the epoch is)
                combination = fit_combination(model, self.data, self.splits["valid"], cfg.batch_dialogues, cfg.bf16)
            valid = metrics_of(predict(step, self.data, self.splits["valid"], cfg.batch_dialogues, cfg.bf16),
                               self.store.class_names)
            improved = valid["weighted_f1"] > state["best_score"]
            if improved:
                if model.branchwise:
                    state["combination"] = combination
                state.update(best_epoch=epoch, best_score=valid["weighted_f1"], stale=0,
                             best_model={k: v.detach().clone().cpu() for k, v in model.state_dict().items()})
            else:
                state["stale"] += 1
            # Selection is decided above, from the validation split alone. The test split's score of
            # every epoch is recorded after it, for the protocol table only (how much picking the
            # epoch by test score, as most papers of the field do, would inflate the number).
            curve = {"test_weighted_f1": round(self._test_curve_score(step), 6)} if cfg.record_test_curve else {}
            state["history"].append({
                "epoch": epoch, **{k: round(v, 6) for k, v in losses.items()},
                "valid_accuracy": round(valid["accuracy"], 6), "valid_weighted_f1": round(valid["weighted_f1"], 6),
                "valid_macro_f1": round(valid["macro_f1"], 6), **curve, "seconds": round(time.perf_counter() - t0, 3),
            })
            state["epoch"] = epoch
            stop = cfg.patience and state["stale"] >= cfg.patience
            _save_checkpoint(out_dir, {"format": "maln-checkpoint", "config_hash": config_hash,
                                       "store_hash": self.store.hash, "model": model.state_dict(),
                                       "optimizer": optimizer.state_dict(), **state})
            line = (f"epoch {epoch}/{cfg.epochs} loss {losses['loss']:.4f} (ce {losses['ce']:.3f} uni "
                    f"{losses['unimodal']:.3f} adv {losses['adversarial']:.3f} disc {losses['discriminator']:.3f} "
                    f"orth {losses['orthogonality']:.3f}) "
                    f"valid acc {100 * valid['accuracy']:.2f} wf1 {100 * valid['weighted_f1']:.2f}"
                    f"{' *' if improved else ''} [{time.perf_counter() - t0:.2f}s]")
            if show:
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.3f}", valid_wf1=f"{100 * valid['weighted_f1']:.1f}",
                                best=f"{100 * state['best_score']:.1f}@{state['best_epoch']}")
            else:
                _log(line)
            if stop:
                _log(f"early stop: no better validation WF1 for {cfg.patience} epochs")
                break
        bar.close()
        model.load_state_dict(state["best_model"])
        metrics = self._finish(model, seed, out_dir, config, config_hash, state, n_params, time.time() - start_time)
        _remove_checkpoints(out_dir)
        return metrics

    def _test_curve_score(self, step) -> float:
        """This epoch's test WF1: written to history.csv for the report, read by nothing here."""
        cfg = self.train_cfg
        return metrics_of(predict(step, self.data, self.splits["test"], cfg.batch_dialogues, cfg.bf16),
                          self.store.class_names)["weighted_f1"]

    def _train_epoch(self, step, model, batches, optimizer, weights, class_weights) -> dict:
        """One pass over `batches`; the loss terms' means over its utterances."""
        model.train()
        sums, total = {}, 0
        for idx in batches:
            b = self.data.batch(idx)
            with autocast(self.device, self.train_cfg.bf16):
                out = step(b.features, b.speakers, b.mask, b.lengths)
            terms = model.loss(out, b.labels, b.mask, weights, class_weights)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if self.train_cfg.grad_clip:
                for group in model.clip_groups():
                    torch.nn.utils.clip_grad_norm_(group, self.train_cfg.grad_clip)
            optimizer.step()
            n = b.n_utterances
            total += n
            for k, v in terms.items():  # stays on the device: one host sync per epoch, below
                sums[k] = sums.get(k, 0) + v.detach().float() * n
        return {k: float(v) / total for k, v in sums.items()}

    def _finish(self, model, seed, out_dir, config, config_hash, state, n_params, wall) -> dict:
        cfg, names = self.train_cfg, self.store.class_names
        valid = predict(model, self.data, self.splits["valid"], cfg.batch_dialogues, cfg.bf16, keep_features=True)
        test = predict(model, self.data, self.splits["test"], cfg.batch_dialogues, cfg.bf16, keep_features=True)
        probes = None
        if test.common is not None:  # multimodal: how modality-invariant the common features are, out of sample
            probes = invariance({"specific": test.specific, "common": test.common, "gold": test.gold,
                                 "dialogue": test.dialogue})
        write_predictions(out_dir / "predictions.csv", test, self.store)
        write_predictions(out_dir / "valid_predictions.csv", valid, self.store)  # for the report's late fusion
        write_history(out_dir / "history.csv", state["history"])
        write_features(out_dir / "features.npz", test, model.modalities, names)
        with io.atomic_path(out_dir / "model.pt") as tmp:
            torch.save({
                "format": "maln-model", "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "config": config, "config_hash": config_hash, "class_names": list(names),
                "dims": dict(self.store.modalities), "dataset": self.dataset, "layout": self.store.meta["layout"],
                "store_hash": self.store.hash,
                "epoch": state["best_epoch"], "best_valid_weighted_f1": state["best_score"],
            }, tmp)
        metrics = {
            "dataset": self.dataset, "variant": self.variant_name, "seed": seed,
            "modalities": list(model.modalities), "class_names": list(names),
            "valid": metrics_of(valid, names), "test": metrics_of(test, names),
            **({"invariance": probes} if probes else {}),
            "heads": head_scores(valid, test, names),
            **({"combination": state["combination"]} if state["combination"] else {}),
            "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "stopped_early": state["epoch"] < cfg.epochs,
            "started_at": round(self._started, 3), "finished_at": round(time.time(), 3),
            "wall_time_s": round(wall, 3), "seconds_per_epoch": round(
                float(np.mean([h["seconds"] for h in state["history"]])), 4),
            "device": self.placement.describe(), "device_held_from": round(self.placement.acquired_at, 3),
            "threads": torch.get_num_threads(), "parameters": n_params,
            "config_hash": config_hash, "store_hash": self.store.hash, "config": config,
            "versions": {"maln": maln.__version__, "torch": torch.__version__, "python": platform.python_version()},
        }
        io.write_json(out_dir / "metrics.json", metrics)
        t = metrics["test"]
        _log(f"{self.dataset}/{self.variant_name}/seed{seed}: best epoch {state['best_epoch']}, "
             f"valid WF1 {100 * metrics['valid']['weighted_f1']:.2f}, test acc {100 * t['accuracy']:.2f} "
             f"WF1 {100 * t['weighted_f1']:.2f} macro-F1 {100 * t['macro_f1']:.2f} -> {out_dir}")
        if probes:
            _log(f"{self.dataset}/{self.variant_name}/seed{seed}: modality probe accuracy on common features "
                 f"{probes['common_modality_accuracy']:.3f} (chance {probes['chance']:.3f}), on specific features "
                 f"{probes['specific_modality_accuracy']:.3f}; emotion probe on common features "
                 f"{probes['common_emotion_accuracy']:.3f}")
        return metrics


def _completed(out_dir: Path, config_hash: str, store_hash: str) -> dict | None:
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


def _save_checkpoint(out_dir: Path, state: dict) -> None:
    name = f"checkpoint-epoch{state['epoch']}.pt"
    with io.atomic_path(out_dir / name) as tmp:
        torch.save(state, tmp)
        digest = io.sha256_file(tmp)
    io.write_json(out_dir / CHECKPOINT, {"file": name, "sha256": digest, "epoch": state["epoch"]})
    _remove_checkpoints(out_dir, keep=name)


def _remove_checkpoints(out_dir: Path, keep: str | None = None) -> None:
    for old in out_dir.glob("checkpoint-epoch*.pt"):
        if old.name != keep:
            old.unlink(missing_ok=True)
    if keep is None:
        (out_dir / CHECKPOINT).unlink(missing_ok=True)


def _load_checkpoint(out_dir: Path, config_hash: str, store_hash: str) -> dict | None:
    """The last epoch's state if it is intact and belongs to this configuration; otherwise None
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
        _log(f"warning: {pointer} is unreadable ({e}); starting from scratch")
        return None
    if not path.is_file() or io.sha256_file(path) != expected:
        _log(f"warning: {path} does not match its recorded SHA-256 (corrupted or missing); starting from scratch")
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        _log(f"warning: {path} is unreadable ({type(e).__name__}); starting from scratch")
        return None
    if not isinstance(ckpt, dict) or ckpt.get("config_hash") != config_hash or ckpt.get("store_hash") != store_hash:
        _log(f"warning: {path} belongs to another configuration or data store; starting from scratch")
        return None
    if missing := [k for k in RESUME_KEYS if k not in ckpt]:
        _log(f"warning: {path} lacks {', '.join(missing)} (written by another version?); starting from scratch")
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


def train(params: Params, dataset: str, variant: str, seeds, out: Path | None = None, threads: int | None = None,
          force: bool = False) -> list[dict]:
    run = Run(params, dataset, variant, threads)
    results = []
    for seed in seeds:
        out_dir = Path(out) if out and len(seeds) == 1 else (
            Path(out) / f"seed{seed}" if out else run_dir(params.root, dataset, variant, seed))
        results.append(run.train_seed(seed, out_dir, force))
    return results
