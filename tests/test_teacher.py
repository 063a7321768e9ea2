"""train.distill's teachers (maln/teacher.py): cross-fitted, and the loss they give."""

import numpy as np
import pytest
import torch

from builders import dialogues, raw_tuple, write_pickle
from maln.baselines import BASELINES, classifier, features_of, fit, split_rows
from maln.data import readers
from maln.data.store import load_store, write_store
from maln.teacher import FOLD_SEED, FOLDS, Regression, SharedCovariance, distillation, teachers

DIMS = {"text": 6, "audio": 4, "visual": 3}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """40 dialogues of 4..10 utterances whose text carries the label (a class prototype plus noise)."""
    tmp = tmp_path_factory.mktemp("teacher")
    dlg = dialogues(n=40, dims=DIMS, parties=3, length=(4, 10), n_classes=4)
    prototypes = np.random.default_rng(1).normal(size=(4, DIMS["text"])).astype(np.float32)
    for d in dlg.values():
        d["features"]["text"] = d["features"]["text"] + 1.5 * prototypes[d["labels"]]
    path = write_pickle(tmp / "f.pkl", raw_tuple("mmgcn-meld", dlg))
    write_store(readers.read("mmgcn-meld", {"main": path}), tmp / "store", "t", 0.2, [])
    return load_store(tmp / "store")


def _rows(store, dialogues):
    return np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in dialogues])


def test_each_training_fold_is_taught_by_a_regression_that_never_saw_it(store):
    grid = [0.01, 1.0]
    t = teachers(store, ["text", "audio"], grid, torch.device("cpu"))
    train = store.dialogues("train")
    folds = np.random.default_rng(FOLD_SEED).permutation(len(train)) % FOLDS
    labels = np.asarray(store.labels)
    for m in ("text", "audio"):
        assert t[m].shape == (len(labels), len(store.class_names))
        C = fit(store, BASELINES[f"logreg_{m}"], grid)["C"]  # the strength the study's logreg_<m> chose
        for f in range(FOLDS):
            held, rest = _rows(store, train[folds == f]), _rows(store, train[folds != f])
            # the regression at that strength, fitted on the other folds, gives exactly these posteriors
            model = Regression(C).fit(features_of(store, (m,), rest), labels[rest])
            got = t[m][torch.from_numpy(held)].numpy()
            # (the layout names 7 emotions, the labels use 4: the others' columns stay at 1e-12 before normalising)
            np.testing.assert_allclose(model.predict_proba(features_of(store, (m,), held)), got[:, model.classes_],
                                       atol=1e-5)
        # not what a regression fitted on every training utterance, these ones included, would say
        every = _rows(store, train)
        insample = [Regression(C).fit(features_of(store, (m,), every), labels[every]) for C in grid]
        got = t[m][torch.from_numpy(every)].numpy()
        assert min(np.abs(fit.predict_proba(features_of(store, (m,), every)) - got[:, fit.classes_]).max()
                   for fit in insample) > 1e-3
        others = _rows(store, np.concatenate([store.dialogues("valid"), store.dialogues("test")]))
        np.testing.assert_allclose(t[m][torch.from_numpy(others)].numpy(), 1 / len(store.class_names))
    # text carries the label: its teacher puts more mass on the gold emotion than audio's does
    train_rows = torch.from_numpy(_rows(store, train))
    gold = torch.from_numpy(labels[train_rows.numpy()])
    assert t["text"][train_rows, gold].mean() > t["audio"][train_rows, gold].mean() + 0.1


def test_distillation_is_each_heads_cross_entropy_against_its_teacher_over_real_utterances():
    rng = np.random.default_rng(0)
    teacher = {m: torch.from_numpy(rng.dirichlet([1.0] * 5, 30).astype(np.float32)) for m in ("text", "audio")}
    heads = {m: torch.from_numpy(rng.normal(size=(2, 4, 5)).astype(np.float32)) for m in teacher}
    rows = torch.tensor([[3, 7, 8, 0], [12, 13, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    by_hand = 0.0
    for m in teacher:
        terms = [-(teacher[m][rows[i, j]] * torch.log_softmax(heads[m][i, j], -1)).sum()
                 for i in range(2) for j in range(4) if mask[i, j]]
        by_hand += sum(terms) / len(terms)
    torch.testing.assert_close(distillation(teacher, heads, rows, mask), by_hand)


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_the_teachers_regression_is_the_baselines_solved_in_torch(store, C):
    """Regression: scikit-learn's LogisticRegression(C) (the baselines' model), the same objective
    solved by torch's L-BFGS, so that training need not import scikit-learn."""
    rows = np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in store.dialogues("train")])
    x, y = features_of(store, ("text",), rows), np.asarray(store.labels)[rows]
    ours, theirs = Regression(C).fit(x, y), classifier(BASELINES["logreg_text"], C).fit(x, y)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=5e-3)
    assert (ours.predict(x) == theirs.predict(x)).mean() > 0.99


def test_a_modalitys_teacher_and_its_linear_head_share_one_search_for_C(store, monkeypatch):
    """maln.teacher.chosen: the teacher of modality m takes its C from the search the linear head on m
    keeps (one fit per C, not two), and the head is the fit the search made at that C."""
    import maln.teacher as teacher

    grid, fits_made = [0.01, 1.0], []
    real_fit = Regression.fit
    monkeypatch.setattr(Regression, "fit", lambda self, x, y: fits_made.append(x.shape) or real_fit(self, x, y))
    t = teacher.Teachers(store, ["text", "audio"], grid, torch.device("cpu"), 1.0, "branchwise",
                         linear=[("text",), ("text", "audio")])
    t.fit()
    searches = dict(t.fits)
    assert set(searches) == {("text",), ("audio",), ("text", "audio")}
    # each search fits every C once; the cross-fitted teachers fit FOLDS more per modality
    assert len(fits_made) == 3 * len(grid) + 2 * FOLDS
    weight, bias = t.regression(("text",))
    found = searches[("text",)]
    torch.testing.assert_close(weight[found.classes_], found.w.T.float())
    rows = split_rows(store, "train")
    again = Regression(found.C).fit(features_of(store, ("text",), rows), np.asarray(store.labels)[rows])
    torch.testing.assert_close(weight[found.classes_], again.w.T.float())
    assert (bias[np.setdiff1d(np.arange(len(store.class_names)), found.classes_)] == -30).all()


def test_shared_covariance_is_scikit_learns_shrinkage_lda(store):
    """SharedCovariance: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), the same weights,
    intercepts and posteriors, so that training need not import scikit-learn."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rows = split_rows(store, "train")
    for reads in (("text",), ("text", "audio")):
        x, y = features_of(store, reads, rows), np.asarray(store.labels)[rows]
        ours, theirs = SharedCovariance().fit(x, y), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
        np.testing.assert_allclose(ours.w.numpy().T, theirs.coef_, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(ours.b.numpy(), theirs.intercept_, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=1e-8)


def test_the_linear_head_is_lda_only_where_validation_likelihood_says_so(store, monkeypatch):
    """model.linear_lda: the head is the shrinkage LDA when its validation NLL is the lower, else the
    regression it is without the key."""
    import maln.teacher as teacher

    grid = [0.01]
    plain = teacher.joint_regression(store, ("text",), grid)
    lda = SharedCovariance().fit(features_of(store, ("text",), split_rows(store, "train")),
                                 np.asarray(store.labels)[split_rows(store, "train")])
    for lower, want in ((lambda m: 0.0 if isinstance(m, SharedCovariance) else 1.0, lda.w.T.float()),
                        (lambda m: 1.0 if isinstance(m, SharedCovariance) else 0.0, plain[0][lda.classes_])):
        monkeypatch.setattr(teacher, "_nll", lambda m, x, y, lower=lower: lower(m))
        weight, _ = teacher.joint_regression(store, ("text",), grid, lda=True)
        torch.testing.assert_close(weight[lda.classes_], want)
