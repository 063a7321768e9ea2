"""The baselines: majority class and logistic regressions on the store's splits."""

import json

import numpy as np
import pytest
import yaml

from conftest import run_maln
from maln.baselines import BASELINES, fit
from maln.data.prepare import store_dir
from maln.data.store import load_store
from maln.config import load_params


@pytest.fixture(scope="module")
def store(synthetic_project):
    return load_store(store_dir(load_params(synthetic_project / "params.yaml"), "synthetic-iemocap"))


def test_majority_predicts_the_training_splits_most_frequent_emotion(store):
    r = fit(store, BASELINES["majority"], [1.0])
    train = np.concatenate([store.labels[store.offsets[i]:store.offsets[i + 1]] for i in store.dialogues("train")])
    assert r["class"] == store.class_names[np.bincount(train).argmax()]
    assert set(r["test_predictions"]) == {int(np.bincount(train).argmax())}


def test_regularisation_is_chosen_by_validation_and_ties_go_to_the_stronger(store):
    grid = [1e-3, 0.01, 0.1, 1.0]
    r = fit(store, BASELINES["logreg_text"], grid)
    assert r["C"] in grid and r["modalities"] == ["text"]
    scores = {c: fit(store, BASELINES["logreg_text"], [c])["valid"]["weighted_f1"] for c in grid}
    assert scores[r["C"]] == max(scores.values())
    # C = 1e-8 and 1e-7 shrink every weight to ~0: the same predictions, a tie; the smaller C wins
    tied = [fit(store, BASELINES["logreg_text"], [c])["test_predictions"] for c in (1e-8, 1e-7)]
    assert tied[0] == tied[1]
    assert fit(store, BASELINES["logreg_text"], [1e-7, 1e-8])["C"] == 1e-8


def test_concatenated_regression_uses_every_modality_and_beats_the_majority(store):
    r = fit(store, BASELINES["logreg_all"], [0.003, 0.03])
    assert r["modalities"] == ["text", "audio", "visual"]
    majority = fit(store, BASELINES["majority"], [1.0])
    assert r["test"]["weighted_f1"] > majority["test"]["weighted_f1"] + 0.3


def test_mlp_takes_its_penalty_from_validation_and_is_deterministic(store):
    """mlp_all (issue 21): the context-free non-linear baseline on every modality; alpha from the
    grid by validation WF1, the same predictions at every fit."""
    r = fit(store, BASELINES["mlp_all"], [], mlp_grid=[1.0, 100.0])
    assert r["alpha"] in (1.0, 100.0) and r["modalities"] == ["text", "audio", "visual"] and "C" not in r
    single = {a: fit(store, BASELINES["mlp_all"], [], mlp_grid=[a]) for a in (1.0, 100.0)}
    assert r["valid"]["weighted_f1"] == max(s["valid"]["weighted_f1"] for s in single.values())
    assert r["test_predictions"] == single[r["alpha"]]["test_predictions"]
    majority = fit(store, BASELINES["majority"], [1.0])
    assert r["test"]["weighted_f1"] > majority["test"]["weighted_f1"] + 0.3


def test_the_chain_baseline_decodes_logreg_all_with_a_setting_chosen_on_validation(store):
    """logreg_all_chain: logreg_all's regression (the same C), its posteriors decoded by the training
    split's emotion chain. synthetic-iemocap's emotions persist within a dialogue (speaker
    tendencies), so validation chooses a chain and the decoding lifts validation and test above the
    context-free regression."""
    plain, decoded = fit(store, BASELINES["logreg_all"], [0.01]), fit(store, BASELINES["logreg_all_chain"], [0.01])
    assert decoded["C"] == plain["C"] and decoded["modalities"] == plain["modalities"]
    assert decoded["decoding"]["mix"] > 0
    assert decoded["valid"]["weighted_f1"] > plain["valid"]["weighted_f1"]
    assert decoded["test"]["weighted_f1"] > plain["test"]["weighted_f1"]


def test_cli_writes_every_applicable_baseline(synthetic_project):
    run_maln("baseline", "synthetic-meld", cwd=synthetic_project, check=True)
    out = json.loads((synthetic_project / "results/baselines/synthetic-meld.json").read_text())
    assert list(out["baselines"]) == ["majority", "logreg_text", "logreg_audio", "logreg_all", "mlp_all",
                                      "logreg_all_chain"]  # no visual
    grid = yaml.safe_load((synthetic_project / "params.yaml").read_text())["baselines"]["mlp_alpha"]
    assert out["mlp_alpha_grid"] == sorted(grid) and out["baselines"]["mlp_all"]["alpha"] in grid
    assert len(out["baselines"]["logreg_all"]["test_predictions"]) == out["baselines"]["logreg_all"]["test"]["n"]


def test_the_optimiser_benchmark_refits_the_baseline_itself(store):
    """benchmarks/optimizer_floor.py compares the baselines' L-BFGS fit with Adam's on the same model;
    its torch L-BFGS logistic regression under alpha = 1/C must be sklearn's logreg (same predictions
    on almost every test utterance), or its comparison says nothing about the baseline."""
    import sys

    from builders import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import optimizer_floor as bench

    C = 0.01
    reference = fit(store, BASELINES["logreg_visual"], [C])
    data = bench.Data(store, list(store.class_names), "logreg", ["visual"])
    model = bench.lbfgs(data, seed=0, alpha=1 / C).eval()
    pred = model(data.x["test"]).argmax(-1).numpy()
    agree = np.mean(pred == np.asarray(reference["test_predictions"]))
    assert agree >= 0.98, agree
