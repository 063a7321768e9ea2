"""The workflow with the real DVC on a tiny study: repro twice, status after a code edit, a report
that keeps committed results, commit after a direct Snakemake run, push/pull, an experiment and,
made a branch, its metrics and params diff (Snakemake's side: tests/test_workflow.py)."""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from workflow_helpers import copy_repo, dvc, edited, git, job_stats, make_tiny, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("dvcrepo"))
    # with the paper's configuration too: its runs go through Snakemake and DVC as the recommended ones do
    make_tiny(root, variants=("full", "text_only"), seeds=(0,), epochs=2, datasets=("synthetic-iemocap",),
              configurations=("recommended", "paper"))
    git(root, "init", "-q", "-b", "A")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tiny study")
    first = dvc(root, "repro")
    return root, first


def test_dvc_repro_runs_everything_then_nothing(dvc_repo):
    root, first = dvc_repo
    assert "Running stage 'data'" in first.stdout and "Running stage 'report'" in first.stdout
    assert (root / "results/metrics.json").is_file() and (root / "dvc.lock").is_file()
    second = dvc(root, "repro")
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout or "didn't change" in second.stdout
    status = dvc(root, "status")
    assert "up to date" in status.stdout
    # a run's clock times change on every rerun: kept out of the versioned run folder, so rerunning
    # the same study leaves dvc.lock as it was (the other files are byte-identical: test_train.py)
    timing = next((root / "results/runs").glob("*/*/seed0/timing.json")).relative_to(root)
    assert str(timing) in dvc(root, "check-ignore", str(timing)).stdout


def test_the_papers_configuration_trains_beside_the_recommended_one_with_labelled_rows(dvc_repo):
    root, _ = dvc_repo
    runs = root / "results/runs/synthetic-iemocap"
    paper = json.loads((runs / "paper/full/seed0/metrics.json").read_text())
    recommended = json.loads((runs / "full/seed0/metrics.json").read_text())
    assert (paper["configuration"], paper["variant"], recommended["configuration"]) == ("paper", "full", "recommended")
    assert (paper["config"]["model"]["training"], recommended["config"]["model"]["training"]) == ("joint", "branchwise")
    assert paper["config"]["model"]["adversary"] == "reversal" and paper["config"]["train"]["grad_clip"] == 0
    assert json.loads((runs / "paper/text_only/seed0/metrics.json").read_text())["variant"] == "text_only"
    main = (root / "results/tables/main.md").read_text()
    assert "| synthetic-iemocap | paper/full | 1 |" in main and "| synthetic-iemocap | paper/text_only | 1 |" in main
    with open(root / "results/tables/ablation.csv") as f:
        against = {r["variant"]: r["reference"] for r in csv.DictReader(f)}
    # an ablation is read against the full model of its own configuration, paper/full against full
    assert (against["text_only"], against["paper/text_only"], against["paper/full"]) == ("full", "paper/full", "full")
    assert "paper/full" in json.loads((root / "results/metrics.json").read_text())["synthetic-iemocap"]


def test_dvc_status_reports_the_stages_whose_imported_code_changed(dvc_repo):
    root, _ = dvc_repo
    with edited(root / "maln/combination.py"):
        status = dvc(root, "status").stdout
    assert "train:" in status and "report:" in status and "data:" not in status, status
    assert "maln/combination.py" in status
    with edited(root / "maln/report/figures.py"):
        status = dvc(root, "status").stdout
    assert "report:" in status and "train:" not in status and "data:" not in status, status
    assert "up to date" in dvc(root, "status").stdout


def test_dvc_repro_of_the_report_keeps_committed_results_it_does_not_make(dvc_repo):
    """The tiny study has no sweep; a committed sweep table and figure must survive the report stage."""
    root, _ = dvc_repo
    kept = {root / "results/tables/sweep.md": b"| a committed sweep |\n", root / "results/figures/sweep.png": b"\x89PNG"}
    for path, data in kept.items():
        path.write_bytes(data)
    try:
        dvc(root, "repro", "--force", "--single-item", "report")
        assert all(path.read_bytes() == data for path, data in kept.items())
        assert (root / "results/tables/main.md").is_file()
    finally:
        for path in kept:
            path.unlink(missing_ok=True)
        dvc(root, "commit", "-f")


def test_direct_snakemake_run_reproduces_the_recorded_outputs_and_dvc_commit_records_a_change(dvc_repo):
    root, _ = dvc_repo
    shutil.rmtree(root / "results/runs/synthetic-iemocap/text_only")
    # `python -m snakemake`, where dvc repro ran the `snakemake` script (whose first line says
    # python3): the jobs' commands must not differ by the interpreter's spelling, or every job reruns
    python = Path(sys.executable).with_name("python")
    out = run([str(python if python.exists() else sys.executable), "-m", "snakemake", "--cores", "2"], root)
    assert job_stats(out) == {"train_seed0": 1, "aggregate": 1, "all": 1}, job_stats(out)
    # the retrained run equals the recorded one in every versioned byte (its clock is in timing.json)
    assert "up to date" in dvc(root, "status").stdout
    extra = root / "results/runs/synthetic-iemocap/text_only/seed0/note.txt"
    extra.write_text("an output changed outside DVC\n")
    assert "changed outs" in dvc(root, "status").stdout
    dvc(root, "commit", "-f")
    assert "up to date" in dvc(root, "status").stdout
    extra.unlink()
    dvc(root, "commit", "-f")
    assert "up to date" in dvc(root, "status").stdout


def test_dvc_push_and_pull_round_trip_data_and_checkpoints(dvc_repo, tmp_path):
    root, _ = dvc_repo
    dvc(root, "remote", "add", "-d", "-f", "local", str(tmp_path / "remote"))
    model = root / "results/runs/synthetic-iemocap/full/seed0/model.pt"
    before = {p: p.read_bytes() for p in (model, root / "data/features/synthetic-iemocap/text.npy")}
    dvc(root, "push")
    for path in ("data/raw", "data/features", "results/runs", ".dvc/cache"):
        shutil.rmtree(root / path)
    assert not model.exists()
    dvc(root, "pull")
    assert {p: p.read_bytes() for p in before} == before


def test_an_experiment_shows_its_metrics_and_as_a_branch_diffs_against_the_baseline(dvc_repo):
    """Two DVC routes to compare a change, on one retraining: `dvc exp run -S` (an experiment; `dvc
    exp show` tabulates them, the route to a sweep) and the experiment made a branch (`dvc exp
    branch`), whose metrics and params `dvc metrics diff` and `dvc params diff` compare with the
    baseline branch's."""
    root, _ = dvc_repo
    git(root, "add", "-A")
    git(root, "commit", "-qm", "results on A")
    out = dvc(root, "exp", "run", "-S", "train.lr=0.001", "-n", "lr-1e-3")
    assert "Running stage 'train'" in out.stdout and "Running stage 'data'" not in out.stdout
    rows = list(csv.DictReader(io.StringIO(dvc(root, "exp", "show", "--csv").stdout)))
    row = next(r for r in rows if r["Experiment"] == "lr-1e-3")
    assert float(row["train.lr"]) == 0.001
    # the experiment's own metric (its run leaves it in the workspace), not a placeholder
    shown = json.loads((root / "results/metrics.json").read_text())["synthetic-iemocap"]["full"]["test_wf1_mean"]
    assert float(row["synthetic-iemocap.full.test_wf1_mean"]) == pytest.approx(shown, abs=1e-6)

    dvc(root, "exp", "branch", "lr-1e-3", "B")
    metrics = dvc(root, "metrics", "diff", "--all", "A", "B").stdout  # --all: unchanged metrics listed too
    assert "synthetic-iemocap.full.test_wf1_mean" in metrics
    changed = [line for line in metrics.splitlines() if "test_wf1_mean" in line]
    assert any(float(line.split()[-1]) != 0 for line in changed if line.split()[-1] not in ("-", "diff")), metrics
    params_diff = dvc(root, "params", "diff", "A", "B").stdout
    assert "train.lr" in params_diff and "0.003" in params_diff and "0.001" in params_diff
