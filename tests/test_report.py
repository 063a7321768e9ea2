"""Tables, statistics and figures of `maln aggregate`."""

import json
import math
import shutil

import numpy as np
import pytest

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
    sets = ["study.variants=[full, text_only, visual_only]", "study.seeds=[0, 1]", "train.epochs=2",
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
        run_baselines(load_store(root / "data/features" / dataset), dataset, [0.01, 0.1], root / baseline_path(dataset))
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
    root, params = tiny_study
    rows = (root / "results/tables/protocol.csv").read_text().splitlines()
    header = rows[0].split(",")
    row = dict(zip(header, next(line for line in rows if line.startswith("synthetic-meld,full,")).split(",")))
    curves = []
    for s in (0, 1):
        lines = (root / f"results/runs/synthetic-meld/full/seed{s}/history.csv").read_text().splitlines()
        col = lines[0].split(",").index("test_weighted_f1")
        curves.append([100 * float(line.split(",")[col]) for line in lines[1:]])
        metrics = json.loads((root / f"results/runs/synthetic-meld/full/seed{s}/metrics.json").read_text())
        # the selected epoch's recorded test score is the run's reported one
        assert curves[-1][metrics["best_epoch"] - 1] == pytest.approx(100 * metrics["test"]["weighted_f1"], abs=1e-3)
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
    return Run("d", variant, seed, path, {"class_names": names}, [], gold["test"], np.argmax(probs["test"], 1),
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
    shutil.copytree(root, broken, ignore=shutil.ignore_patterns("features.npz"))
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
    assert "old" not in text and text.startswith("# Title") and text.endswith("rest\n")
    assert "| synthetic-iemocap | full | 2 |" in text and "![Ablations](results/figures/ablation.png)" in text
