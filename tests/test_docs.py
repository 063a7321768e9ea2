"""The documentation shows only what runs: every line of every ```bash block in README.md and
docs/*.md is a command the project can run (Snakemake as a dry run in a copy of the repository,
`maln`, `dvc` and the benchmark scripts through their --help, the rest by an allowed first word),
and every relative Markdown link points to a file or folder that exists."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from builders import REPO
from workflow_helpers import copy_repo, env, snakemake

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
ANY_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
# Commands checked only by their first word: installing, testing, version control, shell built-ins.
ALLOWED = {"pip", "pytest", "git", "curl", "cd", "sbatch", ".", "source", "apt-get"}
# What a dry run of a real-data study may fail on: the data file is absent or cannot be fetched.
DATA_FILE = re.compile(r"data/raw/\S+|https?://\S+")
DATA_PROBLEM = re.compile(r"missing|not found|no such file|could not|cannot|failed|unreachable|download", re.I)


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at &&, ||, ; and |), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&"}:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in commands + [current] if c]


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, words) for every simple command of every ```bash block; continuation lines joined."""
    found = []
    for doc in DOCS:
        for block in BASH_BLOCK.findall(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                found += [(doc.relative_to(REPO).as_posix(), words) for words in simple_commands(line)]
    return found


def check_of(words: list[str]) -> tuple:
    """What to run for a documented command: ("snakemake", args), ("run", argv), ("script", path),
    ("allowed", word), or ("unknown", words) for anything else."""
    first, rest = words[0], words[1:]
    if first == "snakemake":
        return ("snakemake", tuple(rest))
    if first == "maln" and rest and not rest[0].startswith("-"):
        return ("run", (sys.executable, "-m", "maln", rest[0], "--help"))
    if first == "dvc":
        sub = []
        for word in rest[:2]:
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            sub.append(word)
        return ("run", (sys.executable, "-m", "dvc", *sub, "--help")) if sub else ("unknown", tuple(words))
    if first in ("python", "python3") and rest[:2] == ["-m", "venv"]:
        return ("allowed", "python3 -m venv")
    if first in ("python", "python3") and rest and re.fullmatch(r"benchmarks/\w+\.py", rest[0]):
        return ("run", (sys.executable, rest[0], "--help"))
    if first == "bash" and rest and rest[0].endswith(".sh"):
        return ("script", rest[0])
    if first in ALLOWED:
        return ("allowed", first)
    return ("unknown", tuple(words))


def checks() -> dict[tuple, list[str]]:
    """Each distinct check, with the documented commands it stands for (so identical snakemake
    calls are dry-run once)."""
    grouped: dict[tuple, list[str]] = {}
    for where, words in documented_commands():
        grouped.setdefault(check_of(words), []).append(f"{where}: {shlex.join(words)}")
    return grouped


CHECKS = checks()


def test_the_docs_show_commands_and_nothing_else():
    kinds = {kind for kind, _ in CHECKS}
    assert {"snakemake", "run", "allowed"} <= kinds, kinds
    unknown = [shown for (kind, _), shown in CHECKS.items() if kind == "unknown"]
    assert not unknown, f"not commands the documentation may show in a bash block (use ```text for templates): {unknown}"


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("docs") / "repo")


@pytest.mark.integration
@pytest.mark.parametrize("args", sorted(a for kind, a in CHECKS if kind == "snakemake"), ids=shlex.join)
def test_snakemake_commands_plan(repo_copy, args):
    """A dry run plans the documented call; a real-data study may stop only on its missing data."""
    proc = snakemake(repo_copy, *args, "-n", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        assert DATA_FILE.search(out) and DATA_PROBLEM.search(out), (
            f"snakemake {shlex.join(args)} -n exited {proc.returncode} for something else than missing data "
            f"(shown in {CHECKS[('snakemake', args)]}):\n{out[-4000:]}")
    else:
        assert "This was a dry-run" in out or "Nothing to be done" in out, out[-2000:]


@pytest.mark.parametrize("argv", sorted(a for kind, a in CHECKS if kind == "run"), ids=lambda a: shlex.join(a[1:]))
def test_commands_answer_help(argv):
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode == 0, (f"{shlex.join(argv)} exited {proc.returncode} "
                                  f"(shown in {CHECKS[('run', argv)]}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def test_scripts_exist():
    for kind, script in CHECKS:
        if kind == "script":
            assert (REPO / script).is_file(), f"{script} (shown in {CHECKS[(kind, script)]}) does not exist"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve():
    broken = []
    for doc in DOCS:
        text = doc.read_text()
        prose = ANY_BLOCK.sub("", text)
        prose = re.sub(r"`[^`\n]*`", "", prose)  # inline code is not a link
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # an absolute URL
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(REPO)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file or folder")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", ANY_BLOCK.sub("", dest.read_text()), re.M)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{where}: no heading with that anchor in {dest.name}")
    assert not broken, "\n".join(broken)


def test_readme_stays_short():
    """README.md is at most 200 lines once the generated results section is its ~30 lines: the rest
    of it stays within 170."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "<!-- maln:results:start -->")
    end = next(i for i, line in enumerate(lines) if line.strip() == "<!-- maln:results:end -->")
    outside = len(lines) - (end - start - 1)
    assert outside <= 170, f"README.md has {outside} lines outside the generated results section"


def test_every_docs_page_says_what_it_covers():
    for doc in DOCS[1:]:
        lines = [line for line in doc.read_text().splitlines() if line.strip()]
        assert lines[0].startswith("# ") and not lines[1].startswith(("#", "|", "-", "```")), doc.name
