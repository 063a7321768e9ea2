"""A tiny finished study, built once per test process, for the tests that break the project's own
files (tests/corpus.py, tests/test_properties.py): one small synthetic dataset prepared, one run of
the full model trained, its baselines computed and `maln aggregate` run, so every file the project
reads back exists and a failed command can be checked to leave every output as it was."""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from builders import write_params  # noqa: E402

DATASET, VARIANT, SEED = "synthetic-meld", "full", 0
RUN = Path("results") / "runs" / DATASET / VARIANT / f"seed{SEED}"
STORE = Path("data") / "features" / DATASET
BASELINES = Path("results") / "baselines" / f"{DATASET}.json"

ENTRY = {
    "layout": "synthetic-meld",
    "synthetic": {"dialogues": 40, "test_fraction": 0.25, "length": [2, 12], "dims": {"text": 16, "audio": 8},
                  "signal": {"text": 2.0, "audio": 1.5}, "seed": 11},
    "overrides": {"model": {"width": 8, "context": {"hidden": {"text": 8, "audio": 8, "visual": 8}, "layers": 1},
                            "sclm": {"max_positions": 64, "feedforward": 16}, "discriminator_hidden": 8},
                  "train": {"epochs": 2, "batch_dialogues": 8}},
}


def build(root: Path) -> Path:
    """The study above in `root` (the shipped params.yaml with the study cut down)."""
    write_params(root, {DATASET: ENTRY}, study_datasets=[DATASET],
                 study={"configurations": ["recommended"], "variants": [VARIANT], "seeds": [SEED]},
                 report={"bootstrap": 100, "tsne_utterances": 20}, baselines={"logreg_C": [0.1], "mlp_alpha": [1.0]})
    for args in (["synth", DATASET], ["prepare", DATASET], ["train", "--dataset", DATASET, "--variant", VARIANT,
                                                              "--seed", str(SEED), "--threads", "1"],
                 ["baseline", DATASET], ["aggregate"]):
        code, err = run_in_process(root, args)
        assert code == 0, f"maln {' '.join(args)} exited {code}: {err}"
    return root


@functools.cache
def _cached() -> Path:
    """Built in a child process: training here would leave this process holding the memory that
    the corpus then counts against each command it starts (a forked child inherits its peak)."""
    tmp = tempfile.TemporaryDirectory(prefix="maln-trained-")
    atexit.register(tmp.cleanup)
    root = Path(tmp.name) / "project"
    proc = subprocess.run([sys.executable, __file__, str(root)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"building the tiny study failed:\n{proc.stderr[-3000:]}")
    return root


def copy_to(root: Path) -> Path:
    """A fresh copy of the finished study at `root` (built on first use, then copied)."""
    shutil.copytree(_cached(), root, dirs_exist_ok=True)
    return root


def run_in_process(root: Path, args) -> tuple[int, str]:
    """`maln ARGS` run in this process with `root` as the working folder: (exit status, stderr).
    An exception the CLI does not turn into its one error line propagates (a traceback)."""
    from maln.cli import main

    err = io.StringIO()
    old = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors
                code = e.code
    finally:
        os.chdir(old)
    return code, err.getvalue()


if __name__ == "__main__":
    build(Path(sys.argv[1]))
