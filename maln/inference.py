"""Running a model over a split: predictions and each head's probabilities, the branchwise
combination fitted on a split, the eraser's statistics refitted on one, and the metrics of a split.
Training (maln/train.py) and evaluation of saved checkpoints (maln/evaluate.py) both use it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from maln import chain
from maln.combination import choose_combination, combine, posterior
from maln.data.batching import DeviceData
from maln.metrics import classification_metrics
from maln.model.fast_gru import products_in


@dataclass
class Predictions:
    dialogue: np.ndarray  # store index of each utterance's dialogue
    position: np.ndarray  # utterance position within its dialogue
    speaker: np.ndarray
    gold: np.ndarray
    probs: np.ndarray  # [N, C]
    specific: np.ndarray | None = None  # [N, M, W]
    common: np.ndarray | None = None
    heads: dict | None = None  # multimodal or combined, asked for: head name -> its own log-probabilities [N, C]
    undecoded: np.ndarray | None = None  # [N, C]: probs before the chain's decoding (model.decode: chain)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)


def cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX) and oneDNN may use them (capped
    below AMX by ONEDNN_MAX_CPU_ISA, bf16 products are emulated, about 100x slower)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()  # private in torch 2.x: absent is no
    return bool(amx) and (cap == "ALL" or "AMX" in cap)


def precision(device: torch.device, bf16: bool) -> str:
    """What `autocast` computes in, for a run's metrics.json (results differ between the two)."""
    if device.type == "cuda" and bf16:
        return "bf16 autocast"
    return "bf16 GRU products (AMX)" if device.type == "cpu" and bf16 and cpu_bf16() else "float32"


def autocast(device: torch.device, bf16: bool):
    """train.bf16's context: autocast on CUDA; on a CPU with AMX, the GRUs' matrix products in bf16
    (products_in; all of autocast there would need torch's AVX-512 kernels, which maln pins to AVX2
    for the same numbers on every host, maln/__init__.py); else float32."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and bf16 and cpu_bf16():
        return products_in(torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model, data: DeviceData, dialogues: np.ndarray, batch_size: int, bf16: bool = False,
            keep_features: bool = False, heads: bool = False) -> Predictions:
    """Model outputs for every real utterance of `dialogues`, in store order (by dialogue, then
    position), whatever the batching; with keep_features the features too, with keep_features or
    heads each head's log-probabilities (multimodal models and any with a combination of heads; always for
    one with a combination and the chain)."""
    model.eval()
    heads = heads or (model.combined and model.decoder is not None)  # its prediction decodes each head
    parts = []
    for idx in data.eval_batches(dialogues, batch_size):
        b = data.batch(idx)
        with autocast(data.device, bf16):
            out = model(b.features, b.speakers, b.mask, b.lengths)
        mask = b.mask.cpu()
        part = {
            "probs": torch.softmax(out.logits.float(), -1).cpu()[mask],
            "gold": b.labels.cpu()[mask],
            "speaker": b.speakers.cpu()[mask],
            "dialogue": torch.from_numpy(idx).repeat_interleave(b.lengths),
            "position": torch.cat([torch.arange(n) for n in b.lengths.tolist()]),
        }
        if keep_features and out.specific:
            part["specific"] = torch.stack([out.specific[m] for m in model.modalities], 2).float().cpu()[mask]
            part["common"] = torch.stack([out.common[m] for m in model.modalities], 2).float().cpu()[mask]
        if (keep_features or heads) and (out.specific or model.combined):
            logits = {"fusion": out.fused_logits, **out.aux_logits, **out.linear_logits}
            for name in model.head_names:
                part[f"head:{name}"] = torch.log_softmax(logits[name].float(), -1).cpu()[mask]
        parts.append(part)
    cat = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    order = np.lexsort((cat["position"], cat["dialogue"]))
    cat = {k: v[order] for k, v in cat.items()}
    heads = {k.split(":", 1)[1]: v for k, v in cat.items() if k.startswith("head:")} or None
    p = Predictions(cat["dialogue"], cat["position"], cat["speaker"], cat["gold"], cat["probs"],
                    cat.get("specific"), cat.get("common"), heads)
    if model.decoder is not None:
        p.undecoded = p.probs
        if model.combined:
            p.probs = _decoded_combination(model, p, model.combination.cpu().numpy())
        else:
            p.probs = chain.decode(p.undecoded, p.dialogue, *_decoder_state(model), *_settings(model)[0])
    return p


def _decoder_state(model) -> tuple:
    """(transition, prior) of the model's chain, float64."""
    d = model.decoder
    return d.transition.cpu().double().numpy(), d.prior.cpu().double().numpy()


def _settings(model) -> list:
    """The chain's (mix, temperature) per decoded posterior (ChainDecoder.setting's rows)."""
    return [tuple(round(float(v), 6) for v in row) for row in model.decoder.setting]


def _decoded_heads(model, p: Predictions, settings, names=None) -> list:
    """Each head's posterior (or those of `names`) decoded by the chain with its own setting, as log-probabilities."""
    transition, prior = _decoder_state(model)
    return [np.log(np.maximum(chain.decode(np.exp(p.heads[n]), p.dialogue, transition, prior, *setting), 1e-12))
            for n, setting in zip(model.head_names, settings) if names is None or n in names]


def _decoded_combination(model, p: Predictions, weights) -> np.ndarray:
    """A combined model's prediction under the chain: its heads decoded each with its own setting,
    then combined by Bayes' rule (the order the late-fusion baseline's members take)."""
    return posterior(_decoded_heads(model, p, _settings(model)), weights, model.log_prior.cpu().numpy()).astype(np.float32)


def fit_prediction(model, valid: Predictions) -> tuple[dict | None, dict | None]:
    """(combination, decoding) chosen on `valid` (the validation split's predictions, with heads for a
    model with a combination), set on the model, and valid.probs turned into the prediction they give.
    With a combination and the chain, each head's setting is chosen on its own posterior first and the
    combination on the decoded heads: one decoding of the combined posterior gives every head the
    same chain, which the text head on synthetic-iemocap-noise wants at mix 0.75 and the combination
    chose 0.5 for (docs/findings.md, 2026-12-05)."""
    if not (model.combined and model.decoder is not None):
        combination = fit_combination(model, valid) if model.combined else None
        return combination, fit_decoding(model, valid)
    transition, prior = _decoder_state(model)
    settings = [chain.choose(np.exp(valid.heads[n]), valid.gold, valid.dialogue, transition, prior)
                for n in model.head_names]
    model.decoder.setting.copy_(torch.tensor(settings, dtype=torch.float32))
    weights = _choose_weights(model, _decoded_heads(model, valid, _settings(model)), valid.gold)
    valid.undecoded = posterior([valid.heads[n] for n in model.head_names], weights,
                                model.log_prior.cpu().numpy()).astype(np.float32)
    valid.probs = _decoded_combination(model, valid, weights)
    decoding = {n: {"mix": mix, "temperature": t} for n, (mix, t) in zip(model.head_names, _settings(model))}
    return dict(zip(model.head_names, map(float, weights))), decoding


def decoded_head(model, p: Predictions, name: str) -> np.ndarray:
    """One head's log-probabilities on `p`, decoded by the chain with its own setting when the model
    has one (maln/selection.py scores a part by it)."""
    if model.decoder is None:
        return p.heads[name]
    return _decoded_heads(model, p, _settings(model), (name,))[0]


def _choose_weights(model, log_probs: list, gold) -> np.ndarray:
    """The combination's weights by validation likelihood (maln.combination), set on the model. A single
    modality's branch and its regression (model.linear_head) are weighed by _with_regression: one at
    1, the other from the grid, the branch never at 0, so its network never leaves the prediction. A
    multimodal model's modality heads are first weighed the same way with their own regressions
    (`linear_<m>`), each pair then one head; then text (or the first modality), the fusion classifier
    or the concatenated regression (`linear`) is at weight 1, whichever the likelihood prefers (in that
    order on ties), the others take weights of the grid, and the fusion classifier is never at 0, so
    the fusion path always reaches the prediction (docs/findings.md, 2026-12-05, twenty-third session):
    a pair's members end at the pair's weight times their own. Two stages keep the grid at 5^4
    candidates instead of 5^7."""
    prior, heads = model.log_prior.cpu().numpy(), dict(zip(model.head_names, log_probs))
    if not model.multimodal:
        w = _with_regression(log_probs, gold, prior)
    else:
        own = {m: _with_regression([heads[m], heads[f"linear_{m}"]], gold, prior)
               for m in model.modalities if f"linear_{m}" in heads}  # [branch's, regression's] weight
        top = [n for n in model.head_names if not n.startswith("linear_")]
        pairs = [combine([heads[n], heads[f"linear_{n}"]], own[n], prior) if n in own and own[n][1] else heads[n]
                 for n in top]
        text = 1 + (model.modalities.index("text") if "text" in model.modalities else 0)
        anchors = (text, 0, *([top.index("linear")] if "linear" in top else []))  # top[0]: the fusion classifier
        v = dict(zip(top, choose_combination(pairs, gold, prior, anchors, keep=(0,))))
        for m, (branch, regression) in own.items():  # a pair's members: the pair's weight times their own
            v[m], v[f"linear_{m}"] = v[m] * branch, v[m] * regression
        w = np.array([v[n] for n in model.head_names])
    model.combination.copy_(torch.as_tensor(w, dtype=torch.float32))
    return w


def _with_regression(pair: list, gold, prior) -> np.ndarray:
    """Weights of a branch and its regression ([branch, regression] log-probabilities): either at 1 and
    the other from the grid, whichever the validation likelihood prefers, the branch never at 0. With
    the branch always at 1, a branch worse calibrated than its regression kept its whole weight in
    the prediction (docs/findings.md, 2026-12-05, twenty-second session)."""
    return choose_combination(pair, gold, prior, (0, 1), keep=(0,))


def fit_combination(model, valid: Predictions) -> dict:
    """Choose a model's combination of its heads (MALN.head_names) on `valid` (the validation split's
    predictions, with heads), undecoded; set it on
    the model, and turn valid.probs into the new combination's. Returns the weights by head name.
    Training goes through fit_prediction, which decodes the heads first under the chain."""
    log_probs = [valid.heads[n] for n in model.head_names]
    w = _choose_weights(model, log_probs, valid.gold)
    valid.probs = posterior(log_probs, w, model.log_prior.cpu().numpy()).astype(np.float32)
    if model.decoder is not None:
        valid.undecoded = valid.probs
    return dict(zip(model.head_names, map(float, w)))


def fit_decoding(model, valid: Predictions) -> dict | None:
    """Choose the chain decoding's (mix, temperature) on `valid` (the validation split's predictions,
    after any combination was fitted on them), set it on the model and turn valid.probs into the
    decoded ones. None for a model without a decoder."""
    if model.decoder is None:
        return None
    transition, prior = _decoder_state(model)
    mix, temperature = chain.choose(valid.undecoded, valid.gold, valid.dialogue, transition, prior)
    model.decoder.setting.copy_(torch.tensor([[mix, temperature]]))
    valid.probs = chain.decode(valid.undecoded, valid.dialogue, transition, prior, mix, temperature)
    return {"mix": mix, "temperature": temperature}


def metrics_of(p: Predictions, class_names) -> dict:
    return classification_metrics(p.gold, p.pred, class_names)


def nll(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold emotions (nats), probabilities floored at 1e-12."""
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(gold)), gold], 1e-12))))


def head_scores(valid: Predictions, test: Predictions, class_names) -> dict:
    """Each head's own scores (the fusion classifier and every modality's), and the prediction's:
    {name: {split: {"weighted_f1", "nll"}}}; what the combination weights are chosen from, so a
    fusion head given no weight can be told from one that is merely worse than the branches."""
    out = {}
    for name in ("prediction", *(valid.heads or {})):
        out[name] = {}
        for split, p in (("valid", valid), ("test", test)):
            probs = p.probs if name == "prediction" else np.exp(p.heads[name])
            out[name][split] = {
                "weighted_f1": round(classification_metrics(p.gold, probs.argmax(1), class_names)["weighted_f1"], 6),
                "nll": round(nll(probs, p.gold), 6)}
    return out


@torch.no_grad()
def fit_eraser(model, data, dialogues, batch_size: int, bf16: bool = False) -> None:
    """The `erasure` adversary's evaluation statistics: those of `dialogues` (the training split)
    in evaluation mode, one pass of AMDM alone (MALN.decompose; amdm.LinearEraser). Nothing for any
    other model."""
    eraser = model.amdm.eraser if getattr(model, "amdm", None) is not None else None
    if eraser is not None:
        model.eval()
        eraser.begin_fit()
        for idx in data.eval_batches(dialogues, batch_size):
            b = data.batch(idx)
            with autocast(data.device, bf16):
                model.decompose(b.features, b.speakers, b.mask, b.lengths)
        eraser.end_fit()
