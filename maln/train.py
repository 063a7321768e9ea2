"""`maln train`: one dataset x variant, one or several seeds.

Model selection is on the validation split (weighted F1, maln/selection.py); the test split is evaluated once, with the
selected weights. The first epoch, and then any epoch that ends resources.checkpoint_every_s after the
last checkpoint, ends with an atomic checkpoint (model, optimiser, best weights, history) and its
SHA-256, so a killed run started again with the same command resumes after its last checkpointed
epoch and ends with the same metrics: each epoch reseeds every random generator from (seed, epoch), so nothing depends
on how many epochs ran in this process. (The authors' code reset the seed inside each pass, giving the
same data order every epoch; here it differs per epoch and is still reproducible.)
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import maln
from maln import io
from maln.chain import transitions
from maln.config import Params, effective_config
from maln.data.batching import DeviceData
from maln.data.prepare import store_dir
from maln.data.store import Store, load_store
from maln.devices import Placement, place
from maln.errors import ConfigError, MalnError
from maln import selection
from maln.inference import autocast, fit_eraser, fit_prediction, head_scores, metrics_of, precision, predict
from maln.model.config import ModelConfig
from maln.model.maln import MALN, LossWeights
from maln.model.variants import get as get_variant
from maln.optim import load_state, make_optimizer, without_compiler
from maln.probes import invariance
from maln.study import label
from maln.teacher import Teachers, distillation
from maln.runs import (RESUME_KEYS, EpochLog, completed, history_row, load_resume_state, log, log_result,
                       remove_checkpoints, run_dir, save_checkpoint, save_run)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_dialogues: int
    lr: float
    amdm_lr_scale: float
    weight_decay: float
    branch_weight_decay: float
    input_weight_decay: float | None
    fusion_input_weight_decay: float | None
    label_smoothing: float
    distill: float
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


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def class_weight_vector(store: Store, device) -> torch.Tensor:
    """Inverse class frequency on the training split, mean 1 over the classes."""
    rows = np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in store.dialogues("train")])
    counts = np.bincount(store.labels[rows], minlength=len(store.class_names)).astype(float)
    w = counts.sum() / (len(counts) * np.maximum(counts, 1))
    return torch.tensor(w / w.mean(), dtype=torch.float32, device=device)


class Run:
    """Everything one (dataset, variant) shares across its seeds: the store, the data on the device."""

    def __init__(self, params: Params, dataset: str, variant: str, threads: int | None = None):
        self.params, self.dataset, self.variant_name = params, dataset, variant
        self.configuration = params.data["configuration"]
        self.run_label = label(self.configuration, variant)  # its row and run folder: full, paper/full
        self.variant = get_variant(variant)
        self.store = load_store(store_dir(params, dataset))
        self.modalities = self.variant.check(self.store.modalities, dataset)  # NotApplicable: exit 3
        model_dict, train_dict = params.run_config(dataset)
        self.model_cfg = ModelConfig.from_dict(model_dict)
        self.train_cfg = TrainConfig.from_dict(train_dict)
        if threads:  # torch's, and the BLAS and OpenMP pools loaded now or later (Snakemake may say more)
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(threads)
            os.environ.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
            threadpool_limits(threads)
        self.placement: Placement = place(self.train_cfg.device)
        self.device = self.placement.device
        if not (self.train_cfg.compile and self.device.type == "cuda"):
            without_compiler(self.device)
        longest = int(self.store.lengths().max())
        if self.variant.sclm and longest > self.model_cfg.sclm_max_positions:
            raise ConfigError(f"model.sclm.max_positions: {self.model_cfg.sclm_max_positions} is shorter than the "
                              f"longest dialogue of {dataset} ({longest} utterances)")
        self.data = DeviceData(self.store, self.modalities, self.device)
        self.splits = {s: self.store.dialogues(s) for s in ("train", "valid", "test")}
        if not len(self.splits["valid"]):
            raise MalnError(f"{dataset}: the store has no validation dialogues; model selection needs some")
        self.teachers = Teachers(self.store, self.modalities, self.params.data["baselines"]["logreg_C"], self.device, self.train_cfg.distill,
                                 self.model_cfg.training, self.model_cfg.linear_inputs(self.modalities).values(),
                                 self.model_cfg.linear_lda)  # fitted once

    def build_model(self, seed: int) -> MALN:
        torch.manual_seed(seed)
        model = MALN(self.store.modalities, len(self.store.class_names), self.model_cfg, self.variant, self.dataset)
        model.set_statistics(self.store.standardization, self.store.class_prior, transitions(
            self.store.labels, self.store.offsets, self.splits["train"], len(self.store.class_names)))
        if model.linear_head:
            model.set_linear({name: self.teachers.regression(reads) for name, reads in model.linear_inputs.items()})
        return model.to(self.device)

    def predict(self, model, split: str, keep_features: bool = False, heads: bool = False):
        cfg = self.train_cfg
        return predict(model, self.data, self.splits[split], cfg.batch_dialogues, cfg.bf16, keep_features, heads)

    def train_seed(self, seed: int, out_dir: Path, force: bool = False, progress: bool | None = None) -> dict:
        name, cfg = f"{self.dataset}/{self.run_label}/seed{seed}", self.train_cfg
        config = effective_config(self.params, self.dataset, self.variant_name, seed)
        config_hash = io.canonical_hash(config)
        done = completed(out_dir, config_hash, self.store.hash)
        if done and not force:
            log(f"{name}: already complete in {out_dir} (use --force to retrain)")
            return done
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        self.teachers.fit()
        model, optimizer, state = start(self, seed, out_dir, config_hash, name)
        step = torch.compile(model) if cfg.compile and self.device.type == "cuda" else model
        n_params = sum(p.numel() for p in model.parameters())
        log(f"{name}: {n_params:,} parameters, modalities {'+'.join(self.modalities)}, "
             f"{'/'.join(str(len(self.splits[s])) for s in ('train', 'valid', 'test'))} train/valid/test dialogues, "
             f"device {self.placement.describe()}, {torch.get_num_threads()} threads")
        epochs_log = EpochLog(cfg.epochs, state, f"{self.run_label} seed{seed}", progress)
        class_weights = class_weight_vector(self.store, self.device) if cfg.class_weights else None
        every, saved = self.params.data["resources"]["checkpoint_every_s"], None  # resume checkpoints
        while state["epoch"] < cfg.epochs:
            epoch, t0 = state["epoch"] + 1, time.perf_counter()
            torch.manual_seed(_epoch_seed(seed, epoch))
            batches = self.data.training_batches(self.splits["train"], cfg.batch_dialogues,
                                                 np.random.default_rng([seed, epoch]))
            losses = train_epoch(self, step, model, batches, optimizer, cfg.loss_weights, class_weights)
            if not np.isfinite(losses["loss"]):
                raise MalnError(f"training diverged: loss {losses['loss']} at epoch {epoch} "
                                "(try a lower train.lr or train.grad_clip)")
            valid, improved = self._select(step, model, state, epoch)
            # Selection is decided above, from the validation split alone. The test split's score of
            # every epoch is recorded after it, for the protocol table only (how much picking the
            # epoch by test score, as most papers of the field do, would inflate the number).
            curve = {"test_weighted_f1": round(self._test_curve_score(step), 6)} if cfg.record_test_curve else {}
            state["history"].append(history_row(epoch, losses, valid, curve, time.perf_counter() - t0))
            state["epoch"] = epoch
            if saved is None or time.perf_counter() - saved >= every:
                save_checkpoint(out_dir, {"format": "maln-checkpoint", "config_hash": config_hash,
                                          "store_hash": self.store.hash, "model": model.state_dict(),
                                          "optimizer": optimizer.state_dict(), **state})
                saved = time.perf_counter()
            epochs_log.epoch(epoch, losses, valid, improved, state, t0)
            if cfg.patience and state["stale"] >= cfg.patience:
                log(f"early stop: no better validation WF1 for {cfg.patience} epochs")
                break
        epochs_log.close()
        model.load_state_dict(state["best_model"])
        if selection.epochs(state):  # parts kept at several epochs: their combination chosen on them together
            selection.refit(model, state, self.predict(model, "valid", heads=True), self.store.class_names)
        metrics = finish(self, model, seed, out_dir, config, config_hash, state, n_params, started)
        remove_checkpoints(out_dir)
        return metrics

    def _test_curve_score(self, step) -> float:
        """This epoch's test WF1: written to history.csv for the report, read by nothing here."""
        return metrics_of(self.predict(step, "test"), self.store.class_names)["weighted_f1"]

    def _select(self, step, model, state: dict, epoch: int) -> tuple[dict, bool]:
        """The epoch's validation scores, the eraser refitted and the combination chosen first; keeps the
        weights of each part of the model whose own validation score improved (maln/selection.py)."""
        fit_eraser(model, self.data, self.splits["train"], self.train_cfg.batch_dialogues, self.train_cfg.bf16)
        predictions = self.predict(step, "valid", heads=model.combined)
        # this epoch's combination (of a model with one), then its decoding (model.decode: chain), from the
        # validation split, as the epoch is
        combination, decoding = fit_prediction(model, predictions)
        valid = metrics_of(predictions, self.store.class_names)
        scores = selection.scores(model, predictions, valid, self.store.class_names)
        return valid, selection.keep(state, model, scores, epoch, valid, combination, decoding)

def finish(run: Run, model, seed, out_dir, config, config_hash, state, n_params, started) -> dict:
    """The selected weights on the validation and test splits once, the probes, and the run's files."""
    names = run.store.class_names
    valid, test = run.predict(model, "valid", keep_features=True), run.predict(model, "test", keep_features=True)
    probes = None
    if test.common is not None:  # multimodal: how modality-invariant the common features are, out of sample
        probes = invariance({"specific": test.specific, "common": test.common, "gold": test.gold,
                             "dialogue": test.dialogue})
    metrics = {
        "dataset": run.dataset, "configuration": run.configuration, "variant": run.variant_name, "seed": seed,
        "modalities": list(model.modalities), "class_names": list(names),
        "valid": metrics_of(valid, names), "test": metrics_of(test, names),
        **({"invariance": probes} if probes else {}), "heads": head_scores(valid, test, names),
        **({"combination": state["combination"]} if state["combination"] else {}),
        **({"decoding": state["decoding"]} if state["decoding"] else {}),
        **({"selected_epochs": selection.epochs(state)} if selection.epochs(state) else {}),
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "stopped_early": state["epoch"] < run.train_cfg.epochs,
        "device": run.placement.describe(), "precision": precision(run.device, run.train_cfg.bf16),
        "threads": torch.get_num_threads(), "parameters": n_params,
        "config_hash": config_hash, "store_hash": run.store.hash, "config": config,
        "versions": {"maln": maln.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    timing = {"started_at": round(started, 3), "finished_at": round(time.time(), 3),
              "wall_time_s": round(time.time() - started, 3), "device_held_from": round(run.placement.acquired_at, 3),
              "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in state["history"]])), 4)}
    save_run(out_dir, run.store, valid, test, state["history"], model, metrics["valid"]["weighted_f1"], metrics, timing)
    log_result(f"{run.dataset}/{run.run_label}/seed{seed}", metrics, out_dir)
    return metrics


def start(run: Run, seed: int, out_dir: Path, config_hash: str, name: str) -> tuple:
    """(model, optimizer, state): resumed from the folder's last intact epoch, or fresh."""
    model = run.build_model(seed)
    optimizer = make_optimizer(model, run.train_cfg)
    resumed = load_resume_state(out_dir, config_hash, run.store.hash)
    try:
        if resumed is not None:
            model.load_state_dict(resumed["model"])
            load_state(optimizer, resumed["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:  # the model's code changed since
        log(f"warning: the checkpoint in {out_dir} does not fit this model ({str(e)[:200]}); starting from scratch")
        resumed, model = None, run.build_model(seed)
        optimizer = make_optimizer(model, run.train_cfg)
    if resumed is None:
        return model, optimizer, {"epoch": 0, "history": [], "best_epoch": 0, "best_score": -1.0,
                                  "best_model": None, "parts": {}, "stale": 0, "combination": None, "decoding": None}
    state = {k: resumed[k] for k in RESUME_KEYS if k not in ("model", "optimizer")}
    log(f"resuming {name} after epoch {state['epoch']} "
         f"(best validation score {100 * state['best_score']:.2f} at epoch {state['best_epoch']})")
    return model, optimizer, state


def train_epoch(run: Run, step, model, batches, optimizer, weights, class_weights) -> dict:
    """One pass over `batches`; the loss terms' means over its utterances."""
    model.train()
    sums, total = {}, 0
    for idx in batches:
        b = run.data.batch(idx)
        with autocast(run.device, run.train_cfg.bf16):  # the losses too: under CUDA's autocast the
            out = step(b.features, b.speakers, b.mask, b.lengths)  # discriminator reads bf16 features
            terms = model.loss(out, b.labels, b.mask, weights, class_weights, run.train_cfg.label_smoothing)
        if run.train_cfg.distill:
            heads = out.aux_logits if model.multimodal else {model.modalities[0]: out.logits}
            terms["distill"] = distillation(run.teachers.fit(), heads, b.rows, b.mask)
            terms["loss"] = terms["loss"] + run.train_cfg.distill * terms["distill"]
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if run.train_cfg.grad_clip:
            for group in model.clip_groups():
                torch.nn.utils.clip_grad_norm_(group, run.train_cfg.grad_clip)
        optimizer.step()
        total += b.n_utterances
        for k, v in terms.items():  # stays on the device: one host sync per epoch, below
            sums[k] = sums.get(k, 0) + v.detach().float() * b.n_utterances
    return {k: float(v) / total for k, v in sums.items()}


def train(params: Params, dataset: str, variant: str, seeds, out: Path | None = None, threads: int | None = None,
          force: bool = False) -> list[dict]:
    run = Run(params, dataset, variant, threads)
    results = []
    for seed in seeds:
        out_dir = Path(out) if out and len(seeds) == 1 else (
            Path(out) / f"seed{seed}" if out else run_dir(params.root, dataset, run.run_label, seed))
        results.append(run.train_seed(seed, out_dir, force))
    return results
