"""What CI proves is what a newcomer types."""

import re

from builders import REPO


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(c for c in readme_commands() if c.rstrip().endswith("pytest"))
    assert test_cmd in (REPO / ".ci/run").read_text()
