"""Reading back the project's own files (maln/readback.py and the readers that use it): each broken
file is one DataError naming the file, the problem and the command that writes it again; nothing
that a reader could block on (a FIFO) is ever opened."""

import json
import os
import shutil
import threading

import numpy as np
import pytest
import yaml

import trained
from maln import readback
from maln.errors import DataError, MalnError


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return trained.copy_to(tmp_path_factory.mktemp("readback") / "project")


def _fifo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _in_time(fn, seconds=5.0):
    """fn() in a thread; fails instead of hanging when fn blocks (a FIFO opened for reading)."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked"
    if "error" in out:
        raise out["error"]
    return out.get("value")


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"  \n", "empty"),
    (b'{"a": 1', "not valid JSON"),
    (b'{"a": NaN}', "holds NaN, which maln never writes"),
    (b'{"a": -Infinity}', "holds -Infinity"),
    (b'{"a": ' + b"9" * 5000 + b"}", "Exceeds the limit (4300 digits)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": "\xff"}', "not UTF-8 text (byte 0xff"),
])
def test_a_broken_json_file_is_one_data_error(tmp_path, content, problem):
    path = tmp_path / "metrics.json"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        readback.read_json(path, "train it again")
    assert problem in str(e.value) and str(e.value).endswith("; train it again")


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.mkdir(), "is a directory; a regular file is needed"),
    (_fifo, "is a named pipe (FIFO)"),
    (lambda p: None, "missing"),
])
def test_a_json_path_that_is_no_file_is_refused_without_opening_it(tmp_path, make, problem):
    path = tmp_path / "metrics.json"
    make(path)
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        _in_time(lambda: readback.read_json(path, "r"))


@pytest.mark.parametrize("text, problem", [
    ("a,b\n1,2", "cut short (its last line does not end)"),
    ("a,b\n1\n", "line 2 has fewer fields than the header"),
    ("a,b\n1,2,3\n", "line 2 has more fields than the header"),
    ("a,b\n1,x\n", "line 2: b is 'x', not a finite number"),
    ("a,b\n1,inf\n", "line 2: b is 'inf', not a finite number"),
    ("a\n1\n", "no column 'b'"),
    ("a,b\n", "has a header and no rows"),
    ("a,b\n1,2\n", "has 1 rows where metrics.json counts 2"),
    ('a,b\n"1,2\n', "line 2 has fewer fields"),
])
def test_a_broken_csv_is_one_data_error(tmp_path, text, problem):
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        readback.read_csv(path, "r", ("a", "b"), rows=2)
    assert problem in str(e.value)


def test_the_remedy_of_a_run_folder_is_the_command_that_writes_it(tmp_path):
    assert readback.folder_remedy(tmp_path / "results/runs/meld/full/seed3") == (
        f"train it again: `maln train --dataset meld --variant full --seed 3 --out "
        f"{tmp_path}/results/runs/meld/full/seed3 --force`")
    assert readback.folder_remedy(tmp_path / "results/runs/meld/paper/full/seed3") == (
        f"train it again: `maln train --dataset meld --variant full --seed 3 --set configuration=paper --out "
        f"{tmp_path}/results/runs/meld/paper/full/seed3 --force`")
    assert "--dataset DATASET" in readback.folder_remedy(tmp_path / "elsewhere")


def test_the_finished_study_reads_back_whole(study):
    from maln.config import load_params
    from maln.report.runs import load_study

    s = load_study(study, load_params(study / "params.yaml").data)
    run = s.get(trained.DATASET, trained.VARIANT)[0]
    assert len(run.gold) == run.metrics["test"]["n"] and len(run.history) == run.metrics["epochs_run"]
    gold, logp = run.log_probs("valid")
    assert logp.shape == (run.metrics["valid"]["n"], len(run.class_names)) and np.isfinite(logp).all()


def _copy(study, tmp_path):
    return trained.copy_to(tmp_path / "project")


def test_a_run_of_another_store_is_named(study, tmp_path):
    root = _copy(study, tmp_path)
    path = root / trained.RUN / "metrics.json"
    m = json.loads(path.read_text())
    m["store_hash"] = "0" * 64
    path.write_text(json.dumps(m))
    other = root / "results/runs/synthetic-meld/full/seed1"
    shutil.copytree(root / trained.RUN, other)
    m2 = json.loads((root / trained.RUN / "metrics.json").read_text())
    m2.update(seed=1, store_hash="1" * 64)
    (other / "metrics.json").write_text(json.dumps(m2))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["study"]["seeds"] = [0, 1]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = trained.run_in_process(root, ["aggregate"])
    assert code == 1 and "was trained on another store or classes than" in err and "--seed 1 --force" in err


def test_valid_predictions_are_checked_when_the_late_fusion_reads_them(study, tmp_path):
    from maln.config import load_params
    from maln.report.runs import load_study

    root = _copy(study, tmp_path)
    (root / trained.RUN / "valid_predictions.csv").write_text("dialogue_id,position\n")
    run = load_study(root, load_params(root / "params.yaml").data).get(trained.DATASET, trained.VARIANT)[0]
    with pytest.raises(DataError, match=r"valid_predictions.csv: no column 'speaker'.*--force"):
        run.log_probs("valid")


def test_a_broken_sweep_run_names_the_command_with_its_setting(study, tmp_path):
    from maln.config import load_params
    from maln.report.runs import load_sweep
    from maln.study import sweep_path

    root = _copy(study, tmp_path)
    params = load_params(root / "params.yaml", ["sweep={train.lr: [0.01]}"])
    path = root / sweep_path("train.lr", "0.01", trained.DATASET, 0) / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"dataset": "synthetic-meld"}\n')
    with pytest.raises(DataError) as e:
        load_sweep(root, params.data)
    assert "missing field" in str(e.value) and "--set train.lr=0.01 --out results/sweeps/train.lr/0.01/" in str(e.value)


@pytest.mark.parametrize("change, problem", [
    (lambda meta: meta["arrays"].update({"../../evil.npy": "0" * 64}), "arrays: '../../evil.npy' does not match"),
    (lambda meta: meta.pop("class_names"), "meta.json: missing field 'class_names'; prepare the dataset again"),
])
def test_a_store_whose_meta_json_was_edited_with_a_matching_hash_is_still_checked(study, tmp_path, change, problem):
    from maln.data.store import load_store
    from maln.io import canonical_hash

    root = _copy(study, tmp_path)
    meta_path = root / trained.STORE / "meta.json"
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta["store_hash"] = canonical_hash({k: v for k, v in meta.items() if k != "store_hash"})
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError) as e:
        load_store(root / trained.STORE)
    assert problem in str(e.value)


def test_resume_state_that_cannot_be_read_is_ignored_without_blocking(tmp_path, capsys):
    from maln.runs import completed as _completed, load_resume_state as _load_checkpoint

    _fifo(tmp_path / "checkpoint.json")
    assert _in_time(lambda: _load_checkpoint(tmp_path, "c", "s")) is None
    assert "starting from scratch" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("[1, 2]")
    assert _completed(tmp_path, "c", "s") is None  # valid JSON of the wrong type: trained again
    (tmp_path / "metrics.json").unlink()
    _fifo(tmp_path / "metrics.json")
    with pytest.raises(MalnError, match=r"metrics.json: is a named pipe \(FIFO\).*remove it"):
        _in_time(lambda: _completed(tmp_path, "c", "s"))


def test_a_checkpoint_of_another_version_lacking_state_starts_from_scratch(tmp_path, capsys):
    import torch

    from maln import io
    from maln.runs import load_resume_state as _load_checkpoint

    torch.save({"format": "maln-checkpoint", "config_hash": "c", "store_hash": "s", "epoch": 1},
               tmp_path / "checkpoint-epoch1.pt")
    digest = io.sha256_file(tmp_path / "checkpoint-epoch1.pt")
    (tmp_path / "checkpoint.json").write_text(json.dumps({"file": "checkpoint-epoch1.pt", "sha256": digest, "epoch": 1}))
    assert _load_checkpoint(tmp_path, "c", "s") is None
    assert "lacks model, optimizer" in capsys.readouterr().err
