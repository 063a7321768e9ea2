import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
