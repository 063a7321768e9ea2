"""Which weights a run keeps: model selection on the validation split, part by part.

A model trained as one piece is kept at the epoch whose prediction scores best on validation (weighted
F1). A branchwise model whose fusion path reads the features (model.training: branchwise,
model.amdm_reads: features) is several networks that no loss or input connects: each modality's branch
(context encoder, SCLM, its classifier) and the fusion path (AMDM, the cross-modal block, the fusion
classifier). Each part is kept at the epoch where its own classifier scores best on validation (decoded
with its own chain setting), and the validated combination is chosen again on the parts so assembled
(`refit`). Selected as one piece, by the prediction, the regressions (model.linear_head, fixed from the
first epoch) carried the early epochs and the branches were kept undertrained: on synthetic-meld `full`'s
text branch scored 49 validation WF1 at its chosen epoch 7, where `text_only`'s scored 70 at epoch 19
(docs/findings.md, 2026-12-05, nineteenth session). A single modality with its regression is one part
selected by its branch alone, for the same reason (text on synthetic-iemocap: by the pair, epoch 6.5 and
the branch alone at 34.21 test WF1 against 74.97).
"""

from __future__ import annotations

from maln.inference import Predictions, decoded_head, fit_prediction, metrics_of
from maln.metrics import classification_metrics


def parts(model) -> dict[str, tuple[str, ...]]:
    """Part -> the state-dict key prefixes it owns; a part is named after the head that scores it
    (`prediction`: the whole model's prediction)."""
    if model.multimodal and model.branchwise and model.amdm_reads_features:
        return {"fusion": ("amdm.", "cross.", "classifier."),
                **{m: (f"context.{m}.", f"sclm.{m}.", f"aux.{m}.") for m in model.modalities}}
    if not model.multimodal and model.linear_head:
        return {model.modalities[0]: ("",)}
    return {"prediction": ("",)}


def scores(model, valid: Predictions, metrics: dict, class_names) -> dict[str, float]:
    """Each part's validation WF1 this epoch: its head's own (decoded under the chain), or the
    prediction's (`metrics`)."""
    return {part: metrics["weighted_f1"] if part == "prediction" else
            classification_metrics(valid.gold, decoded_head(model, valid, part).argmax(1), class_names)["weighted_f1"]
            for part in parts(model)}


def keep(state: dict, model, part_scores: dict, epoch: int, valid: dict, combination, decoding) -> bool:
    """Keep this epoch's weights of every part whose score beat its best (all of them at the first
    epoch), in state["best_model"]; True when any did. A model of one part keeps the epoch's
    combination and decoding too; one of several has them chosen again by `refit`."""
    best = state["parts"]
    better = [p for p, s in part_scores.items() if p not in best or s > best[p][0]]
    if not better:
        state["stale"] += 1
        return False
    owned = tuple(prefix for p in better for prefix in parts(model)[p])
    kept = state["best_model"] or {}
    for k, v in model.state_dict().items():
        if state["best_model"] is None or k.startswith(owned):
            kept[k] = v.detach().clone().cpu()
    best.update({p: (float(part_scores[p]), epoch) for p in better})
    state.update(best_model=kept, stale=0, best_epoch=max(e for _, e in best.values()),
                 best_score=valid["weighted_f1"], combination=combination, decoding=decoding)
    return True


def refit(model, state: dict, valid: Predictions, class_names) -> None:
    """For a model of several parts, its kept weights loaded: the combination and decoding chosen on
    `valid` (the assembled model's validation predictions, with heads), as each epoch's were."""
    state["combination"], state["decoding"] = fit_prediction(model, valid)
    state["best_score"] = metrics_of(valid, class_names)["weighted_f1"]


def epochs(state: dict) -> dict | None:
    """The epoch each part was kept at, for metrics.json; None for a model of one part."""
    return {p: e for p, (_, e) in state["parts"].items()} if len(state["parts"]) > 1 else None
