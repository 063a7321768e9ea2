"""Simple baselines on the same store and splits as the MALN runs, so that every table can say
whether MALN beats a linear model: the majority class, and a logistic regression (scikit-learn) on
each utterance's features (no context at all) per modality and on the concatenated modalities.

Each regression standardises its inputs with the training split's statistics, is fitted on the
training split only (as the networks are), and takes the inverse L2 strength C from a grid by the
validation split's weighted F1 (ties go to the stronger regularisation); the test split is scored
once, with the chosen C. Deterministic: no seeds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maln import io
from maln.data.store import Store
from maln.metrics import classification_metrics
from maln.model.variants import MODALITY_ORDER


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    modalities: tuple | None  # None: the majority class (reads no features); () : every modality

    def uses(self, available) -> tuple:
        """The modalities whose features it reads, in the variants' order."""
        wanted = MODALITY_ORDER if self.modalities == () else (self.modalities or ())
        return tuple(m for m in wanted if m in available)

    def applicable(self, available) -> bool:
        if self.modalities is None:
            return True
        used = self.uses(available)
        return len(used) >= 2 if self.modalities == () else used == self.modalities


BASELINES = {
    b.name: b
    for b in (
        Baseline("majority", "the training split's most frequent emotion, for every utterance", None),
        Baseline("logreg_text", "logistic regression on the utterance's text features", ("text",)),
        Baseline("logreg_audio", "logistic regression on the utterance's audio features", ("audio",)),
        Baseline("logreg_visual", "logistic regression on the utterance's visual features", ("visual",)),
        Baseline("logreg_all", "logistic regression on the utterance's concatenated features", ()),
    )
}


def _rows(store: Store, split: str) -> np.ndarray:
    d = store.dialogues(split)
    return np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in d]) if len(d) else np.zeros(0, int)


def _features(store: Store, modalities, rows) -> np.ndarray:
    stats = store.standardization
    return np.concatenate([(np.asarray(store.features[m][rows], dtype=np.float64) - stats[m][0]) / stats[m][1]
                           for m in modalities], axis=1)


def fit(store: Store, baseline: Baseline, grid) -> dict:
    """One baseline on one store: chosen C, valid and test metrics, test predictions (store order)."""
    from sklearn.linear_model import LogisticRegression

    names = store.class_names
    rows = {s: _rows(store, s) for s in ("train", "valid", "test")}
    labels = {s: np.asarray(store.labels[r]) for s, r in rows.items()}
    if baseline.modalities is None:
        majority = int(np.bincount(labels["train"], minlength=len(names)).argmax())
        preds = {s: np.full(len(r), majority) for s, r in rows.items()}
        chosen = {"class": names[majority]}
    else:
        used = baseline.uses(store.modalities)
        x = {s: _features(store, used, r) for s, r in rows.items()}
        best = None
        for c in sorted(grid):  # ascending C: on a tie the stronger regularisation wins
            model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], labels["train"])
            score = classification_metrics(labels["valid"], model.predict(x["valid"]), names)["weighted_f1"]
            if best is None or score > best[0]:
                best = (score, c, model)
        _, c, model = best
        preds = {s: model.predict(x[s]) for s in rows}
        chosen = {"C": c, "modalities": list(used)}
    return {
        "baseline": baseline.name, "description": baseline.description, **chosen,
        "valid": classification_metrics(labels["valid"], preds["valid"], names),
        "test": classification_metrics(labels["test"], preds["test"], names),
        "test_predictions": preds["test"].astype(int).tolist(),
    }


def run_baselines(store: Store, dataset: str, grid, out: Path) -> dict:
    """Every baseline that applies to the store's modalities -> `out` (JSON)."""
    from threadpoolctl import threadpool_limits

    t0 = time.time()
    result = {"dataset": dataset, "store_hash": store.hash, "class_names": list(store.class_names),
              "logreg_C_grid": sorted(grid), "baselines": {}}
    for b in BASELINES.values():
        if not b.applicable(store.modalities):
            continue
        with threadpool_limits(1):  # small problems: one BLAS thread is several times faster than many
            r = fit(store, b, grid)
        result["baselines"][b.name] = r
        print(f"{dataset}/{b.name}: {'C ' + format(r['C'], 'g') if 'C' in r else r['class']}, valid WF1 "
              f"{100 * r['valid']['weighted_f1']:.2f}, test WF1 {100 * r['test']['weighted_f1']:.2f}", file=sys.stderr)
    result["wall_time_s"] = round(time.time() - t0, 3)
    io.write_json(out, result)
    return result
