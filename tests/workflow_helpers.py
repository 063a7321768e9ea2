"""A tiny study in a temporary copy of the repository, for tests that run the real Snakemake and
DVC (no mocks): the same Snakefile, rules, profiles, dvc.yaml and params.yaml, made small."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from builders import REPO

TINY = {
    "synthetic-iemocap": {"dialogues": 16, "length": [4, 10]},
    "synthetic-meld": {"dialogues": 24, "length": [1, 8]},
}


def repo_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore (what a commit would hold)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    # a fresh start: no results and no lock file (the tiny study's parameters differ anyway)
    return [f for f in out if f and not f.startswith(("tests/", "results/")) and f != "dvc.lock"
            and ((REPO / f).exists() or (REPO / f).is_symlink())]


def copy_repo(dest: Path) -> Path:
    for f in repo_files():
        src, dst = REPO / f, dest / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


def make_tiny(root: Path, variants=("full", "text_only", "visual_only"), seeds=(0, 1), epochs=2,
              datasets=tuple(TINY), configurations=("recommended",), **study) -> None:
    """Shrink params.yaml in `root`: small synthetic data, few epochs, a few variants, seeds and
    datasets (of TINY), the recommended configuration only unless asked, a small report. Learning
    rates are left to train.lr, so a change of train.lr reaches the runs."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["budgets"]["synthetic"]["train"] = {"epochs": epochs, "batch_dialogues": 8}
    # the report's resampling and layouts at the schema's small end: each rerun of the report
    # costs seconds less, and nothing here reads an interval or a layout's detail
    params["report"].update(bootstrap=100, tsne_utterances=20)
    for name, synth in TINY.items():
        entry = params["datasets"][name]
        entry["synthetic"].update(synth)
        entry.pop("overrides", None)
    params["study"].update(datasets=list(datasets), configurations=list(configurations), variants=list(variants),
                           seeds=list(seeds), **{"seeds_per_job": 1, **study})
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _no_cluster_bin() -> str:
    """A folder whose `scontrol` fails at once. Snakemake imports every installed executor plugin,
    and the SLURM one (a test dependency) asks `scontrol show config` at import time; on a machine
    with SLURM's client but no controller running (CI installs SLURM for tests/test_slurm.py) that
    question waits 9 s, on every Snakemake start. Runs that are not addressed to SLURM get this
    answer instead; the plugin treats a failing scontrol as "no cluster", as it does a missing one."""
    folder = Path(tempfile.gettempdir()) / f"maln-tests-no-cluster-{os.getuid()}"
    shim = folder / "scontrol"
    if not shim.exists():
        folder.mkdir(exist_ok=True)
        tmp = folder / f".scontrol.{os.getpid()}"
        tmp.write_text("#!/bin/sh\necho 'no SLURM cluster in this test' >&2\nexit 1\n")
        tmp.chmod(0o755)
        tmp.replace(shim)
    return str(folder)


def env(slurm: bool = False, **extra) -> dict:
    """The test interpreter's bin folder first on PATH (dvc.yaml calls `snakemake`), git identity
    set; unless `slurm`, SLURM's scontrol answers "no cluster" at once (see _no_cluster_bin)."""
    bins = [str(Path(sys.executable).parent)] + ([] if slurm else [_no_cluster_bin()])
    return {**os.environ, "PATH": os.pathsep.join(bins + [os.environ.get("PATH", "")]),
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org", "PYTHONUNBUFFERED": "1", **extra}


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 600, slurm: bool = False,
        **extra_env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(slurm, **extra_env))
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def snakemake(root: Path, *args, check=True, timeout=600, slurm=False, **extra_env):
    return run([sys.executable, "-m", "snakemake", *args], root, check, timeout, slurm, **extra_env)


def job_stats(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> jobs) from a run's or a dry run's output; {} if none."""
    lines = (proc.stdout + proc.stderr).splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Job stats:")), None)
    if start is None:
        return {}
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("total"))
    return {line.split()[0]: int(line.split()[1]) for line in lines[start + 3:end]}


def dvc(root: Path, *args, check=True):
    return run([sys.executable, "-m", "dvc", *args], root, check)


def git(root: Path, *args, check=True):
    return run(["git", *args], root, check)


def edited(path):
    """Append a comment to a source file for the body of a `with`, then restore it byte for byte."""
    import contextlib

    @contextlib.contextmanager
    def edit():
        before = path.read_bytes()
        path.write_bytes(before + b"\n# an edit\n")
        try:
            yield
        finally:
            path.write_bytes(before)

    return edit()
