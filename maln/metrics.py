"""Classification metrics from a confusion matrix, as the ERC papers report them. A test checks
every number against scikit-learn."""

from __future__ import annotations

import numpy as np


def _safe_div(a, b):
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def classification_metrics(gold, pred, class_names) -> dict:
    """Accuracy, weighted F1, macro F1, weighted-average accuracy (WAA), per-class precision /
    recall / F1 / support, and the confusion matrix (rows: gold, columns: predicted).

    Per-class "accuracy" in the papers' tables is recall (correct / gold count); WAA weights it by
    the class's share of the utterances, which makes it equal to accuracy; it is reported under its
    own name so tables can mirror the papers. Macro F1 averages over the classes that occur in gold
    or predictions (scikit-learn's default)."""
    gold, pred = np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    c = len(class_names)
    cm = np.bincount(gold * c + pred, minlength=c * c).reshape(c, c)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    n = support.sum()
    present = (support > 0) | (predicted > 0)
    return {
        "n": int(n),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "weighted_f1": float((support * f1).sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "waa": float((support / n * recall).sum()) if n else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
    }
