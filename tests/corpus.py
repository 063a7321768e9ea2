"""The bad-input corpus: every case is generated here (no binary in git) and run through the real
`maln` CLI. A case passes when the command exits non-zero within its time bound (5 s) and a few
hundred MB, with one `maln COMMAND: error:` line that names the file (or key or option) and the
problem, no traceback, and every file and folder of the project exactly as before (no partial
output; a previous store, checkpoint or result unchanged); the zero-variance case must instead
succeed without NaN. Disk-full and read-only cases run on a small tmpfs, where this machine lets
the runner mount one (root), and are skipped with the reason where it does not. The project's own
files (checkpoints, run folders, baselines, stores) are broken in a copy of a finished tiny study
(tests/trained.py, built once per process), whose outputs must then stay as they were.

    python tests/corpus.py            # run every case and print a table of what happened
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from builders import (REPO, dialogues, nested_aliases, raw_tuple, shared_lists, write_params,  # noqa: E402
                      write_pickle)
import trained  # noqa: E402

LAYOUT = "conv-emotion-iemocap"


SECONDS = 5.0  # every case ends within this (the bound), the CLI's start included
PEAK_MB = 400  # and holds at most this much memory (resident), torch's import included
# A safety net, not the bound under test: were a case to expand without limit after all, the
# command fails instead of taking the machine's memory. torch maps about 0.7 GB when imported.
ADDRESS_SPACE = 4 << 30


@dataclass
class Case:
    name: str
    command: str  # prepare | train | evaluate | ...
    expect: list  # substrings the message must contain
    make: object  # callable(root) -> extra CLI args
    succeed: bool = False
    sets: list = field(default_factory=list)
    before: list = field(default_factory=list)  # options placed before the command (`maln --set ... train`)
    args: list | None = None  # the command's own arguments, where not those of command_args
    fs: tuple | None = None  # (folder, size): a small tmpfs mounted there before make()
    read_only: bool = False  # ...and made read-only after make()


def _tuple(**kw):
    return list(raw_tuple(LAYOUT, dialogues(n=8, seed=3), **kw))


def _file(root: Path, obj=None, raw: bytes | None = None, name="bad.pkl") -> Path:
    path = root / "data" / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        write_pickle(path, obj)
    return path


def _registry(root: Path, path: str = "data/raw/bad.pkl", layout: str = LAYOUT, **sections):
    write_params(root, {"bad": {"layout": layout, "path": path}}, **sections)


def data_case(name, expect, mutate=None, raw=None, succeed=False, make=None):
    """A feature file that `maln prepare bad` must refuse (or, with succeed, accept); `make(root)`
    sets up the registry entry by itself instead."""
    setup = make

    def make(root):
        if setup is not None:
            setup(root)
            return []
        if raw is not None:
            _file(root, raw=raw(root))
        else:
            t = _tuple()
            mutate(t)
            _file(root, tuple(t))
        _registry(root)
        return []

    return Case(name, "prepare", expect, make, succeed)


def _set(t, i, key, value):
    t[i][key] = value


def _empty(t):
    for i in (1, 2):
        t[i]["d02"] = []
    for i in (3, 4, 5):
        t[i]["d02"] = np.zeros((0, t[i]["d02"].shape[1]), np.float32)


def _constant(t):
    for i in (3, 4, 5):
        for k in t[i]:
            t[i][k] = np.ones_like(t[i][k])


def _truncated(root):
    data = pickle.dumps(tuple(_tuple()), protocol=4)
    return data[: len(data) // 2]


def _escaping(root: Path) -> list:
    """A registry path that climbs out of the project with '..' (a real file is there)."""
    _file(root.parent / "elsewhere", tuple(_tuple()))
    _registry(root, "../elsewhere/data/raw/bad.pkl")
    return []


def _prepared_store(root: Path) -> None:
    """A good `bad` dataset, prepared: the previous store a failed `maln prepare` must keep."""
    t = _tuple()
    _file(root, tuple(t))
    _registry(root)
    subprocess.run([sys.executable, "-m", "maln", "prepare", "bad"], cwd=root, check=True, capture_output=True)


def _fill(folder: Path) -> None:
    """Take every free byte of the file system that holds `folder`."""
    with open(folder / ".filler", "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()


def _disk_full_store(root: Path) -> list:
    _prepared_store(root)
    _fill(root / "data" / "features")
    return []


def _prepared_meld(root: Path) -> None:
    """The shipped params with synthetic-meld prepared, for training cases."""
    from maln.config import load_params
    from maln.data import synthetic
    from maln.data.fetch import raw_files
    from maln.data.prepare import prepare

    params = load_params(write_params(root))
    entry = params.dataset("synthetic-meld")
    synthetic.write(raw_files(params, "synthetic-meld")[0].path, entry["layout"], entry["synthetic"])
    prepare(params, "synthetic-meld")


RUN = Path("results") / "runs" / "synthetic-meld" / "text_only" / "seed0"


def _disk_full_checkpoint(root: Path) -> list:
    """A results folder of 2 MB holding an earlier run's metrics: the first checkpoint (about 4 MB)
    of a new configuration does not fit, and the earlier result must survive."""
    _prepared_meld(root)
    (root / RUN).mkdir(parents=True)
    (root / RUN / "metrics.json").write_text('{"config_hash": "an earlier configuration"}\n')
    return []


def _pickle_calls(module: str, name: str, args: tuple) -> bytes:
    """A protocol-2 pickle that calls module.name(*args): how a file asks the unpickler for sizes."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R."


def _fifo(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _params_text(root: Path, text: bytes | str, name: str = "params.yaml") -> list:
    write_params(root)
    path = root / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return []


def params_case(name, expect, edit):
    """A params.yaml that any command must refuse before doing anything."""

    def make(root):
        write_params(root)
        p = yaml.safe_load((root / "params.yaml").read_text())
        edit(p)
        (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        return []

    return Case(name, "train", expect, make)


CASES = [
    data_case("truncated pickle", ["bad.pkl", "ends early"], raw=_truncated),
    data_case("not a pickle", ["bad.pkl", "not a readable pickle"], raw=lambda root: b"%PDF-1.4 not a pickle"),
    data_case("wrong tuple arity", ["bad.pkl", "expects a 9-tuple", "7 items"], mutate=lambda t: t.__delitem__(slice(7, 9))),
    data_case("wrong types inside", ["bad.pkl", "videoLabels should map dialogue ids"], mutate=lambda t: t.__setitem__(2, [1, 2, 3])),
    data_case("NaN features", ["bad.pkl", "'d01'", "audio features are not finite (nan)"],
              mutate=lambda t: t[4]["d01"].__setitem__((0, 0), np.nan)),
    data_case("Inf features", ["bad.pkl", "'d04'", "visual features are not finite (inf)"],
              mutate=lambda t: t[5]["d04"].__setitem__((1, 1), np.inf)),
    data_case("utterance counts disagree", ["bad.pkl", "'d05'", "utterance counts disagree"],
              mutate=lambda t: t[2]["d05"].append(1)),
    data_case("label out of range", ["bad.pkl", "'d03'", "label 9 at utterance 0 is outside 0..5"],
              mutate=lambda t: t[2]["d03"].__setitem__(0, 9)),
    data_case("overlapping splits", ["bad.pkl", "'d00'", "in both the train and the test split"],
              mutate=lambda t: t[8].append("d00")),
    data_case("missing from every split", ["bad.pkl", "'d02'", "is in no split"], mutate=lambda t: t[7].remove("d02")),
    data_case("empty dialogue", ["bad.pkl", "'d02'", "is empty"], mutate=_empty),
    data_case("duplicate ids", ["bad.pkl", "'d01'", "more than once"], mutate=lambda t: t[7].append("d01")),
    data_case("modality in some dialogues only", ["bad.pkl", "'d06'", "has no visual features"],
              mutate=lambda t: t[5].pop("d06")),
    data_case("zero-variance features", [], mutate=_constant, succeed=True),
    params_case("params: unknown key", ["params.yaml", "train: unknown key 'learning_rate'"],
                lambda p: p["train"].__setitem__("learning_rate", 0.1)),
    params_case("params: wrong type", ["params.yaml", "train.batch_dialogues: 'many' is not of type 'integer'"],
                lambda p: p["train"].__setitem__("batch_dialogues", "many")),
    params_case("params: negative epochs", ["params.yaml", "train.epochs: -5 is less than the minimum of 1"],
                lambda p: p["train"].__setitem__("epochs", -5)),
    params_case("params: unknown variant", ["params.yaml", "study.variants.0: 'no_text' is not one of"],
                lambda p: p["study"].__setitem__("variants", ["no_text"])),
    params_case("params: unknown dataset", ["params.yaml", "study.datasets: unknown dataset 'iemocapp'"],
                lambda p: p["study"].__setitem__("datasets", ["iemocapp"])),
    params_case("params: URL not http(s)", ["params.yaml", "datasets.iemocap.url: 'file:///etc/passwd' does not match"],
                lambda p: p["datasets"]["iemocap"].__setitem__("url", "file:///etc/passwd")),
    Case("params: path escaping the project", "prepare", ["datasets.bad.path", "outside the project"],
         lambda root: _escaping(root)),
    # options before the command are honoured, so their mistakes are caught like any other
    Case("--params before the command: missing file", "prepare", ["missing.yaml", "no such parameter file"],
         lambda root: _registry(root) or [], before=["--params", "missing.yaml"]),
    Case("--set before the command: unknown key", "prepare", ["params.yaml", "study: unknown key 'bogus'"],
         lambda root: _registry(root) or [], before=["--set", "study.bogus=1"]),
    Case("--set before the command: invalid value", "train", ["train.epochs: -1 is less than the minimum of 1"],
         lambda root: (write_params(root), [])[1], before=["--set", "train.epochs=-1"]),
    Case("--params before and after the command differ", "prepare", ["--params given twice", "'a.yaml'", "'b.yaml'"],
         lambda root: _registry(root) or ["--params", "b.yaml"], before=["--params", "a.yaml"]),
    # 1. options: never silently dropped, wherever they stand
    Case("--params twice after the command", "prepare", ["--params given twice", "'a.yaml'", "'b.yaml'"],
         lambda root: _registry(root) or ["--params", "a.yaml", "--params", "b.yaml"]),
    Case("--seed twice (the first would be dropped)", "train", ["--seed given twice", "[0] and [1]"],
         lambda root: (write_params(root), ["--seed", "1"])[1]),
    Case("--params with an empty path", "prepare", ["--params: the path is empty"],
         lambda root: _registry(root) or [], before=["--params="]),
    Case("--set to a command that reads no parameters", "evaluate", ["--set train.epochs=2", "reads no parameters"],
         lambda root: [], args=["evaluate", "--checkpoint", "model.pt"], before=["--set", "train.epochs=2"]),
    # 2. small inputs that would expand without bound
    data_case("pickle: shared lists denoting 2^41 numbers", ["bad.pkl", "stands for more than", "share items"],
              mutate=lambda t: t[3].__setitem__("d01", shared_lists(40))),
    data_case("pickle: a memo index that sizes a 1 GB table", ["bad.pkl", "MiB of memory"],
              raw=lambda root: b"\x80\x02N" + b"r" + (1 << 26).to_bytes(4, "little") + b"."),
    data_case("pickle: bytes(10**10) asked for", ["bad.pkl", "MiB of memory"],
              raw=lambda root: _pickle_calls("builtins", "bytes", (10**10,))),
    data_case("pickle: a 10^12-element array over 8 bytes (zero strides)", ["bad.pkl", "stands for more than"],
              raw=lambda root: _pickle_calls("numpy", "ndarray", ((10**12,), "f8", b"\0" * 8, 0, (0,)))),
    data_case("pickle: a list that holds itself", ["bad.pkl", "holds itself"],
              raw=lambda root: b"\x80\x02]q\x00h\x00a."),
    data_case("pickle: lists nested 100000 deep", ["bad.pkl", "nest more than 64 levels"],
              raw=lambda root: b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."),
    Case("params.yaml: nine levels of aliases", "train", ["params.yaml", "line 5", "the alias *a3", "beyond 10000 values"],
         lambda root: _params_text(root, nested_aliases() + "\n" + (REPO / "params.yaml").read_text())),
    Case("--set value: nine levels of aliases", "prepare", ["--set", "the alias *a3", "beyond 10000 values"],
         lambda root: _registry(root) or ["--set", "study.x={" + nested_aliases().replace("\n", ", ") + "}"]),
    Case("params.yaml: a merge key", "prepare", ["params.yaml", "a merge key `<<`", "not allowed"],
         lambda root: _params_text(root, (REPO / "params.yaml").read_text()
                                   + "\nbase: &base {epochs: 2}\nmore:\n  <<: *base\n")),
    Case("--set value nested 1000 deep", "prepare", ["--set", "nested more than 32 levels"],
         lambda root: _registry(root) or ["--set", "study.x=" + "[" * 1000 + "]" * 1000]),
    # 3. faults of the environment
    Case("params.yaml not UTF-8", "prepare", ["params.yaml", "not UTF-8", "byte 0xff"],
         lambda root: _params_text(root, b"study:\n  datasets: [\xff\xfe]\n")),
    Case("disk full while prepare replaces a store", "prepare",
         ["no space left on device while writing data/features/bad", "the previous store is unchanged"],
         _disk_full_store, fs=("data/features", "2m")),
    Case("read-only file system under the store", "prepare",
         ["read-only file system while writing data/features/bad", "the previous store is unchanged"],
         lambda root: _prepared_store(root) or [], fs=("data/features", "2m"), read_only=True),
    Case("disk full while train saves a checkpoint", "train",
         ["no space left on device while writing", "checkpoint-epoch1.pt", "nothing was changed"],
         _disk_full_checkpoint, fs=("results", "2m"),
         args=["train", "--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "0", "--threads", "1",
               "--set", "train.epochs=1", "--out", str(RUN)]),
    Case("train --out below a regular file", "train", ["params.yaml/run", "a part of the path is not a folder"],
         lambda root: (_prepared_meld(root), [])[1],
         args=["train", "--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "0", "--out", "params.yaml/run"]),
    # 4. values that would be changed silently
    data_case("complex features", ["bad.pkl", "'d01'", "text features are not real numbers (dtype complex"],
              mutate=lambda t: t[3].__setitem__("d01", t[3]["d01"] + 1j)),
    data_case("complex labels", ["bad.pkl", "'d02'", "labels are not a list of integers (dtype complex128"],
              mutate=lambda t: t[2].__setitem__("d02", [complex(y) for y in t[2]["d02"]])),
    data_case("complex speaker symbols", ["bad.pkl", "'d03'", "speakers should be names", "complex"],
              mutate=lambda t: t[1].__setitem__("d03", [1j] * len(t[1]["d03"]))),
    data_case("complex one-hot speakers", ["bad.pkl", "'d00'", "speakers are not real numbers (dtype complex128"],
              mutate=lambda t: t[1].__setitem__("d00", [[1 + 0j, 0j]] * len(t[1]["d00"]))),
    data_case("features written as text", ["bad.pkl", "'d04'", "audio features are not real numbers (dtype <U"],
              mutate=lambda t: t[4].__setitem__("d04", t[4]["d04"].astype(str))),
    data_case("features beyond float32", ["bad.pkl", "'d05'", "exceed the float32 range (1e+300"],
              mutate=lambda t: t[5].__setitem__("d05", np.full(t[5]["d05"].shape, 1e300))),
    # 5. paths that are not regular files (and a FIFO that must not block)
    data_case("registry path is a directory", ["data/raw/bad.pkl", "is a directory; a regular file is needed"],
              make=lambda root: ((root / "data/raw/bad.pkl").mkdir(parents=True), _registry(root))),
    data_case("registry path is a FIFO", ["data/raw/bad.pkl", "is a named pipe (FIFO)"],
              make=lambda root: (_fifo(root, "data/raw/bad.pkl"), _registry(root))),
    data_case("registry path is a device", ["/dev/null", "is a character device"],
              make=lambda root: _registry(root, "/dev/null", data={"allow_paths_outside_project": True})),
    Case("--params is a directory", "prepare", ["conf", "is a directory; a regular file is needed"],
         lambda root: ((root / "conf").mkdir(parents=True), _registry(root), ["--params", "conf"])[2]),
    Case("--params is a FIFO", "prepare", ["params.fifo", "is a named pipe (FIFO)"],
         lambda root: (_registry(root), _fifo(root, "params.fifo"), ["--params", "params.fifo"])[2]),
    Case("evaluate --checkpoint is a FIFO", "evaluate", ["model.pt", "is a named pipe (FIFO)"],
         lambda root: (_fifo(root, "model.pt"), [])[1], args=["evaluate", "--checkpoint", "model.pt"]),
]


# 6. the project's own files, broken: a finished tiny study (tests/trained.py) with one file cut
# short, emptied, of the wrong type or missing a field; the command that reads it names the file,
# the problem and how to write it again, and every output of the study stays as it was.

def _broken(rel, edit):
    def make(root):
        trained.copy_to(root)
        edit(root / rel)
        return []

    return make


def _cut(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def _json(change):
    """`change(obj)` edits the file's content in place, or returns ("replace", new content)."""
    def edit(path: Path) -> None:
        obj = json.loads(path.read_text())
        out = change(obj)
        path.write_text(json.dumps(out[1] if isinstance(out, tuple) and out[:1] == ("replace",) else obj, indent=2) + "\n")

    return edit


def _torch(change):
    def edit(path: Path) -> None:
        import torch

        obj = torch.load(path, weights_only=True)
        change(obj)
        torch.save(obj, path)

    return edit


def _reshape_a_weight(ckpt: dict) -> None:
    import torch

    name = next(k for k, v in ckpt["model"].items() if v.ndim == 2)
    ckpt["model"][name] = torch.zeros(3, 3)


def _npz(change):
    def edit(path: Path) -> None:
        with np.load(path) as z:
            arrays = dict(z)
        change(arrays)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    return edit


def _csv_cell(line: int, column: int, value: str):
    def edit(path: Path) -> None:
        rows = path.read_text().splitlines()
        cells = rows[line].split(",")
        cells[column] = value
        rows[line] = ",".join(cells)
        path.write_text("\n".join(rows) + "\n")

    return edit


MODEL = trained.RUN / "model.pt"
EVALUATE = ["evaluate", "--checkpoint", str(MODEL)]
RETRAIN = f"maln train --dataset {trained.DATASET} --variant {trained.VARIANT} --seed {trained.SEED}"
REBASE = f"maln baseline {trained.DATASET}"
REPREPARE = f"maln prepare {trained.DATASET}"
TRAIN_AGAIN = ["train", "--dataset", trained.DATASET, "--variant", trained.VARIANT, "--seed", "1"]

CASES += [
    # 6a. numbers the schema's type admits but no training can use: each key states its range
    Case("--set train.lr=.nan", "train", ["train.lr: nan is not a finite number", "allowed: a number, 0 < value <= 10"],
         lambda root: (write_params(root), ["--set", "train.lr=.nan"])[1]),
    params_case("params: an infinite gradient clip", ["params.yaml", "train.grad_clip: inf is not a finite number",
                                                     "0 <= value <= 1000000.0"],
                lambda p: p["train"].__setitem__("grad_clip", float("inf"))),
    params_case("params: a budget's NaN dropout", ["budgets.synthetic.model.dropout: nan is not a finite"],
                lambda p: p["budgets"]["synthetic"]["model"].__setitem__("dropout", float("nan"))),
    params_case("params: a seed of 10^22 in study.seeds", ["study.seeds.0: 10000000000000000000000 is greater than",
                                                           "0 <= value <= 4294967295"],
                lambda p: p["study"].__setitem__("seeds", [10**22])),
    params_case("params: a learning rate of 10^30", ["train.lr", "is greater than the maximum of 10"],
                lambda p: p["train"].__setitem__("lr", 10**30)),
    params_case("params: a negative report seed", ["report.seed: -1 is less than the minimum of 0"],
                lambda p: p["report"].__setitem__("seed", -1)),
    Case("--seed 10^22 on the command line", "train", ["argument --seed", "outside 0 <= seed <= 4294967295"],
         lambda root: (write_params(root), [])[1],
         args=["train", "--dataset", "synthetic-meld", "--variant", "full", "--seed", str(10**22)]),
    Case("--set value: an integer of 5000 digits", "train", ["--set", "an integer of more than 100 digits"],
         lambda root: (write_params(root), ["--set", "train.epochs=" + "9" * 5000])[1]),
    Case("params.yaml: an alias inside the value it names", "train", ["params.yaml", "the alias *x", "a cycle"],
         lambda root: _params_text(root, "x: &x [1, *x]\n" + (REPO / "params.yaml").read_text())),
    # 6b. checkpoints, run folders, baselines and stores, broken
    Case("evaluate: an empty model.pt", "evaluate", ["model.pt", "empty", RETRAIN, "--force"],
         _broken(MODEL, lambda p: p.write_bytes(b"")), args=EVALUATE),
    Case("evaluate: model.pt cut short", "evaluate", ["model.pt", "unreadable checkpoint", RETRAIN, "--force"],
         _broken(MODEL, _cut), args=EVALUATE),
    Case("evaluate: model.pt without its class names", "evaluate", ["model.pt", "missing field 'class_names'", "--force"],
         _broken(MODEL, _torch(lambda c: c.pop("class_names"))), args=EVALUATE),
    Case("evaluate: model.pt with a text width", "evaluate", ["model.pt", "config.model.width: 'wide'", "--force"],
         _broken(MODEL, _torch(lambda c: c["config"]["model"].__setitem__("width", "wide"))), args=EVALUATE),
    Case("evaluate: model.pt with weights of another shape", "evaluate", ["model.pt", "do not fit", "--force"],
         _broken(MODEL, _torch(_reshape_a_weight)), args=EVALUATE),
    Case("evaluate: the run's metrics.json without test scores", "evaluate", ["metrics.json", "missing field 'test'", "--force"],
         _broken(trained.RUN / "metrics.json", _json(lambda m: m.pop("test"))), args=EVALUATE),
    Case("aggregate: metrics.json without class_names", "aggregate",
         ["metrics.json", "missing field 'class_names'", RETRAIN, "--force"],
         _broken(trained.RUN / "metrics.json", _json(lambda m: m.pop("class_names")))),
    Case("aggregate: metrics.json a list", "aggregate", ["metrics.json", "is not of type 'object'", "--force"],
         _broken(trained.RUN / "metrics.json", _json(lambda m: ("replace", [m])))),
    Case("aggregate: metrics.json cut short", "aggregate", ["metrics.json", "not valid JSON", "--force"],
         _broken(trained.RUN / "metrics.json", _cut)),
    Case("aggregate: predictions.csv cut short", "aggregate", ["predictions.csv", "--force"],
         _broken(trained.RUN / "predictions.csv", _cut)),
    Case("aggregate: predictions.csv with an unknown emotion", "aggregate",
         ["predictions.csv", "line 2: gold 'bliss' is not one of the run's classes", "--force"],
         _broken(trained.RUN / "predictions.csv", _csv_cell(1, 3, "bliss"))),
    Case("aggregate: an empty history.csv", "aggregate", ["history.csv", "empty", "--force"],
         _broken(trained.RUN / "history.csv", lambda p: p.write_bytes(b""))),
    Case("aggregate: history.csv with a NaN loss", "aggregate", ["history.csv", "line 2: ce is 'nan', not a finite number"],
         _broken(trained.RUN / "history.csv", _csv_cell(1, 1, "nan"))),
    Case("aggregate: features.npz cut short", "aggregate", ["features.npz", "unreadable", "--force"],
         _broken(trained.RUN / "features.npz", _cut)),
    Case("aggregate: features.npz without common features", "aggregate", ["features.npz", "has no array 'common'"],
         _broken(trained.RUN / "features.npz", _npz(lambda a: a.pop("common")))),
    Case("aggregate: baselines a list", "aggregate", [str(trained.BASELINES), "is not of type 'object'", REBASE],
         _broken(trained.BASELINES, _json(lambda b: ("replace", [b])))),
    Case("aggregate: baselines without test predictions", "aggregate",
         [str(trained.BASELINES), "missing field 'test_predictions'", REBASE],
         _broken(trained.BASELINES, _json(lambda b: b["baselines"]["majority"].pop("test_predictions")))),
    Case("aggregate: baselines cut short", "aggregate", [str(trained.BASELINES), "not valid JSON", REBASE],
         _broken(trained.BASELINES, _cut)),
    Case("train: the store's meta.json cut short", "train", ["meta.json", "not valid JSON", REPREPARE],
         _broken(trained.STORE / "meta.json", _cut), args=TRAIN_AGAIN),
    Case("train: the store's labels cut short", "train", ["labels.npy", "corrupted", REPREPARE],
         _broken(trained.STORE / "labels.npy", _cut), args=TRAIN_AGAIN),
    Case("aggregate: the store's labels cut short (read without hashing)", "aggregate", ["labels.npy", REPREPARE],
         _broken(trained.STORE / "labels.npy", _cut)),
]


def command_args(case: Case) -> list[str]:
    if case.args is not None:
        return case.args
    if case.command == "prepare":
        return ["prepare", "bad"]
    if case.command == "aggregate":
        return ["aggregate"]
    return ["train", "--dataset", "synthetic-meld", "--variant", "full", "--seed", "0"]


class Unavailable(Exception):
    """The case needs what this machine does not allow (mounting a file system)."""


@contextlib.contextmanager
def small_fs(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` for the block; Unavailable where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        raise Unavailable("no mount command here")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"cannot mount a {size} tmpfs here (needs root): {proc.stderr.strip()[:120]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def snapshot(root: Path) -> dict:
    """Every file and folder under `root`: content hash for files, kind for anything else (a FIFO
    is never opened)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            mode = os.lstat(path).st_mode
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                                if stat.S_ISREG(mode) else stat.S_IFMT(mode))
    return out


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


# The real `python -m maln`, reporting its peak resident memory on the way out: VmHWM, the peak of
# this program's own address space (KiB). Not getrusage's ru_maxrss, which Linux carries across
# fork and exec, so a command forked from a large pytest process would be charged its size.
CLI = ("import atexit, os, runpy\n"
       "def _peak():\n"
       "    with open('/proc/self/status') as f:\n"
       "        kib = next(line.split()[1] for line in f if line.startswith('VmHWM:'))\n"
       "    open(os.environ['CORPUS_PEAK'], 'w').write(kib)\n"
       "atexit.register(_peak)\n"
       "runpy.run_module('maln', run_name='__main__', alter_sys=True)\n")
ERROR_LINE = re.compile(r"^maln [a-z]+: error: ")


@dataclass
class Outcome:
    case: str
    exit_code: int | None
    message: str
    problems: list
    seconds: float = 0.0
    peak_mb: float = 0.0
    skipped: str | None = None


def run_case(case: Case, root: Path) -> Outcome:
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            if case.fs is not None:
                stack.enter_context(small_fs(root / case.fs[0], case.fs[1]))
        except Unavailable as e:
            return Outcome(case.name, None, "", [], skipped=str(e))
        extra = case.make(root)
        if case.read_only:
            read_only(root / case.fs[0])
        before = snapshot(root)
        peak_file = root.parent / "peak"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CLI, *case.before, *command_args(case), *extra], cwd=root,
                              capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "CORPUS_PEAK": str(peak_file)})
        seconds = time.perf_counter() - start
        peak_mb = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
        after = snapshot(root)
    problems = []
    message = proc.stderr.strip()
    if seconds > SECONDS:
        problems.append(f"took {seconds:.1f} s")
    if not peak_mb <= PEAK_MB:
        problems.append(f"held {peak_mb:.0f} MB")
    if case.succeed:
        if proc.returncode != 0:
            problems.append(f"expected success, got exit {proc.returncode}")
        store = root / "data" / "features" / "bad"
        if store.exists():
            for npy in store.glob("*.npy"):
                if npy.name not in ("offsets.npy", "split.npy") and not np.all(np.isfinite(np.load(npy))):
                    problems.append(f"{npy.name} holds non-finite values")
    else:
        if proc.returncode == 0:
            problems.append("exited 0")
        if "Traceback" in message:
            problems.append("printed a traceback")
        errors = [line for line in message.splitlines() if ERROR_LINE.match(line)]
        if len(errors) != 1:
            problems.append(f"{len(errors)} 'maln COMMAND: error:' lines")
        for needle in case.expect:
            if needle not in message:
                problems.append(f"message lacks {needle!r}")
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if changed:
            problems.append(f"changed the project: {changed[:4]}")
    error = next((line for line in message.splitlines() if ERROR_LINE.match(line)), None)
    shown = error if error is not None else " / ".join(line.strip() for line in message.splitlines()[:3])
    return Outcome(case.name, proc.returncode, shown, problems, seconds, peak_mb)


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        print("| case | command | exit | s | MB | message | verdict |\n| --- | --- | --- | --- | --- | --- | --- |")
        for i, case in enumerate(CASES):
            out = run_case(case, Path(tmp) / f"case{i}" / "project")
            if out.skipped:
                print(f"| {case.name} | maln {case.command} | | | | | skipped: {out.skipped} |")
                continue
            verdict = "ok" if not out.problems else "FAIL: " + "; ".join(out.problems)
            failed += bool(out.problems)
            msg = out.message.replace(str(Path(tmp)), "<tmp>").replace("|", "\\|")[:200]
            print(f"| {case.name} | maln {case.command} | {out.exit_code} | {out.seconds:.1f} | {out.peak_mb:.0f} "
                  f"| {msg} | {verdict} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
