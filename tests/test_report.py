"""Tables, statistics and figures of `maln aggregate`."""

import json
import math
import shutil

import numpy as np
import pytest

from builders import write_params
from maln.config import load_params
from maln.errors import MalnError
from maln.report.aggregate import aggregate, data_note, outputs, update_readme
from maln.report.stats import bootstrap_delta_wf1, mean_std, paired_t_test, weighted_f1_from_counts
from maln.train import Run


def test_mean_and_sample_std_by_hand():
    m, s = mean_std([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and s == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(mean_std([7.0])[1])


def test_paired_t_test_by_hand():
    # differences 1, 2, -1: mean 2/3, sd sqrt(7/3), t = (2/3) / (sd / sqrt 3); df = 2, where the
    # t distribution's CDF is 1/2 + t / (2 sqrt(2 + t^2))
    t, p = paired_t_test([1, 2, 3], [0, 0, 4])
    t_hand = (2 / 3) / (math.sqrt(7 / 3) / math.sqrt(3))
    assert t == pytest.approx(t_hand)
    assert p == pytest.approx(2 * (0.5 - t_hand / (2 * math.sqrt(2 + t_hand**2))))
    assert all(math.isnan(x) for x in paired_t_test([1], [0]))


def test_weighted_f1_from_counts_by_hand():
    # class 0: tp 2, support 3, predicted 2 -> F1 0.8; class 1: tp 1, support 1, predicted 2 -> 2/3
    assert weighted_f1_from_counts(np.array([[2, 1], [0, 1]])) == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)


def test_bootstrap_interval():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 400)
    good = np.where(rng.random(400) < 0.8, gold, (gold + 1) % 3)
    bad = np.where(rng.random(400) < 0.5, gold, (gold + 1) % 3)
    delta, lo, hi = bootstrap_delta_wf1(gold, [good], [good], 3, n_boot=200)
    assert delta == 0 and lo == 0 and hi == 0
    delta, lo, hi = bootstrap_delta_wf1(gold, [good, good], [bad, bad], 3, n_boot=500, seed=1)
    assert 0 < lo < delta < hi
    assert (delta, lo, hi) == bootstrap_delta_wf1(gold, [good, good], [bad, bad], 3, n_boot=500, seed=1)


def test_dialogue_bootstrap_is_wider_than_the_utterance_one_when_dialogues_are_correlated():
    # 40 dialogues of 25 utterances; variant a is right on a whole dialogue or wrong on all of it,
    # so its errors come in blocks: resampling utterances as if independent understates the spread
    rng = np.random.default_rng(0)
    dialogue = np.repeat(np.arange(40), 25)
    gold = rng.integers(0, 3, len(dialogue))
    right = np.repeat(rng.random(40) < 0.6, 25)
    a = np.where(right, gold, (gold + 1) % 3)
    b = np.where(rng.random(len(gold)) < 0.6, gold, (gold + 1) % 3)
    _, lo_u, hi_u = bootstrap_delta_wf1(gold, [a], [b], 3, n_boot=400, seed=1)
    _, lo_d, hi_d = bootstrap_delta_wf1(gold, [a], [b], 3, n_boot=400, seed=1, clusters=dialogue)
    assert hi_d - lo_d > 2 * (hi_u - lo_u)


def test_published_numbers_are_rows_of_their_own_with_features_and_protocol():
    from maln.report.published import for_layout
    from maln.report.runs import Study
    from maln.report.tables import main_table

    assert for_layout("synthetic-iemocap") == []  # synthetic data: nothing to compare with
    from maln.study import Cell

    study = Study([Cell("iemocap", "full", True)], {}, {})
    rows = main_table(study, {"iemocap": for_layout("conv-emotion-iemocap")})
    sdt = next(r for r in rows if "SDT" in r["variant"])
    assert sdt["kind"] == "published" and sdt["test_wf1_mean"] == 74.08
    assert "RoBERTa" in sdt["variant"] and "test split" in sdt["variant"]
    assert {r["dataset"] for r in rows} == {"iemocap"}
    assert all("MELD" not in r["variant"] for r in rows)


@pytest.fixture(scope="module")
def tiny_study(synthetic_project, tmp_path_factory):
    """A two-variant, two-seed study on the synthetic data, in a copy of the prepared project."""
    root = tmp_path_factory.mktemp("report")
    shutil.copytree(synthetic_project / "data", root / "data")
    shutil.copy(synthetic_project / "params.yaml", root / "params.yaml")
    sets = ["study.configurations=[recommended]", "study.variants=[full, text_only, visual_only]", "study.seeds=[0, 1]",
            "train.epochs=2",
            "report.bootstrap=200", "report.tsne_utterances=40"]
    params = load_params(root / "params.yaml", sets)
    for dataset, variant in [("synthetic-iemocap", "full"), ("synthetic-iemocap", "text_only"),
                             ("synthetic-iemocap", "visual_only"), ("synthetic-meld", "full"), ("synthetic-meld", "text_only")]:
        run = Run(params, dataset, variant, threads=1)
        for seed in (0, 1):
            run.train_seed(seed, root / f"results/runs/{dataset}/{variant}/seed{seed}", progress=False)
    from maln.baselines import run_baselines
    from maln.data.store import load_store
    from maln.study import baseline_path

    for dataset in ("synthetic-iemocap", "synthetic-meld"):
        run_baselines(load_store(root / "data/features" / dataset), dataset, [0.01, 0.1], root / baseline_path(dataset), [10.0])
    aggregate(params)
    return root, params


def test_aggregate_writes_every_table_and_figure(tiny_study):
    root, params = tiny_study
    for path in outputs():
        assert (root / path).is_file() and (root / path).stat().st_size > 0, path
    for fig in (root / "results/figures").glob("*.png"):
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((root / "results/metrics.json").read_text())
    assert metrics["synthetic-iemocap"]["full"]["n"] == 2
    assert "visual_only" not in metrics["synthetic-meld"]
    main = (root / "results/tables/main.md").read_text()
    assert "| synthetic-meld | visual_only | – | n/a | n/a | n/a |" in main
    ablation = (root / "results/tables/ablation.csv").read_text().splitlines()
    header = ablation[0].split(",")
    row = dict(zip(header, next(line for line in ablation if line.startswith("synthetic-iemocap,text_only")).split(",")))
    # the row's numbers are those of the runs: the delta of the seeds' WF1, the interval recomputed
    # by resampling the test dialogues with the report's seed
    runs = {v: [json.loads((root / f"results/runs/synthetic-iemocap/{v}/seed{s}/metrics.json").read_text())
                for s in (0, 1)] for v in ("full", "text_only")}
    delta = np.mean([100 * (t["test"]["weighted_f1"] - f["test"]["weighted_f1"]) for t, f in zip(runs["text_only"], runs["full"])])
    assert float(row["delta_wf1_mean"]) == pytest.approx(delta, abs=1e-3)
    preds = {v: [np.genfromtxt(root / f"results/runs/synthetic-iemocap/{v}/seed{s}/predictions.csv", delimiter=",",
                               dtype=str, skip_header=1) for s in (0, 1)] for v in ("full", "text_only")}
    names = runs["full"][0]["class_names"]
    index = {n: i for i, n in enumerate(names)}
    gold = np.array([index[g] for g in preds["full"][0][:, 3]])
    _, lo, hi = bootstrap_delta_wf1(gold, [np.array([index[p] for p in r[:, 4]]) for r in preds["text_only"]],
                                    [np.array([index[p] for p in r[:, 4]]) for r in preds["full"]], len(names),
                                    200, 0.95, 0, preds["full"][0][:, 0])
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((100 * lo, 100 * hi), abs=1e-3)
    assert float(row["ci_low"]) < float(row["ci_high"])
    assert "\\toprule" in (root / "results/tables/main.tex").read_text()
    assert (root / "results/plots/curves/synthetic-meld--full.csv").read_text().startswith("epoch,")


def test_protocol_table_reads_the_recorded_test_curve(tiny_study):
    """A model kept at one epoch (text alone) reports that epoch's recorded test score; a branchwise one
    keeps each part at its own epoch (maln/selection.py) and names them, its chosen epoch the latest."""
    root, params = tiny_study
    rows = (root / "results/tables/protocol.csv").read_text().splitlines()
    header = rows[0].split(",")
    row = dict(zip(header, next(line for line in rows if line.startswith("synthetic-meld,text_only,")).split(",")))
    curves = []
    for s in (0, 1):
        lines = (root / f"results/runs/synthetic-meld/text_only/seed{s}/history.csv").read_text().splitlines()
        col = lines[0].split(",").index("test_weighted_f1")
        curves.append([100 * float(line.split(",")[col]) for line in lines[1:]])
        metrics = json.loads((root / f"results/runs/synthetic-meld/text_only/seed{s}/metrics.json").read_text())
        # the selected epoch's recorded test score is the run's reported one
        assert curves[-1][metrics["best_epoch"] - 1] == pytest.approx(100 * metrics["test"]["weighted_f1"], abs=1e-3)
        assert "selected_epochs" not in metrics
        full = json.loads((root / f"results/runs/synthetic-meld/full/seed{s}/metrics.json").read_text())
        assert set(full["selected_epochs"]) == {"fusion", "text", "audio"}
        assert full["best_epoch"] == max(full["selected_epochs"].values())
    assert float(row["best_test_mean"]) == pytest.approx(np.mean([max(c) for c in curves]), abs=1e-3)
    assert float(row["last_mean"]) == pytest.approx(np.mean([c[-1] for c in curves]), abs=1e-3)
    assert float(row["inflation_mean"]) >= 0


def _run_with_probs(tmp_path, variant, seed, probs: dict, gold: dict):
    """A Run whose prediction files hold the given probabilities (split -> [N, C])."""
    import csv

    from maln.report.runs import Run

    path = tmp_path / variant / f"seed{seed}"
    path.mkdir(parents=True)
    names = ["a", "b", "c"]
    for split, file in (("test", "predictions.csv"), ("valid", "valid_predictions.csv")):
        with open(path / file, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dialogue_id", "position", "speaker", "gold", "predicted", *(f"p_{c}" for c in names)])
            for i, (g, p) in enumerate(zip(gold[split], probs[split])):
                w.writerow([f"d{i // 5}", i % 5, 0, names[g], names[int(np.argmax(p))], *p])
    metrics = {"class_names": names, **{split: {"n": len(gold[split])} for split in gold}}
    return Run("d", variant, seed, path, metrics, [], gold["test"], np.argmax(probs["test"], 1),
               np.array([f"d{i // 5}" for i in range(len(gold["test"]))]))


def test_late_fusion_gives_a_modality_that_only_adds_noise_no_weight(tmp_path):
    from maln.report.ensemble import late_fusion
    from maln.report.runs import Study
    from maln.study import Cell

    rng = np.random.default_rng(0)
    gold = {s: rng.integers(0, 3, 300) for s in ("valid", "test")}

    def informative(g):  # right 70 % of the time, confidently
        p = np.full((len(g), 3), 0.1)
        hit = np.where(rng.random(len(g)) < 0.7, g, rng.integers(0, 3, len(g)))
        p[np.arange(len(g)), hit] = 0.8
        return p

    noise = {s: rng.dirichlet([0.3] * 3, 300) for s in gold}  # confident and meaningless
    text = _run_with_probs(tmp_path, "text_only", 0, {s: informative(gold[s]) for s in gold}, gold)
    audio = _run_with_probs(tmp_path, "audio_only", 0, noise, gold)
    study = Study([Cell("d", "text_only", True), Cell("d", "audio_only", True)],
                  {("d", "text_only"): [text], ("d", "audio_only"): [audio]})
    fused = late_fusion(study, "d", np.log(np.full(3, 1 / 3)))  # a flat prior: a plain product of experts
    assert fused.seeded and [f["seed"] for f in fused.fits] == [0]
    assert "audio 0" in fused.label  # the noise modality got weight 0 on validation
    np.testing.assert_array_equal(fused.fits[0]["pred"], np.argmax(text.log_probs("test")[1], 1))


def test_main_table_numbers_are_the_runs_mean_and_std(tiny_study):
    root, params = tiny_study
    wf1 = [100 * json.loads((root / f"results/runs/synthetic-meld/full/seed{s}/metrics.json").read_text())
           ["test"]["weighted_f1"] for s in (0, 1)]
    metrics = json.loads((root / "results/metrics.json").read_text())
    assert metrics["synthetic-meld"]["full"]["test_wf1_mean"] == round(float(np.mean(wf1)), 2)
    assert metrics["synthetic-meld"]["full"]["test_wf1_std"] == round(float(np.std(wf1, ddof=1)), 2)


def test_missing_runs_are_listed(tiny_study, tmp_path):
    root, params = tiny_study
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    shutil.rmtree(broken / "results/runs/synthetic-meld/text_only/seed1")
    shutil.rmtree(broken / "results/runs/synthetic-iemocap/full/seed0")
    with pytest.raises(MalnError) as e:
        aggregate(load_params(broken / "params.yaml", params.overrides))
    text = str(e.value)
    assert "2 run(s) of the study have no results" in text
    assert "results/runs/synthetic-meld/text_only/seed1" in text and "results/runs/synthetic-iemocap/full/seed0" in text


def test_readme_section_is_replaced(tiny_study, tmp_path):
    root, params = tiny_study
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- maln:results:start -->\nold\n<!-- maln:results:end -->\n\nrest\n")
    assert update_readme(readme, root, data_note(params))
    text = readme.read_text()
    assert "\nold\n" not in text and text.startswith("# Title") and text.endswith("rest\n")
    assert "| dataset | full |" in text and "![Ablations](results/figures/ablation.png)" in text
    metrics = json.loads((root / "results/metrics.json").read_text())
    full = metrics["synthetic-iemocap"]["full"]
    assert f"| synthetic-iemocap | {full['test_wf1_mean']:.2f} ± {full['test_wf1_std']:.2f}" in text
    assert len(text.split("<!-- maln:results:start -->")[1].split("<!-- maln:results:end -->")[0].splitlines()) < 20


# -- issue 21: oracle rows, headroom share, linear floors (built from scores, no training) ----------

def _scored_study(wf1: dict, oracle: dict | None = None):
    """A Study of dataset 'd' from test WF1s (%): variant -> [per seed] (MALN runs, seeds 0..), or
    baseline name -> value (deterministic) or [per seed] (late_fusion)."""
    from maln.report.runs import Baseline, Run, Study
    from maln.study import Cell

    def scores(v):
        return {"weighted_f1": v / 100, "accuracy": v / 100, "macro_f1": v / 100}

    modalities = {"full": ["text", "audio"], "text_only": ["text"], "audio_only": ["audio"]}
    cells, runs, baselines = [], {}, []
    for name, values in wf1.items():
        if name in modalities:
            cells.append(Cell("d", name, True))
            runs[("d", name)] = [Run("d", name, s, None, {"test": scores(v), "valid": scores(v), "class_names": ["a", "b"],
                                                          "modalities": modalities[name]}, [], np.zeros(4, int),
                                     np.zeros(4, int), np.zeros(4)) for s, v in enumerate(values)]
        else:
            seeded = isinstance(values, list)
            fits = [{"seed": s if seeded else None, "test": scores(v), "valid": scores(v), "pred": np.zeros(4, int)}
                    for s, v in enumerate(values if seeded else [values])]
            baselines.append(Baseline("d", name, f"{name} (baseline)", fits))
    study = Study(cells, runs, {"d": baselines})
    if oracle:
        study.oracles = {"d": {r: {"weighted_f1": v / 100, "accuracy": v / 100} for r, v in oracle.items()}}
    return study


ORACLE = {"joint_context": 80.0, "joint_utterance": 70.0, "late_context": 60.0, "late_utterance": 50.0}


def test_headroom_share_is_the_gain_over_trained_late_fusion_over_the_oracles_gap_per_seed():
    from scipy import stats

    from maln.report.references import shares

    study = _scored_study({"full": [58.0, 64.0, 62.0], "text_only": [50.0, 50.0, 50.0], "logreg_all": 57.0,
                           "late_fusion": [56.0, 60.0, 58.0]}, ORACLE)
    out = shares(study, "d", 0.95)
    per_seed = [(58 - 56) / 20, (64 - 60) / 20, (62 - 58) / 20]  # headroom: 80 - 60 = 20 points
    half = stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / np.sqrt(3)
    assert out["full"]["headroom_share_mean"] == pytest.approx(np.mean(per_seed))
    assert (out["full"]["headroom_share_low"], out["full"]["headroom_share_high"]) == pytest.approx(
        (np.mean(per_seed) - half, np.mean(per_seed) + half))
    # a deterministic baseline against every seed of the late fusion; the late fusion itself: 0
    assert out["logreg_all"]["headroom_share_mean"] == pytest.approx(np.mean([(57 - v) / 20 for v in (56, 60, 58)]))
    assert out["late_fusion"]["headroom_share_mean"] == 0 and out["late_fusion"]["headroom_share_n"] == 3
    # no oracle, or no headroom (a control dataset): no share at all
    assert shares(_scored_study({"full": [58.0], "late_fusion": [56.0]}), "d", 0.95) == {}
    control = {**ORACLE, "late_context": 80.0}
    assert shares(_scored_study({"full": [58.0], "late_fusion": [56.0]}, control), "d", 0.95) == {}


def test_main_table_shows_oracle_rows_shares_and_flags_networks_below_their_linear_floor(tmp_path):
    from maln.report.aggregate import summary
    from maln.report.references import floor_log
    from maln.report.tables import write_main

    study = _scored_study({"full": [58.0, 62.0], "text_only": [52.0, 54.0], "audio_only": [40.0, 42.0],
                           "logreg_text": 50.0, "logreg_audio": 45.0, "logreg_all": 61.0, "mlp_all": 63.0,
                           "late_fusion": [56.0, 58.0]}, ORACLE)
    write_main(tmp_path, study, 0.95, "Data: test.")
    md = (tmp_path / "main.md").read_text()
    assert "| d | oracle: joint Bayes rule, with context | – | 80.00 | 80.00 | n/a | n/a |" in md
    assert "| d | oracle: best late fusion, without context | – | 50.00 | 50.00 | n/a | n/a |" in md
    assert "Headroom share" in md and "Student-t" in md
    # full: 60 mean against logreg_all's 61 -> flagged; audio_only 41 < logreg_audio 45 -> flagged;
    # text_only 53 > logreg_text 50 -> not
    assert "| d | full | 2 | 60.00 ± 2.83 | 60.00 ± 2.83 † | 60.00 ± 2.83 | +0.15 [" in md
    assert "| d | audio_only | 2 | 41.00 ± 1.41 | 41.00 ± 1.41 † |" in md
    assert "| d | text_only | 2 | 53.00 ± 1.41 | 53.00 ± 1.41 | " in md
    assert "d/full (below logreg_all), d/audio_only (below logreg_audio)" in md
    assert "$^\\dagger$" in (tmp_path / "main.tex").read_text()
    assert floor_log(study) == [
        "floor: d/full test WF1 60.00 is below logreg_all (61.00), its context-free linear baseline on the same inputs",
        "floor: d/audio_only test WF1 41.00 is below logreg_audio (45.00), its context-free linear baseline on the "
        "same inputs"]
    metrics = summary(study)["d"]
    assert metrics["oracle"]["joint_context"] == {"test_wf1": 80.0, "test_acc": 80.0}
    assert metrics["oracle"]["headroom_wf1"] == 20.0
    assert metrics["full"]["headroom_share_mean"] == pytest.approx(0.15) and metrics["full"]["below_linear_floor"] is True
    assert metrics["full"]["linear_floor_gap"] == -1.0 and metrics["text_only"]["below_linear_floor"] is False
    assert metrics["mlp_all"]["headroom_share_mean"] == pytest.approx((63 - 57) / 20)
    # without an oracle: no oracle rows, no share column, no oracle in metrics.json
    plain = _scored_study({"full": [58.0, 62.0], "logreg_all": 61.0, "late_fusion": [56.0, 58.0]})
    write_main(tmp_path / "plain", plain, 0.95, "Data: test.")
    md = (tmp_path / "plain" / "main.md").read_text()
    assert "oracle" not in md and "Headroom share" not in md and "†" in md
    assert "oracle" not in summary(plain)["d"] and "headroom_share_mean" not in summary(plain)["d"]["full"]


def test_oracle_files_are_read_for_synthetic_datasets_that_have_one(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from maln.report.references import load_oracles, oracle_files

    params = load_params(write_params(tmp_path, {
        "fused": {"layout": "synthetic-iemocap", "synthetic": {
            "kind": "interaction", "dialogues": 8, "test_fraction": 0.25, "length": [4, 4], "stay": 0.3,
            "dims": {"text": 2, "audio": 2, "visual": 2}, "signal": {"text": 1, "audio": 1, "visual": 1}, "seed": 0,
            "interaction": {"inverted": "text", "revealed_by": "audio", "probability": 0.5, "reveal": 1.0}}},
        "styled": {"layout": "synthetic-iemocap", "synthetic": {
            "dialogues": 8, "test_fraction": 0.25, "length": [4, 4], "dims": {"text": 2, "audio": 2, "visual": 2},
            "signal": {"text": 1, "audio": 1, "visual": 1}, "seed": 0}}}, study_datasets=["fused", "styled"]))
    assert {d: p.relative_to(tmp_path).as_posix() for d, p in oracle_files(params).items()} == {
        "fused": "data/raw/fused.oracle.npz"}
    with pytest.raises(MalnError, match="data/raw/fused.oracle.npz"):
        load_oracles(params)
    # the spec's format: dialogue a (2 training rows), dialogue b (6 test rows) of 2 classes; the
    # joint rule gets all, late fusion 4 of 6 test rows
    label = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    right, wrong = np.eye(2)[label], np.eye(2)[1 - label]
    late = np.where(np.arange(8)[:, None] < 4, wrong, right)  # wrong on the 2 training and 2 test rows
    (tmp_path / "data/raw").mkdir(parents=True)
    np.savez(tmp_path / "data/raw/fused.oracle.npz", dialogue=np.array(["a"] * 2 + ["b"] * 6),
             position=np.array([0, 1, 5, 4, 3, 2, 1, 0]), label=label.astype(np.int64),
             split=np.array(["train"] * 2 + ["test"] * 6), joint_context=right, joint_utterance=right,
             late_context=late, late_utterance=late, class_names=np.array(["x", "y"]))

    def store(ids, labels, names=("x", "y")):  # what the check reads of a store: its test split
        return SimpleNamespace(class_names=list(names), labels=np.asarray(labels), offsets=np.array([0, len(labels)]),
                               dialogue_ids=ids, dialogues=lambda split: np.array([0]))

    b_in_order = label[2:][::-1]  # rows sorted by position
    monkeypatch.setattr("maln.data.store.load_store", lambda *a, **k: store(["b"], b_in_order))
    scores = load_oracles(params)["fused"]
    assert scores["test_labels"] == [3, 3]
    assert scores["joint_context"]["accuracy"] == 1.0 and scores["late_context"]["accuracy"] == pytest.approx(4 / 6)
    # an oracle of another split, another draw or another class list than the store's is refused
    for wrong_store, problem in ((store(["c"], b_in_order), "test dialogues are not its store's test split"),
                                 (store(["b"], label[2:]), "emotions differ from the store's in 1 test dialogue"),
                                 (store(["b"], b_in_order, ("y", "x")), "classes")):
        monkeypatch.setattr("maln.data.store.load_store", lambda *a, _s=wrong_store, **k: _s)
        with pytest.raises(MalnError, match=problem):
            load_oracles(params)
    # a pinned oracle must be the pinned file
    params.data["datasets"]["fused"]["oracle"] = {"path": "data/raw/fused.oracle.npz", "sha1": "0" * 40}
    with pytest.raises(MalnError, match="not the pinned oracle"):
        load_oracles(params)
    # an oracle of another draw than the runs' is refused
    from maln.report.references import check_oracles

    study = _scored_study({"full": [58.0]})  # 4 test utterances, all of class 0
    study.oracles = {"d": scores}
    with pytest.raises(MalnError, match="not its runs'"):
        check_oracles(study)
    study.oracles = {"d": {**scores, "test_labels": [4, 0]}}
    check_oracles(study)


def test_tsne_layouts_in_parallel_processes_equal_the_serial_ones():
    from maln.report.tsne import _embed, _embed_all

    rng = np.random.default_rng(0)
    sets = {name: rng.normal(size=(60, 8)).astype(np.float32) for name in ("a", "b", "c")}
    parallel = _embed_all(sets, seed=0, workers=2)
    for name, points in sets.items():
        assert np.array_equal(parallel[name], _embed(points, 0))
