"""The data commands through the real CLI, as a newcomer runs them."""

import json

import numpy as np

from builders import dialogues, raw_tuple, write_params, write_pickle
from conftest import run_maln


def test_synth_then_prepare_builds_a_store(tmp_path):
    write_params(tmp_path)
    run_maln("synth", cwd=tmp_path, check=True)
    assert (tmp_path / "data/raw/synthetic-iemocap.pkl").is_file()
    proc = run_maln("prepare", "synthetic-iemocap", cwd=tmp_path, check=True)
    assert "synthetic-iemocap: 80 dialogues" in proc.stderr
    meta = json.loads((tmp_path / "data/features/synthetic-iemocap/meta.json").read_text())
    assert meta["sources"][0]["path"] == "data/raw/synthetic-iemocap.pkl"
    assert len(meta["sources"][0]["sha256"]) == 64


def test_synth_size_is_configurable(tmp_path):
    write_params(tmp_path)
    run_maln("synth", "synthetic-meld", "--set", "datasets.synthetic-meld.synthetic.dialogues=20", cwd=tmp_path, check=True)
    run_maln("prepare", "synthetic-meld", "--set", "datasets.synthetic-meld.synthetic.dialogues=20", cwd=tmp_path, check=True)
    meta = json.loads((tmp_path / "data/features/synthetic-meld/meta.json").read_text())
    assert meta["n_dialogues"] == 20


def test_path_entry_with_any_dimensions_prepares(tmp_path):
    dims = {"text": 33, "audio": 1582, "visual": 342}  # MMGCN's IEMOCAP file has these
    write_pickle(tmp_path / "data/raw/mmgcn_iemocap.pkl", raw_tuple("conv-emotion-iemocap", dialogues(n=10, dims=dims)), protocol=2)
    write_params(tmp_path, {"mine": {"layout": "conv-emotion-iemocap", "path": "data/raw/mmgcn_iemocap.pkl"}})
    run_maln("prepare", "mine", cwd=tmp_path, check=True)
    meta = json.loads((tmp_path / "data/features/mine/meta.json").read_text())
    assert meta["modalities"] == dims
    assert np.load(tmp_path / "data/features/mine/visual.npy").shape[1] == 342


def test_prepare_of_a_missing_download_explains_what_to_do(tmp_path):
    write_params(tmp_path)
    proc = run_maln("prepare", "meld", cwd=tmp_path)
    assert proc.returncode == 1
    assert "MELD_features_raw.pkl does not exist" in proc.stderr and "place the file by hand" in proc.stderr
    assert not (tmp_path / "data/features/meld").exists()


def test_unknown_dataset_is_named(tmp_path):
    write_params(tmp_path)
    proc = run_maln("prepare", "imeocap", cwd=tmp_path)
    assert proc.returncode == 1 and "unknown dataset 'imeocap'" in proc.stderr and "Traceback" not in proc.stderr
