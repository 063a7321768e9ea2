"""Which device a training job runs on.

Snakemake's `gpu` resource only counts GPUs; it does not say which one a job gets. On a machine
with N GPUs, concurrent jobs therefore take a slot from a pool of lock files, one per GPU (named
by the GPU's UUID, so jobs in separate SLURM cgroups that each see "device 0" do not contend).
The lock is an flock held for the process's life: a killed job frees its GPU at once.

MALN_SIMULATE_GPUS=N makes the pool hand out N slots on a CPU-only machine (training stays on the
CPU); the tests use it to check that concurrent jobs get distinct devices.

torch is imported where a device is chosen, not with this module: the workflow asks
`cuda_available()` while parsing the Snakefile, on every Snakemake start.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from maln import version_py
from maln.errors import MalnError


@dataclass
class Placement:
    device: torch.device
    slot: int | None = None  # the pool slot held (GPU index among the visible ones)
    simulated: bool = False
    name: str = "cpu"
    acquired_at: float = 0.0  # when this process got its device (wall clock)
    _lock: object = None  # the open lock file; keeps the slot while referenced

    def describe(self) -> str:
        if self.slot is None:
            return self.name
        return f"{self.name} (slot {self.slot}{', simulated' if self.simulated else ''})"


def lock_dir() -> Path:
    return Path(os.environ.get("MALN_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"maln-gpu-locks-{os.getuid()}")


def cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch (2-3 s of CPU) where the answer is known:
    a CPU build of torch (its version.py names no CUDA and no ROCm) never sees a GPU."""
    if importlib.util.find_spec("torch") is None:
        return False
    text = version_py("torch")
    if all(re.search(rf"^{name}\b[^=]*=\s*None\s*$", text, re.M) for name in ("cuda", "hip")):
        return False
    import torch

    return torch.cuda.is_available()


def _gpu_keys() -> tuple[list[str], bool]:
    import torch

    simulated = int(os.environ.get("MALN_SIMULATE_GPUS", "0") or 0)
    if simulated:
        return [f"simulated-{i}" for i in range(simulated)], True
    keys = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        keys.append(str(uuid) if uuid is not None else f"index-{i}")
    return keys, False


def acquire_slot(keys: list[str], poll_s: float = 0.5, timeout_s: float | None = None) -> tuple[int, object]:
    """Block until one of `keys` is free; return its index and the open (locked) file."""
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    start, told = time.monotonic(), False
    while True:
        for i, key in enumerate(keys):
            f = open(directory / f"gpu-{key}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            return i, f
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise MalnError(f"no free GPU among {len(keys)} after {timeout_s:.0f} s (locks in {directory})")
        if not told:
            print(f"all {len(keys)} GPU(s) are taken by other maln jobs; waiting for one (locks in {directory})",
                  file=sys.stderr)
            told = True
        time.sleep(poll_s)


def place(requested: str) -> Placement:
    """`requested`: auto | cpu | cuda (params train.device)."""
    import torch

    if requested == "cpu":
        return Placement(torch.device("cpu"), acquired_at=time.time())
    keys, simulated = _gpu_keys()
    if not keys:
        if requested == "cuda":
            raise MalnError("train.device is cuda, but no CUDA device is visible (set train.device: auto or cpu)")
        return Placement(torch.device("cpu"), acquired_at=time.time())
    slot, lock = acquire_slot(keys)
    if simulated:
        return Placement(torch.device("cpu"), slot, True, "cpu", time.time(), lock)
    torch.cuda.set_device(slot)
    return Placement(torch.device("cuda", slot), slot, False, torch.cuda.get_device_name(slot), time.time(), lock)
