"""MALN: Multimodal Adversarial Learning Network for conversational emotion recognition,
reproducible end to end (data, training, ablations, tables and figures)."""

import os
import platform
import re
from pathlib import Path

__version__ = "0.1.0"


def version_py(package: str) -> str:
    """The text of an installed package's version.py, read without importing the package (torch:
    2-3 s; importlib.metadata: 40 ms, on every maln start); "" if there is none."""
    import importlib.util

    try:
        return (Path(importlib.util.find_spec(package).origin).parent / "version.py").read_text()
    except (AttributeError, TypeError, OSError):
        return ""


def _pin_cpu_kernels() -> None:
    """The same numbers on an x86 CPU with AVX-512 as on one with AVX2. PyTorch, oneDNN, OpenBLAS
    and numpy pick their vectorised kernels by the CPU's instruction set, and the AVX-512 ones
    round differently: on such a host the default study's training curves left the AVX2 hosts'
    from epoch 6, test WF1 moved by up to 1.7 points, and the probes (scikit-learn, on OpenBLAS
    and numpy) and the t-SNE figure changed (2026-12-03, docs/development.md). Every process that
    imports maln, before it imports torch or numpy, therefore asks for the AVX2 kernels there,
    unless the environment has chosen already (ATEN_CPU_CAPABILITY=avx512, OPENBLAS_CORETYPE=SkylakeX
    and an empty NPY_DISABLE_CPU_FEATURES give the libraries their own choice back). It costs about
    6 % of a training run. MKL keeps its own dispatch: MKL_CBWR=AVX2 changed the results. oneDNN is
    not pinned: float32 training never reaches it, and capped at AVX2 it multiplies bf16 (train.bf16
    on a CPU with AMX) 100x slower than with AMX."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:  # not Linux: the libraries choose, as without maln
        return
    if not re.search(r"^flags\s*:.*\bavx512f\b", cpuinfo, re.M):
        return  # no AVX-512: the libraries' own choice is the AVX2 kernels (or older ones)
    # numpy's dispatch targets; 2.4 renamed them by x86-64 level
    numpy = re.search(r"^version\s*=\s*.(\d+)\.(\d+)", version_py("numpy"), re.M)
    numpy_targets = ("X86_V4 AVX512_ICL AVX512_SPR" if numpy and tuple(map(int, numpy.groups())) >= (2, 4)
                     else "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
                          "AVX512_ICL AVX512_SPR")
    pins = {"ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell",
            "NPY_DISABLE_CPU_FEATURES": numpy_targets}
    for name, value in pins.items():
        os.environ.setdefault(name, value)


_pin_cpu_kernels()
