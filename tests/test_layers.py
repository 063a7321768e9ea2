"""The house: maln's imports follow the layering the README's layout section states, with no
circles (issue 23). Function-level imports count: a lazy import is still a dependency."""

import ast
import re
import subprocess
import sys

import pytest

from builders import REPO


def layers() -> dict:
    """module (dotted, without `maln.`) -> its layer number, from the README's layout section."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"Layers of maln/, lowest first.*?\n(.*?)```", text, re.S)
    assert block, "README.md states no layering (a block starting 'Layers of maln/, lowest first')"
    out = {}
    for line in block.group(1).splitlines():
        m = re.match(r"\s*(\d+)\. [^:]+: (.+)$", line)
        if m:
            for name in m.group(2).split(","):
                out[name.strip()] = int(m.group(1))
    return out


def module_name(path) -> str:
    rel = path.relative_to(REPO / "maln").with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports() -> dict:
    """module -> the maln modules it imports anywhere in its file (packages resolved to modules)."""
    modules = {module_name(p): p for p in (REPO / "maln").rglob("*.py")}
    out = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "maln":
                base = node.module.removeprefix("maln").lstrip(".")
                for alias in node.names:  # `from maln.data import layouts` imports the module data.layouts
                    sub = f"{base}.{alias.name}" if base else alias.name
                    found.add(sub if sub in modules else base)
            elif isinstance(node, ast.Import):
                found |= {a.name.removeprefix("maln.") for a in node.names if a.name.startswith("maln.")}
        out[name] = {m for m in found if m != name and m in modules and modules[m].name != "__init__.py"}
    return {name: deps for name, deps in out.items() if modules[name].name != "__init__.py"}


def test_every_module_has_a_layer():
    known = layers()
    assert sorted(set(imports()) - set(known)) == []
    assert sorted(set(known) - set(imports())) == []


def test_no_module_imports_from_a_higher_layer():
    known = layers()
    wrong = [f"{a} (layer {known[a]}) imports {b} (layer {known[b]})"
             for a, deps in imports().items() if a in known for b in deps if known.get(b, 0) > known[a]]
    assert wrong == []


def test_no_import_circles():
    graph = imports()
    circles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_layering_would_catch_evaluate_importing_training():
    """The check is not vacuous: the circle this issue found (train <-> evaluate) is refused."""
    known = layers()
    assert known["evaluate"] == known["train"] and known["inference"] < known["train"]
    assert "train" not in imports()["evaluate"] and "train" not in imports()["inference"]


def test_parsing_the_snakefile_imports_neither_torch_nor_training():
    """The workflow's common.smk imports configuration and study modules only."""
    text = (REPO / "workflow/rules/common.smk").read_text()
    modules = sorted(set(re.findall(r"^from (maln[\w.]*) import", text, re.M)))
    assert "maln.train" not in modules and modules
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + \
        "print(sorted(m for m in ('torch', 'maln.train', 'maln.model.maln', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("limit, where", [(300, "maln")])
def test_no_file_in_maln_is_over_300_lines(limit, where):
    long = {str(p.relative_to(REPO)): n for p in (REPO / where).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > limit}
    assert long == {}


def test_run_is_small_enough_to_read_at_once():
    tree = ast.parse((REPO / "maln/train.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Run")
    assert run.end_lineno - run.lineno + 1 <= 120
