"""The committed study: made by the code and parameters of this commit, and meeting the criteria
the model is held to.

The study-level criteria (issue 12's, three seeds at the shipped budget) were checked here by
training their runs again, two minutes of the suite. The default study (`snakemake --cores 4
--resources gpu=1`, README command 1) trains exactly those runs, and `dvc.lock` records which code
and parameters made its results. So the criteria are read from the committed results, after
checking that dvc.lock's record equals this commit's code and parameters: what `dvc status`
would say, without the data (not in git). A change to the code that training imports without the
study rerun and `dvc commit -f` fails the first test; a study whose results break a criterion fails
the others.
"""

import hashlib
import json

import pytest
from ruamel.yaml import YAML  # DVC's YAML reader (YAML 1.2: it writes 3e-05, which PyYAML reads as a string)

from builders import REPO
from maln.model.variants import VARIANTS

STAGES = ("data", "train", "report")


def _load(name: str) -> dict:
    return YAML(typ="safe", pure=True).load((REPO / name).read_text())


def _lock() -> dict:
    return _load("dvc.lock")["stages"]


def _value(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


@pytest.fixture(scope="module")
def metrics():
    return json.loads((REPO / "results/metrics.json").read_text())


def test_the_committed_results_were_made_by_this_commits_code_and_parameters():
    lock, spec, params = _lock(), _load("dvc.yaml")["stages"], _load("params.yaml")
    stale = []
    for stage in STAGES:
        recorded = {d["path"]: d for d in lock[stage]["deps"]}
        declared = [next(iter(d)) if isinstance(d, dict) else d for d in spec[stage]["deps"]]
        assert sorted(recorded) == sorted(declared), f"{stage}: dvc.yaml's deps are not the ones dvc.lock recorded"
        for path, dep in recorded.items():
            if (REPO / path).is_file() and hashlib.md5((REPO / path).read_bytes()).hexdigest() != dep["md5"]:
                stale.append(path)
        for key, value in lock[stage]["params"]["params.yaml"].items():
            if _value(params, key) != value:
                stale.append(f"params.yaml {key}")
    metrics_out = next(o for o in lock["report"]["outs"] if o["path"] == "results/metrics.json")
    if hashlib.md5((REPO / "results/metrics.json").read_bytes()).hexdigest() != metrics_out["md5"]:
        stale.append("results/metrics.json")
    assert not stale, ("the committed study is stale: rerun `snakemake --cores 4 --resources gpu=1`, then "
                       f"`dvc commit -f` (changed since dvc.lock: {sorted(set(stale))})")


def test_every_trained_row_learns_more_than_the_majority_class(metrics):
    """On the datasets where every modality carries label signal (on -noise audio and visual carry
    none). Weighted F1 on the validation split: guessing the training majority class scores a high
    accuracy there (34 % on synthetic-iemocap) but a low WF1 (17 %)."""
    for dataset in ("synthetic-iemocap", "synthetic-meld"):
        rows = metrics[dataset]
        trained = [name for name in rows if name.split("/")[-1] in VARIANTS]  # e.g. paper/full
        assert len(trained) >= 10, (dataset, trained)  # both configurations' variants
        majority = rows["majority"]["valid_wf1_mean"]
        for name in trained:
            assert rows[name]["valid_wf1_mean"] > majority + 3, (dataset, name, rows[name]["valid_wf1_mean"], majority)


def test_the_full_model_earns_its_modalities_and_is_not_hurt_by_noise_ones(metrics):
    """Issue 12's criteria, three seeds: on synthetic-iemocap the full model beats text alone by 3
    WF1 points; on synthetic-iemocap-noise (its dialogues, labels and text, audio and visual pure
    noise) it stays within 1 point of text alone. Trained jointly, as the authors do, it lost 12.6
    points there."""
    wf1 = {(d, v): metrics[d][v]["test_wf1_mean"] for d in ("synthetic-iemocap", "synthetic-iemocap-noise")
           for v in ("full", "text_only")}
    assert wf1["synthetic-iemocap", "full"] >= wf1["synthetic-iemocap", "text_only"] + 3, wf1
    assert wf1["synthetic-iemocap-noise", "full"] >= wf1["synthetic-iemocap-noise", "text_only"] - 1, wf1


def test_the_fusion_earns_its_place_where_the_modalities_interact(metrics):
    """Issue 22's criteria the study meets: on each fusion-rewarding dataset the full model captures
    at least a third of the fusion headroom (mean over seeds); on the controls and the noise
    dataset it stays within 1 point of the trained late fusion."""
    for dataset in ("synthetic-iemocap-interaction", "synthetic-meld-nuisance"):
        assert metrics[dataset]["full"]["headroom_share_mean"] >= 0.33, dataset
        alone = [f"{v.split('_')[0]}_context" for v in metrics[dataset] if v.endswith("_only")]
        assert len(alone) >= 2 and all(r in metrics[dataset]["oracle"] for r in alone), dataset  # each one's ceiling
    for dataset in ("synthetic-iemocap", "synthetic-iemocap-noise", "synthetic-meld"):
        rows = metrics[dataset]
        assert rows["full"]["test_wf1_mean"] >= rows["late_fusion"]["test_wf1_mean"] - 1, dataset
