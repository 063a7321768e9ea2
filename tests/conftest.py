import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import maln  # noqa: F401  (before any test imports torch: maln pins the CPU kernels, maln/__init__.py)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


_machine = None  # this worker's open lock file while it holds the machine exclusively


def pytest_collection_modifyitems(config, items):
    """The integration modules first (each takes minutes: Snakemake, DVC, SLURM), in their own order,
    so that pytest-xdist, which hands out modules in this order, does not end the run waiting on
    one of them while the other workers idle."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)


def pytest_xdist_auto_num_workers(config):
    """`--numprocesses=auto`: a worker more than the cores (pyproject.toml caps it at 4). A quarter
    of the suite's time goes to waiting on other processes (Snakemake's and SLURM's polling, the
    kill tests' sleeps, the browser), which a worker per core leaves idle."""
    return (os.cpu_count() or 1) + 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """`pytest` runs the suite in pytest-xdist workers that share the machine (pyproject.toml). A
    test marked `timed` holds a wall-clock bound that includes a process start (the bad-input
    corpus: 5 s a case), so it runs with no other test beside it: it takes the machine exclusively
    and keeps it while the next test is timed too (the corpus's cases run as one block); every
    other test takes it shared, from its fixtures' setup to their teardown. A timed test waiting
    for the machine keeps new tests from starting (the gate), so it is not starved."""
    global _machine
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing runs beside anything
        yield
        return
    timed = item.get_closest_marker("timed") is not None
    stem = Path(tempfile.gettempdir()) / f"maln-tests-{run}"  # two empty lock files per test run
    if _machine is None:
        machine = open(f"{stem}.machine", "a")
        with open(f"{stem}.gate", "a") as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(machine, fcntl.LOCK_EX if timed else fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
    else:
        machine = _machine
    try:
        yield
    finally:
        if timed and nextitem is not None and nextitem.get_closest_marker("timed") is not None:
            _machine = machine
        else:
            _machine = None
            fcntl.flock(machine, fcntl.LOCK_UN)
            machine.close()


def run_maln(*args, cwd, check=False, env=None, timeout=600):
    """The real CLI in a subprocess, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "maln", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"maln {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def maln_cli():
    return run_maln


@pytest.fixture(scope="session")
def synthetic_project(tmp_path_factory):
    """A project folder with the shipped params.yaml and both synthetic datasets prepared."""
    from builders import write_params
    from maln.config import load_params
    from maln.data import synthetic
    from maln.data.fetch import raw_files
    from maln.data.prepare import prepare

    root = tmp_path_factory.mktemp("project")
    # the two synthetic datasets of the real benchmarks' shapes (the shipped study also has the
    # noise variant of synthetic-iemocap, which these tests do not need)
    params = load_params(write_params(root, study_datasets=["synthetic-iemocap", "synthetic-meld"]))
    for name in ("synthetic-iemocap", "synthetic-meld"):
        entry = params.dataset(name)
        synthetic.write(raw_files(params, name)[0].path, entry["layout"], entry["synthetic"])
        prepare(params, name)
    return root
