"""Bad input, hostile files, faults and concurrency, through the real CLI and the real Snakemake."""

import ast
import contextlib
import errno
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from builders import REPO, dialogues, raw_tuple, write_params, write_pickle
from conftest import run_maln
from corpus import CASES, Unavailable, run_case, small_fs



# -- the bad-input corpus ------------------------------------------------------------------------

# A case whose command imports torch (2-3 s of its 5) runs with no other test beside it (`timed`,
# conftest.py), those cases one after another in one block; the others take a second at most alone
# and keep their bound beside another test.
IMPORTS_TORCH = {"train", "evaluate", "predict"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=pytest.mark.timed if c.command in IMPORTS_TORCH else ())
                                  for c in sorted(CASES, key=lambda c: c.command not in IMPORTS_TORCH)])
def test_bad_input_is_refused_clearly_quickly_and_changes_nothing(case, tmp_path):
    """Each case within corpus.SECONDS and corpus.PEAK_MB, project byte-identical afterwards."""
    outcome = run_case(case, tmp_path / "project")
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert not outcome.problems, f"{case.name}: {outcome.problems}\n{outcome.message}"


def test_the_corpus_charges_a_command_its_own_memory_not_the_memory_of_the_process_that_forked_it(tmp_path):
    """A command forked from a large process (pytest after in-process work) is measured by its own
    peak: Linux carries ru_maxrss across fork and exec, which once failed 86 cases at 413 MB."""
    from corpus import PEAK_MB

    ballast = np.ones(PEAK_MB * 2 ** 20 // 8 * 3 // 2)  # 1.5 x the bound, resident in this process
    ballast[::512] = 2.0
    case = next(c for c in CASES if c.name == "params: unknown key")
    outcome = run_case(case, tmp_path / "project")
    assert ballast.sum() > 0 and outcome.peak_mb < PEAK_MB and not outcome.problems, outcome


def test_debug_shows_the_traceback_of_an_expected_error(tmp_path):
    write_params(tmp_path)
    proc = run_maln("prepare", "no-such-dataset", "--debug", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "unknown dataset" in proc.stderr


# -- hostile files -------------------------------------------------------------------------------

class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "nested"])
def test_hostile_feature_file_is_refused_by_prepare_and_predict(tmp_path, where, synthetic_project):
    marker = tmp_path / "pwned"
    t = list(raw_tuple("conv-emotion-iemocap", dialogues(n=6)))
    if where == "top":
        obj = Payload(marker)
    else:
        t[3]["d01"] = np.array([t[3]["d01"][0], {"deep": [Payload(marker)]}], dtype=object)
        obj = tuple(t)
    write_pickle(tmp_path / "data/raw/evil.pkl", obj)
    write_params(tmp_path, {"evil": {"layout": "conv-emotion-iemocap", "path": "data/raw/evil.pkl"}})
    proc = run_maln("prepare", "evil", cwd=tmp_path)
    assert proc.returncode == 1 and "refused to load" in proc.stderr and "posix.system" in proc.stderr
    assert not (tmp_path / "data/features/evil").exists()
    run_maln("train", "--dataset", "synthetic-iemocap", "--variant", "text_only", "--seed", "0", "--set",
             "train.epochs=1", "--out", tmp_path / "run", cwd=synthetic_project, check=True)
    model = tmp_path / "run/model.pt"
    proc = run_maln("predict", "--checkpoint", model, "--input", tmp_path / "data/raw/evil.pkl",
                    "--layout", "conv-emotion-iemocap", cwd=synthetic_project)
    assert proc.returncode == 1 and "refused to load" in proc.stderr
    assert not marker.exists()


def test_hostile_resume_checkpoint_is_refused_and_training_starts_over(synthetic_project, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": "maln-checkpoint", "payload": Payload(marker)}, out / "checkpoint-epoch1.pt")
    digest = hashlib.sha256((out / "checkpoint-epoch1.pt").read_bytes()).hexdigest()
    # a matching hash: the file is intact, its content is hostile
    (out / "checkpoint.json").write_text(json.dumps({"file": "checkpoint-epoch1.pt", "sha256": digest, "epoch": 1}))
    proc = run_maln("train", "--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "0",
                    "--set", "train.epochs=2", "--out", out, cwd=synthetic_project, check=True)
    assert "unreadable" in proc.stderr and "starting from scratch" in proc.stderr
    assert (out / "metrics.json").is_file() and not marker.exists()


# -- faults --------------------------------------------------------------------------------------

def test_killed_training_job_resumes_through_snakemake_to_identical_metrics(tmp_path):
    from workflow_helpers import copy_repo, env, make_tiny, snakemake

    target = "results/runs/synthetic-iemocap/full/seed0/metrics.json"
    root = copy_repo(tmp_path / "killed")
    make_tiny(root, variants=("full",), seeds=(0,), epochs=12)
    snakemake(root, "--cores", "1", "data/features/synthetic-iemocap/meta.json")
    # the uninterrupted run: the job's command (grouped-seed and workflow tests show it is the job's run)
    whole = tmp_path / "whole"
    run_maln("train", "--dataset", "synthetic-iemocap", "--variant", "full", "--seed", "0", "--threads", "1",
             "--set", "configuration=recommended", "--out", whole, cwd=root, check=True)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", target], cwd=root, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sidecar = root / "results/runs/synthetic-iemocap/full/seed0/checkpoint.json"
    deadline = time.time() + 300
    while not sidecar.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert sidecar.exists(), "training never wrote a checkpoint"
    time.sleep(0.5)
    trainer = subprocess.run(["pgrep", "-f", "-s", str(os.getpgid(proc.pid)), "maln train"], capture_output=True, text=True)
    pids = [int(p) for p in trainer.stdout.split()]
    assert pids, "no training process to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0  # snakemake reports the failed job
    assert not (root / target).exists()
    again = snakemake(root, "--cores", "1", target)
    log = (root / "results/logs/train/synthetic-iemocap/full/seed0.log").read_text()
    assert "resuming" in log, log[:2000]
    a = json.loads((root / target).read_text())
    b = json.loads((whole / "metrics.json").read_text())
    assert a == b
    assert (root / target).with_name("history.csv").read_bytes() == (whole / "history.csv").read_bytes()
    assert again.returncode == 0


PAYLOAD = b"feature bytes " * 20000


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    served = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        FlakyHandler.served += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if FlakyHandler.served == 1:  # the first transfer is cut short
            self.wfile.write(PAYLOAD[:5000])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.wfile.write(PAYLOAD)


def test_download_cut_short_then_fetch_again_gives_a_verified_file(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/FLAKY.pkl"
        sha1 = hashlib.sha1(b"blob %d\0" % len(PAYLOAD) + PAYLOAD).hexdigest()
        write_params(tmp_path, {"flaky": {"layout": "conv-emotion-iemocap", "url": url, "sha1": sha1}})
        first = run_maln("fetch", "flaky", cwd=tmp_path)
        assert first.returncode == 1 and "cut short" in first.stderr
        assert not (tmp_path / "data/raw/FLAKY.pkl").exists()
        run_maln("fetch", "flaky", cwd=tmp_path, check=True)
        assert (tmp_path / "data/raw/FLAKY.pkl").read_bytes() == PAYLOAD
        assert [p.name for p in (tmp_path / "data/raw").iterdir() if p.name.startswith(".")] == []
    finally:
        httpd.shutdown()


def test_corrupted_checkpoint_is_detected_and_training_restarts_from_scratch(synthetic_project, tmp_path):
    # 12 epochs: the kill below lands 0.2 s after the first epoch's checkpoint, and a run that had finished by
    # then (4 epochs of ~0.05 s on an idle host) would have removed it
    args = ["train", "--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "2", "--set", "train.epochs=12"]
    run_maln(*args, "--out", tmp_path / "clean", cwd=synthetic_project, check=True)
    out = tmp_path / "corrupt"
    proc = subprocess.Popen([sys.executable, "-m", "maln", *args, "--out", str(out)], cwd=synthetic_project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "checkpoint.json").exists():
        time.sleep(0.02)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    ckpt = out / json.loads((out / "checkpoint.json").read_text())["file"]
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x55  # one flipped byte in the middle of the weights
    ckpt.write_bytes(bytes(data))
    again = run_maln(*args, "--out", out, cwd=synthetic_project, check=True)
    assert "does not match its recorded SHA-256" in again.stderr and "starting from scratch" in again.stderr
    clean = json.loads((tmp_path / "clean/metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text()) == clean


def test_corrupted_store_is_refused_before_training(synthetic_project, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(synthetic_project / "data", root / "data")
    shutil.copy(synthetic_project / "params.yaml", root / "params.yaml")
    text = root / "data/features/synthetic-meld/text.npy"
    data = bytearray(text.read_bytes())
    data[-100] ^= 0xFF
    text.write_bytes(bytes(data))
    proc = run_maln("train", "--dataset", "synthetic-meld", "--variant", "full", "--seed", "0", cwd=root)
    assert proc.returncode == 1 and "text.npy: corrupted" in proc.stderr and "prepare the dataset again" in proc.stderr
    assert not (root / "results").exists()


def test_atomic_write_leaves_the_old_file_or_nothing_when_the_writer_fails(tmp_path):
    from maln import io

    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "no space left on device"),
    (errno.EDQUOT, "disk quota exceeded"),
    (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only file system"),
])
@pytest.mark.parametrize("existed", [True, False])
def test_a_refused_write_names_the_file_and_keeps_what_was_there(tmp_path, code, words, existed):
    """The faults injected here are raised by our own writer, as the OS raises them mid-write."""
    from maln import io
    from maln.errors import WriteError

    target = tmp_path / "metrics.json"
    if existed:
        target.write_text('{"old": true}')
    with pytest.raises(WriteError) as e:
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise OSError(code, os.strerror(code))
    kept = "the previous file is unchanged" if existed else "no file was created"
    assert str(e.value) == f"{words} while writing {io.shown(target)}; nothing was changed ({kept})"
    assert [p.name for p in tmp_path.iterdir()] == (["metrics.json"] if existed else [])
    if existed:
        assert target.read_text() == '{"old": true}'


def test_disk_full_mid_training_keeps_the_last_checkpoint_and_the_next_run_resumes(synthetic_project, tmp_path):
    """A checkpoint holds four copies of the weights (model, Adam's two moments, best model): in 1.5
    checkpoints of space, epoch 1's fits and epoch 2's does not (the previous one is removed only
    after the next is complete). The failure leaves epoch 1's state intact."""
    from maln.config import load_params
    from maln.data.store import load_store
    from maln.model.config import ModelConfig
    from maln.model.maln import MALN
    from maln.model.variants import get

    store = load_store(synthetic_project / "data/features/synthetic-meld")
    config, _ = load_params(synthetic_project / "params.yaml").run_config("synthetic-meld")
    model = MALN(store.modalities, len(store.class_names), ModelConfig.from_dict(config), get("text_only"), "synthetic-meld")
    checkpoint = 4 * 4 * sum(p.numel() for p in model.parameters())
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "0", "--threads", "1",
            "--set", "train.epochs=2", "--set", "train.patience=0", "--set", "resources.checkpoint_every_s=0", "--out", out]
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(small_fs(out, f"{int(1.5 * checkpoint) // 1024}k"))
        except Unavailable as e:
            pytest.skip(str(e))
        proc = run_maln(*args, cwd=synthetic_project)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "no space left on device while writing" in proc.stderr and "checkpoint-epoch2.pt" in proc.stderr
        pointer = json.loads((out / "checkpoint.json").read_text())
        assert pointer["epoch"] == 1 and sorted(p.name for p in out.iterdir()) == ["checkpoint-epoch1.pt", "checkpoint.json"]
        assert hashlib.sha256((out / "checkpoint-epoch1.pt").read_bytes()).hexdigest() == pointer["sha256"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        again = run_maln(*args, cwd=synthetic_project, check=True)
        assert "resuming synthetic-meld/text_only/seed0 after epoch 1" in again.stderr
        assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


WRITES = {"write_text", "write_bytes", "save", "savez", "savez_compressed", "savefig"}


def test_every_file_maln_writes_goes_through_an_atomic_rename():
    """Outside maln/io.py, a file is only written inside `with io.atomic_path(...)` or into the
    store's temporary folder (renamed as a whole), so a crash never leaves a half-written file."""
    offenders = []
    for path in (REPO / "maln").rglob("*.py"):
        if path.name == "io.py":
            continue
        tree = ast.parse(path.read_text())
        safe = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.With) and any("atomic_path" in ast.unparse(i.context_expr) for i in node.items):
                safe.update(range(node.lineno, node.end_lineno + 1))
            if isinstance(node, ast.FunctionDef) and node.name == "write_store":
                safe.update(range(node.lineno, node.end_lineno + 1))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            is_io = isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) == "io"
            writes = name in WRITES or (name == "open" and any(
                isinstance(a, ast.Constant) and isinstance(a.value, str) and ("w" in a.value or "a" in a.value)
                for a in node.args[1:]))
            lock_file = ".lock" in ast.unparse(node)  # a GPU slot's lock: its content (a PID) is never read back
            if writes and not is_io and not lock_file and node.lineno not in safe:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not offenders, "\n".join(offenders)


# -- concurrency ---------------------------------------------------------------------------------

def test_two_training_processes_at_once_equal_one_after_the_other(synthetic_project, tmp_path):
    # what two processes could share is the machine and the project's files, whatever the model; a
    # single-modality run keeps the four processes short (no probes, no scikit-learn to import)
    args = ["train", "--dataset", "synthetic-iemocap", "--variant", "text_only", "--set", "train.epochs=3", "--threads", "1"]
    for seed in (0, 1):
        run_maln(*args, "--seed", str(seed), "--out", tmp_path / f"serial{seed}", cwd=synthetic_project, check=True)
    procs = [subprocess.Popen([sys.executable, "-m", "maln", *args, "--seed", str(seed), "--out", str(tmp_path / f"parallel{seed}")],
                              cwd=synthetic_project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    for seed in (0, 1):
        a = json.loads((tmp_path / f"parallel{seed}/metrics.json").read_text())
        b = json.loads((tmp_path / f"serial{seed}/metrics.json").read_text())
        clock = [json.loads((tmp_path / f"parallel{s}/timing.json").read_text()) for s in (seed, 1 - seed)]
        assert clock[0]["started_at"] < clock[1]["finished_at"]
        assert a == b
        assert (tmp_path / f"parallel{seed}/predictions.csv").read_bytes() == (tmp_path / f"serial{seed}/predictions.csv").read_bytes()


def test_zero_variance_features_train_without_nan(tmp_path):
    """Constant features (zero variance) are valid: they prepare, and a model trains on them with
    finite losses (the orthogonality loss normalises zero vectors without dividing by zero)."""
    t = list(raw_tuple("conv-emotion-iemocap", dialogues(n=10, seed=4)))
    for i in (3, 4, 5):
        for k in t[i]:
            t[i][k] = np.full_like(t[i][k], 0.5)
    write_pickle(tmp_path / "data/raw/flat.pkl", tuple(t))
    write_params(tmp_path, {"flat": {"layout": "conv-emotion-iemocap", "path": "data/raw/flat.pkl",
                                      "overrides": {"model": {"width": 16, "context": {"hidden": {"text": 8, "audio": 8, "visual": 8}}}}}})
    run_maln("prepare", "flat", cwd=tmp_path, check=True)
    run_maln("train", "--dataset", "flat", "--variant", "full", "--seed", "0", "--set", "train.epochs=2", cwd=tmp_path, check=True)
    history = (tmp_path / "results/runs/flat/full/seed0/history.csv").read_text().splitlines()
    values = [float(x) for line in history[1:] for x in line.split(",")]
    assert all(np.isfinite(values))
    metrics = json.loads((tmp_path / "results/runs/flat/full/seed0/metrics.json").read_text())
    assert np.isfinite(metrics["test"]["weighted_f1"])


def test_repeated_kills_at_random_moments_never_lose_the_last_good_state(synthetic_project, tmp_path):
    """kill -9 wherever it lands (mid-epoch, mid-checkpoint-write, between the state file and its
    pointer): the next start resumes from the last complete epoch, and the end result is the
    uninterrupted run's."""
    args = ["train", "--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "5",
            "--set", "train.epochs=10", "--set", "resources.checkpoint_every_s=0", "--threads", "1"]
    run_maln(*args, "--out", tmp_path / "whole", cwd=synthetic_project, check=True)
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    for _ in range(6):
        had_checkpoint = (out / "checkpoint.json").exists()
        proc = subprocess.Popen([sys.executable, "-m", "maln", *args, "--out", str(out)], cwd=synthetic_project,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.5, 3.5))
        proc.kill()
        _, err = proc.communicate()
        assert not (had_checkpoint and "starting from scratch" in err), err
        if (out / "metrics.json").exists():
            break
    final = run_maln(*args, "--out", out, cwd=synthetic_project, check=True)
    assert "starting from scratch" not in final.stderr
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((tmp_path / "whole/metrics.json").read_text())
    assert a == b
