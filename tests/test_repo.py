"""What CI proves is what a newcomer types."""

import re

import pytest

from builders import REPO


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(c for c in readme_commands() if c.rstrip().endswith("pytest"))
    assert test_cmd in (REPO / ".ci/run").read_text()


def test_readme_results_are_the_generated_table():
    """The README's results section is written by `maln aggregate`, never by hand: its headline
    table is the one results/metrics.json gives."""
    import json

    from maln.report.aggregate import headline

    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- maln:results:start -->")[1].split("<!-- maln:results:end -->")[0]
    metrics = REPO / "results/metrics.json"
    if not metrics.exists():
        assert "Not generated yet" in section
        return
    assert headline(json.loads(metrics.read_text())) in section
    assert "![Ablations](results/figures/ablation.png)" in section


def _table(text: str, first: str) -> list[dict]:
    """The markdown table whose header starts with `| first |`, as rows of {column: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_readme_headline_shares_are_the_main_tables():
    """The README prints full's headroom share from results/metrics.json, the main table from the
    runs: the two must read the same (metrics.json once rounded 1.3553 to 1.355, '+1.35' beside '+1.36')."""
    readme = (REPO / "README.md").read_text()
    main = REPO / "results/tables/main.md"
    if not main.exists():
        pytest.skip("no results/tables/main.md: the study has not been run")
    section = readme.split("<!-- maln:results:start -->")[1].split("<!-- maln:results:end -->")[0]
    headline = {r["dataset"]: r["share of full"] for r in _table(section, "dataset") if r["share of full"] != "–"}
    table = {r["Dataset"]: r["Headroom share"] for r in _table(main.read_text(), "Dataset") if r["Variant"] == "full"}
    assert headline, "no dataset with a headroom share in the README's headline"
    for dataset, share in headline.items():
        assert share == table[dataset], (dataset, share, table[dataset])


def test_readme_has_exactly_two_commands_at_the_top():
    commands = readme_commands()
    assert commands[0].endswith("snakemake --cores 4 --resources gpu=1")
    assert commands[1].endswith("pytest")
    assert all(c.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ")
               for c in commands[:2])


def test_every_experiment_patch_applies_to_the_commit_it_names(tmp_path):
    """The patch of an experiment not shipped is the only record of the code it measured: its first line names the
    commit it was made on, and it applies there (checked in a temporary index, nothing checked out)."""
    import os
    import subprocess

    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, capture_output=True, text=True)
    if shallow.stdout.strip() == "true":  # as CI services clone by default: the named commits are not there
        pytest.skip("a shallow clone lacks the commits the patches name (git fetch --unshallow)")
    patches = sorted((REPO / "benchmarks/experiments").glob("*.patch"))
    assert patches
    for patch in patches:
        commit = re.search(r"applies to commit ([0-9a-f]{40})", patch.read_text().splitlines()[0])
        assert commit, f"{patch.name}: its first line names no commit"
        env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / f"{patch.name}.index")}
        subprocess.run(["git", "read-tree", commit[1]], cwd=REPO, env=env, check=True)
        r = subprocess.run(["git", "apply", "--cached", "--check", str(patch)], cwd=REPO, env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{patch.name} does not apply to {commit[1]}: {r.stderr}"
