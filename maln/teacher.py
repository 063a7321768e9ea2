"""`train.distill`: each modality head learns from its modality's context-free logistic regression
as well as from the labels.

The teacher of modality m is the study's `logreg_<m>` baseline (maln/baselines.py: the standardised
features of one utterance, L2 strength by validation WF1), solved in torch (Regression). Its posteriors on the training utterances
are cross-fitted: the training dialogues fall into FOLDS folds, and each fold's posteriors come from
a regression fitted, at that strength, on the other folds, so no utterance's target comes from a
fit that saw its label (a teacher fitted on all of them would hand its memorisation on). The loss
adds distill x CE(teacher posterior, head) for each modality's head (the branches' classifiers of a
branchwise model, a single-modality variant's classifier), averaged over the batch's utterances.

Why: on weak signals (synthetic-iemocap-interaction, synthetic-meld-nuisance) a branch's context
GRU fitted to the labels alone overfits (training WF1 83-100 %) and scored under the regression
on its own inputs; the regression's posteriors are a target of low variance that the branch can
match and then improve on with the dialogue (docs/findings.md, 2026-12-05).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from maln.baselines import LOGREG_MAX_ITER, dialogue_rows, features_of, split_rows
from maln.data.store import Store
from maln.errors import ConfigError
from maln.inference import nll
from maln.metrics import classification_metrics

FOLDS = 5
FOLD_SEED = 0  # the folds' draw: fixed, so every seed's run learns from the same targets


class Regression:
    """The baselines' regression, scikit-learn's LogisticRegression(C) (multinomial, L2 on the weights
    and not the intercept: mean CE + |W|^2 / (2 C n)), solved by torch's L-BFGS in float64: training
    does not import scikit-learn and SciPy, which hold 100 MB more than torch alone (the CLI's bound
    is 400 MB). Its posteriors agree with scikit-learn's to a few 1e-3 (tests/test_teacher.py)."""

    def __init__(self, C: float):
        self.C = C

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Regression":
        self.classes_ = np.unique(y)
        xt, target = torch.from_numpy(x), torch.from_numpy(np.searchsorted(self.classes_, y))
        w = torch.zeros(x.shape[1], len(self.classes_), dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(self.classes_), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=LOGREG_MAX_ITER, tolerance_grad=1e-7, tolerance_change=1e-12,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xt @ w + b, target) + (w * w).sum() / (2 * self.C * len(y))
            loss.backward()
            return loss

        opt.step(closure)
        self.w, self.b = w.detach(), b.detach()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(torch.from_numpy(x) @ self.w + self.b, -1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(1)]


def choose(x: dict, labels: dict, names, grid) -> Regression:
    """The fit on x["train"] whose C of `grid` scores the highest validation WF1, tried from the strongest
    regularisation, which wins ties: the baselines' rule (maln.baselines.choose), written again for
    Regression because that one imports scikit-learn. Returned fitted: the fit is deterministic, so a
    refit at that C would give the same weights."""
    best = None
    for C in sorted(grid):
        model = Regression(C).fit(x["train"], labels["train"])
        score = classification_metrics(labels["valid"], model.predict(x["valid"]), names)["weighted_f1"]
        if best is None or score > best[0]:
            best = (score, model)
    return best[1]


def chosen(store: Store, modalities, grid, fits: dict) -> Regression:
    """`choose` on the standardised features of `modalities` concatenated, kept in `fits` (modalities ->
    Regression): a run's teacher of modality m and its linear head on m share one search."""
    key = tuple(modalities)
    if key not in fits:
        labels = np.asarray(store.labels)
        rows = {s: split_rows(store, s) for s in ("train", "valid")}
        fits[key] = choose({s: features_of(store, key, r) for s, r in rows.items()},
                           {s: labels[r] for s, r in rows.items()}, store.class_names, grid)
    return fits[key]


def teachers(store: Store, modalities, grid, device, fits: dict | None = None) -> dict:
    """modality -> [utterances, classes] float32 on `device`: each training utterance's cross-fitted
    posteriors (store order); other splits' rows uniform (never read). `grid`: the regressions' C.
    Fewer folds than FOLDS when there are fewer training dialogues. `fits`: `chosen`'s cache."""
    names, labels = store.class_names, np.asarray(store.labels)
    train = store.dialogues("train")
    n_folds = min(FOLDS, len(train))
    if n_folds < 2:
        raise ConfigError(f"train.distill cross-fits its teachers over the training dialogues, and the store has "
                          f"{len(train)}; set train.distill=0")
    folds = np.random.default_rng(FOLD_SEED).permutation(len(train)) % n_folds
    fits = {} if fits is None else fits
    out = {}
    for m in modalities:
        C = chosen(store, (m,), grid, fits).C
        probs = np.full((len(labels), len(names)), 1.0 / len(names))
        for f in range(n_folds):
            fit_rows, held = dialogue_rows(store, train[folds != f]), dialogue_rows(store, train[folds == f])
            p = np.full((len(held), len(names)), 1e-12)
            if len(np.unique(labels[fit_rows])) < 2:  # one emotion in the other folds: what a fit would say
                p[:, labels[fit_rows][0]] = 1.0
            else:
                model = Regression(C).fit(features_of(store, (m,), fit_rows), labels[fit_rows])
                p[:, model.classes_] = model.predict_proba(features_of(store, (m,), held))
            probs[held] = p / p.sum(1, keepdims=True)
        out[m] = torch.tensor(probs, dtype=torch.float32, device=device)
    return out


def _standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x centred and scaled per column (a constant column keeps scale 1), and the scales."""
    scale = x.std(0)
    scale[scale == 0] = 1.0
    return (x - x.mean(0)) / scale, scale


def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit and Wolf's shrunk covariance of x's rows: (1 - a) S + a tr(S)/d I, a by their formula."""
    n, d = x.shape
    x = x - x.mean(0)
    cov = x.T @ x / n
    if d == 1:
        return cov
    mu = np.trace(cov) / d
    squares = (cov * cov).sum()
    delta = (squares - 2 * mu * np.trace(cov) + d * mu * mu) / d  # |S - mu I|^2 / d
    beta = min((((x * x).T @ (x * x)).sum() / n - squares) / (d * n), delta)  # the variance of S's entries, bounded
    a = 0.0 if beta == 0 else beta / delta
    return (1 - a) * cov + a * mu * np.eye(d)


class SharedCovariance:
    """Linear discriminant analysis with a Ledoit-Wolf shrunk covariance: scikit-learn's
    LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto") (the covariance is each emotion's,
    shrunk on its standardised features, averaged with the emotions' frequencies), in numpy for the
    reason Regression is in torch; the same weights to 1e-8 (tests/test_teacher.py). Gaussian emotions
    with one covariance are its model: where that fits better than a regression at the data's size,
    its validation likelihood says so (joint_regression, model.linear_lda)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> "SharedCovariance":
        self.classes_, counts = np.unique(y, return_counts=True)
        priors = counts / len(y)
        means = np.stack([x[y == c].mean(0) for c in self.classes_])
        cov = np.zeros((x.shape[1], x.shape[1]))
        for c, prior in zip(self.classes_, priors):
            z, scale = _standardised(x[y == c])
            cov += prior * scale[:, None] * _ledoit_wolf(z) * scale[None, :]
        coef = np.linalg.lstsq(cov, means.T, rcond=None)[0].T
        self.w = torch.from_numpy(coef.T.copy())
        self.b = torch.from_numpy(-0.5 * (means * coef).sum(1) + np.log(priors))
        return self

    predict_proba, predict = Regression.predict_proba, Regression.predict


def _nll(model, x: np.ndarray, y: np.ndarray) -> float:
    """Validation NLL of a fit; an emotion it never saw has probability 0 (inference.nll floors it)."""
    p = np.zeros((len(y), int(max(y.max(), model.classes_.max())) + 1))
    p[:, model.classes_] = model.predict_proba(x)
    return nll(p, y)


def joint_regression(store: Store, modalities, grid, fits: dict | None = None, lda: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head's weights (model.linear_head): the study's `logreg_all` or `logreg_X` (the standardised
    features of the `modalities` concatenated, C by validation WF1) fitted on the training split, as (weight [C, D],
    bias [C]) float32; with `lda` (model.linear_lda), SharedCovariance's instead where its validation
    likelihood is the higher. An emotion the training split lacks gets bias -30: never predicted, as the
    baselines never predict it. `fits`: `chosen`'s cache."""
    model = chosen(store, modalities, grid, {} if fits is None else fits)
    if lda:
        labels = np.asarray(store.labels)
        rows = {s: split_rows(store, s) for s in ("train", "valid")}
        other = SharedCovariance().fit(features_of(store, modalities, rows["train"]), labels[rows["train"]])
        x, y = features_of(store, modalities, rows["valid"]), labels[rows["valid"]]
        model = other if _nll(other, x, y) < _nll(model, x, y) else model
    n, dims = len(store.class_names), model.w.shape[0]
    weight, bias = torch.zeros(n, dims), torch.full((n,), -30.0)
    weight[model.classes_] = model.w.T.float()
    bias[model.classes_] = model.b.float()
    return weight, bias


class Teachers:
    """A run's regressions: the teachers (train.distill) and the linear heads' (model.linear_head; the
    modalities each reads, ModelConfig.linear_inputs), checked when the run is set up, fitted once when a
    seed first trains (not for runs that are complete already); `fit()` is None without train.distill."""

    def __init__(self, store: Store, modalities, grid, device, distill: float, training: str, linear=(), lda=False):
        if distill and len(modalities) > 1 and training != "branchwise":
            raise ConfigError("train.distill needs model.training: branchwise (jointly, the auxiliary classifiers "
                              "read AMDM's common features, which the teachers would pull apart); set train.distill=0")
        self.args, self.distill, self.fitted = (store, modalities, grid, device), distill, None
        self.linear, self.regressions, self.fits, self.lda = tuple(tuple(r) for r in linear), {}, {}, lda

    def fit(self) -> dict | None:
        if self.distill and self.fitted is None:
            self.fitted = teachers(*self.args, fits=self.fits)
        for reads in self.linear:
            if reads not in self.regressions:
                self.regressions[reads] = joint_regression(self.args[0], reads, self.args[2], self.fits, self.lda)
        return self.fitted

    def regression(self, modalities) -> tuple:
        """The linear head's (weight, bias) on `modalities` (one of those given to the constructor)."""
        self.fit()
        return self.regressions[tuple(modalities)]


def distillation(teacher: dict, heads: dict, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over the heads (modality -> logits [B, T, C]) of the mean over real utterances of
    CE(teacher posterior, head); rows: each position's store row [B, T]."""
    total = mask.new_zeros((), dtype=torch.float32)
    for m, logits in heads.items():
        ce = -(teacher[m][rows] * torch.log_softmax(logits.float(), -1)).sum(-1)
        total = total + ce[mask].mean()
    return total
