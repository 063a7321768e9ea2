"""What CI proves is what a newcomer types."""

import re

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


def test_readme_has_exactly_two_commands_at_the_top():
    commands = readme_commands()
    assert commands[0].endswith("snakemake --cores 4 --resources gpu=1")
    assert commands[1].endswith("pytest")
    assert all(c.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ")
               for c in commands[:2])
