"""Which source files each workflow step runs, read off the code's imports (never listed by hand).

A Snakemake job or DVC stage must rerun when the code that made its outputs changes. Every job runs
one `maln` command; the files it depends on are `maln/cli.py` (with the package's entry modules),
the imports of that command's function (`cmd_<name>` and the cli helpers it calls) and, from there,
every `maln` module those import, at module level or inside functions, transitively. Counting
function-level imports over-approximates (a lazily imported reader is counted although a given run
may not reach it), which costs a rerun, never a stale result.

One place for both tools: the workflow's `common.smk` hashes `files(step)` at parse time, and the
code entries of `dvc.yaml`'s `deps:` are written from the same function (`python -m maln.deps
--write`); tests/test_deps.py fails when dvc.yaml and the imports disagree. Standard library only,
so parsing the Snakefile imports no torch.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent

# workflow step -> the `maln` commands its jobs run. DVC's stages are groups of these steps.
STEPS = {
    "data": ("synth", "fetch", "prepare"),
    "train": ("train",),
    "baseline": ("baseline",),
    "report": ("aggregate",),
}
DVC_STAGES = {"data": ("data",), "train": ("train", "baseline"), "report": ("report",)}


def _module_file(name: str, root: Path) -> Path | None:
    base = root / Path(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _statements(nodes):
    """Every statement in `nodes`, nested blocks included (an import is a statement, so expressions,
    most of a module's tree, need no visit)."""
    for node in nodes:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, None) or ())


def _imported(nodes, root: Path) -> set[str]:
    """Names of the `maln` modules imported anywhere in `nodes` (`from maln import io` names a module)."""
    out = set()
    for n in _statements(nodes):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name.split(".")[0] == "maln"}
        elif isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "maln" and not n.level:
            out.add(n.module)
            out |= {f"{n.module}.{a.name}" for a in n.names if _module_file(f"{n.module}.{a.name}", root)}
    return out


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@cache
def _module_imports(path: Path, root: Path) -> frozenset[str]:
    """What a module file imports, walked once per process (the workflow asks for every step)."""
    return frozenset(_imported(_tree(path).body, root))


# The command line reaches every command's modules, but a job runs one command: cli.py's own imports
# are read per command (_command_imports), not followed wholesale.
_PER_COMMAND = ("maln.cli", "maln.__main__")


def _closure(modules: set[str], root: Path) -> set[Path]:
    """Files of `modules`, their parent packages' __init__.py and everything they import, transitively."""
    seen, todo = set(), set(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing maln.data.store runs maln/__init__ and maln/data/__init__
            f = _module_file(".".join(parts[:i]), root)
            if f is not None and f not in seen:
                seen.add(f)
                if ".".join(parts[:i]) not in _PER_COMMAND:
                    todo |= _module_imports(f, root)
    return seen


def _command_imports(command: str, root: Path) -> set[str]:
    """Imports of cli.py at module level and of `cmd_<command>` with the cli functions it calls."""
    tree = _tree(root / "maln" / "cli.py")
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if f"cmd_{command}" not in functions:
        raise KeyError(f"maln/cli.py has no cmd_{command}")
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    found, todo = set(), [f"cmd_{command}"]
    while todo:
        fn = functions[todo.pop()]
        found.add(fn.name)
        todo += [n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id in functions and n.func.id not in found]
    return {"maln.cli", "maln.__main__"} | _imported(top + [functions[f] for f in found], root)


def files(step: str, root: Path = ROOT) -> list[str]:
    """Source files (relative to `root`, sorted) that the jobs of a workflow step run."""
    modules = set().union(*(_command_imports(c, root) for c in STEPS[step]))
    return sorted(f.relative_to(root).as_posix() for f in _closure(modules, root))


def dvc_stage_files(stage: str, root: Path = ROOT) -> list[str]:
    return sorted(set().union(*(files(s, root) for s in DVC_STAGES[stage])))


# In dvc.yaml a stage's code deps are the `- maln/...` entries of its `deps:` list; the rest (data,
# workflow rules) is written by hand.
_STAGE = re.compile(r"^  (\w+):\s*$")
_CODE_DEP = re.compile(r"^(\s+)- maln/\S+\s*$")


def rewrite_dvc_yaml(text: str, root: Path = ROOT) -> str:
    """dvc.yaml with each stage's `maln/` deps replaced by the files its steps import."""
    out, stage, written = [], None, False
    for line in text.splitlines(keepends=True):
        m = _STAGE.match(line)
        if m:
            stage, written = m.group(1), False
        m = _CODE_DEP.match(line)
        if m and stage in DVC_STAGES:
            if not written:
                out += [f"{m.group(1)}- {f}\n" for f in dvc_stage_files(stage, root)]
                written = True
            continue
        out.append(line)
    return "".join(out)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    new = rewrite_dvc_yaml(text)
    if argv == ["--write"]:
        from maln import io

        io.write_text(path, new)
        print(f"wrote the code deps of {path.name}", file=sys.stderr)
        return 0
    if argv not in ([], ["--check"]):
        print("usage: python -m maln.deps [--check | --write]", file=sys.stderr)
        return 2
    if new != text:
        print(f"{path.name}: code deps differ from the imports; run `python -m maln.deps --write`", file=sys.stderr)
        return 1
    for step in STEPS:
        print(f"{step}: {' '.join(files(step))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
