"""Code dependencies of the workflow's steps are read off the imports (maln/deps.py), and dvc.yaml's
code deps are written from them; the real-tool checks are in tests/test_workflow.py (snakemake -n)
and tests/test_dvc.py (dvc status after an edit)."""

import subprocess
import sys

from builders import REPO
from maln import deps


def test_dvc_yaml_lists_exactly_the_code_each_stage_imports():
    out = subprocess.run([sys.executable, "-m", "maln.deps", "--check"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_each_step_depends_on_what_its_command_imports_and_not_on_other_commands():
    train, report, data = deps.files("train"), deps.files("report"), deps.files("data")
    # the combination weights every prediction uses, and the model's files
    assert {"maln/combination.py", "maln/train.py", "maln/model/maln.py", "maln/cli.py"} <= set(train)
    # the report scores runs with these, which a hand-kept list once missed
    assert {"maln/combination.py", "maln/metrics.py", "maln/model/variants.py", "maln/report/tables.py"} <= set(report)
    assert "maln/train.py" not in report and "maln/report/tables.py" not in train
    assert "maln/train.py" not in data and "maln/data/synthetic.py" in data
    # training's teachers are the baselines' regressions (maln/teacher.py); the baselines train nothing
    assert "maln/baselines.py" in deps.files("baseline") and "maln/teacher.py" in train
    assert "maln/train.py" not in deps.files("baseline") and "maln/teacher.py" not in deps.files("baseline")


def test_a_new_import_inside_a_function_is_followed(tmp_path):
    pkg = tmp_path / "maln"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("from maln.cli import main\n")
    (pkg / "cli.py").write_text("from maln.errors import E\n\ndef _p():\n    from maln import conf\n\n"
                                "def cmd_train(a):\n    _p()\n    from maln.sub.t import f\n\n"
                                "def cmd_aggregate(a):\n    from maln.rep import g\n")
    for name, body in {"errors": "", "conf": "", "rep": "", "late": "", "sub/t": "def f():\n    from maln import late\n"}.items():
        (pkg / f"{name}.py").write_text(body)
    got = {s: deps.files(s, tmp_path) for s in ("train", "report")}
    assert got["train"] == ["maln/__init__.py", "maln/__main__.py", "maln/cli.py", "maln/conf.py", "maln/errors.py",
                            "maln/late.py", "maln/sub/__init__.py", "maln/sub/t.py"]
    assert "maln/rep.py" in got["report"] and "maln/late.py" not in got["report"]
