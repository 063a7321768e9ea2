"""Simple baselines on the same store and splits as the MALN runs, so that every table can say
whether MALN beats a model without context: the majority class, a logistic regression
(scikit-learn) on each utterance's features per modality and on the concatenated modalities, and
a small MLP on the concatenated modalities (issue 21: where modalities interact, so that the label
is readable only from their combination, it is the simplest model that can read the interaction),
and the concatenated regression decoded by the emotion chain (maln/chain.py): the simplest model
that reads the dialogue, through its labels' persistence alone.

Each model standardises its inputs with the training split's statistics, is fitted on the
training split only (as the networks are), and takes its L2 strength from a grid by the
validation split's weighted F1 (ties go to the stronger regularisation): the inverse strength C
of the regressions, the penalty alpha of the MLP; the test split is scored once, with the chosen
value. Deterministic: no seeds but the MLP's fixed initialisation (MLP_SEED).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maln import chain, io
from maln.data.store import Store
from maln.metrics import classification_metrics
from maln.model.variants import MODALITY_ORDER

# The MLP baseline (mlp_all): one hidden layer, full-batch L-BFGS (deterministic, no early
# stopping) for at most MLP_MAX_ITER iterations. Its penalty alpha comes from params.yaml's
# `baselines.mlp_alpha` by validation WF1: a decade apart, from barely regularised to strongly (on standardised inputs of
# ~700-900 dimensions and ~1000-1500 training utterances, the synthetic datasets chose 1 to 100).
MLP_HIDDEN = 32
MLP_MAX_ITER = 100
MLP_SEED = 0
LOGREG_MAX_ITER = 2000  # the regressions' L-BFGS iterations: enough to converge on these problems


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    modalities: tuple | None  # None: the majority class (reads no features); () : every modality
    model: str = "logreg"  # logreg or mlp: the classifier on the features
    chain: bool = False  # its posteriors decoded by the training split's emotion chain (maln/chain.py)

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
        Baseline("mlp_all", f"one-hidden-layer MLP ({MLP_HIDDEN} units) on the utterance's concatenated features",
                 (), "mlp"),
        Baseline("logreg_all_chain", "logreg_all's regression, its posteriors decoded by the training split's emotion "
                 "chain (maln/chain.py; mix and temperature by validation likelihood)", (), chain=True),
    )
}


def split_rows(store: Store, split: str) -> np.ndarray:
    return dialogue_rows(store, store.dialogues(split))


def dialogue_rows(store: Store, dialogues) -> np.ndarray:
    """The store rows of `dialogues`' utterances, dialogue by dialogue."""
    d = dialogues
    return np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in d]) if len(d) else np.zeros(0, int)


def features_of(store: Store, modalities, rows) -> np.ndarray:
    stats = store.standardization
    return np.concatenate([(np.asarray(store.features[m][rows], dtype=np.float64) - stats[m][0]) / stats[m][1]
                           for m in modalities], axis=1)


def classifier(baseline: Baseline, value: float):
    """The baseline's model with L2 strength `value` (C of a regression, alpha of the MLP)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if baseline.model == "logreg":
        return LogisticRegression(C=value, max_iter=LOGREG_MAX_ITER)
    return MLPClassifier(hidden_layer_sizes=(MLP_HIDDEN,), alpha=value, solver="lbfgs", max_iter=MLP_MAX_ITER,
                         random_state=MLP_SEED)


def fit(store: Store, baseline: Baseline, grid, mlp_grid=()) -> dict:
    """One baseline on one store: chosen C (or alpha), valid and test metrics, test predictions
    (store order). `grid`: the regressions' C; `mlp_grid`: the MLP's alpha."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small problems: one BLAS thread is several times faster than many
        return _fit(store, baseline, grid, mlp_grid)


def _fit(store: Store, baseline: Baseline, grid, mlp_grid) -> dict:
    names = store.class_names
    rows = {s: split_rows(store, s) for s in ("train", "valid", "test")}
    labels = {s: np.asarray(store.labels[r]) for s, r in rows.items()}
    if baseline.modalities is None:
        majority = int(np.bincount(labels["train"], minlength=len(names)).argmax())
        preds = {s: np.full(len(r), majority) for s, r in rows.items()}
        chosen = {"class": names[majority]}
    else:
        used = baseline.uses(store.modalities)
        x = {s: features_of(store, used, r) for s, r in rows.items()}
        key = "C" if baseline.model == "logreg" else "alpha"
        value, model = choose(baseline, x, labels, names, grid if key == "C" else mlp_grid)
        preds = {s: model.predict(x[s]) for s in rows}
        chosen = {key: value, "modalities": list(used)}
        if baseline.chain:
            preds, chosen["decoding"] = _decoded(store, model, x, labels)
    return {
        "baseline": baseline.name, "description": baseline.description, **chosen,
        "valid": classification_metrics(labels["valid"], preds["valid"], names),
        "test": classification_metrics(labels["test"], preds["test"], names),
        "test_predictions": preds["test"].astype(int).tolist(),
    }


def choose(baseline: Baseline, x: dict, labels: dict, names, values) -> tuple:
    """(value, model): the L2 strength of `values` whose fit on x["train"] scores the highest
    validation WF1, tried from the strongest regularisation (small C, large alpha), which wins ties."""
    from sklearn.exceptions import ConvergenceWarning

    best = None
    for value in sorted(values) if baseline.model == "logreg" else sorted(values, reverse=True):
        with warnings.catch_warnings():  # the MLP's iterations are bounded on purpose
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = classifier(baseline, value).fit(x["train"], labels["train"])
        score = classification_metrics(labels["valid"], model.predict(x["valid"]), names)["weighted_f1"]
        if best is None or score > best[0]:
            best = (score, value, model)
    return best[1], best[2]


def _decoded(store: Store, model, x: dict, labels: dict) -> tuple[dict, dict]:
    """The regression's predictions decoded by the chain, its (mix, temperature) chosen on validation."""
    n_classes = len(store.class_names)
    transition = chain.transitions(store.labels, store.offsets, store.dialogues("train"), n_classes)
    prior = np.maximum(np.asarray(store.class_prior, dtype=np.float64), 1e-12)
    probs, dialogue = {}, {}
    for s in x:
        probs[s] = np.full((len(x[s]), n_classes), 1e-12)
        probs[s][:, model.classes_] = model.predict_proba(x[s])  # a class absent from training: never predicted
        dialogue[s] = np.repeat(store.dialogues(s), store.lengths()[store.dialogues(s)])
    mix, temperature = chain.choose(probs["valid"], labels["valid"], dialogue["valid"], transition, prior)
    preds = {s: chain.decode(probs[s], dialogue[s], transition, prior, mix, temperature).argmax(1) for s in x}
    return preds, {"mix": mix, "temperature": temperature}


def run_baselines(store: Store, dataset: str, grid, out: Path, mlp_grid) -> dict:
    """Every baseline that applies to the store's modalities -> `out` (JSON)."""
    t0 = time.time()
    result = {"dataset": dataset, "store_hash": store.hash, "class_names": list(store.class_names),
              "logreg_C_grid": sorted(grid), "mlp_alpha_grid": sorted(mlp_grid), "baselines": {}}
    for b in BASELINES.values():
        if not b.applicable(store.modalities):
            continue
        start = time.time()
        r = fit(store, b, grid, mlp_grid)
        result["baselines"][b.name] = r
        chosen = next((f"{k} {r[k]:g}" for k in ("C", "alpha") if k in r), r.get("class"))
        # times to the log only: the JSON is versioned (dvc.lock), so it holds nothing a rerun changes
        print(f"{dataset}/{b.name}: {chosen}, valid WF1 {100 * r['valid']['weighted_f1']:.2f}, test WF1 "
              f"{100 * r['test']['weighted_f1']:.2f} ({time.time() - start:.1f} s)", file=sys.stderr)
    print(f"{dataset}: baselines in {time.time() - t0:.1f} s", file=sys.stderr)
    io.write_json(out, result)
    return result
