"""Training, evaluation and prediction through the real CLI and the real training loop."""

import csv
import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import run_maln
from maln.config import load_params
from maln.metrics import classification_metrics
from maln.study import RUN_FILES
from maln.train import Run


@pytest.fixture(scope="module")
def trained(synthetic_project):
    """One real run through the CLI: synthetic-iemocap, full, seed 0, 4 epochs."""
    out = synthetic_project / "results/runs/synthetic-iemocap/full/seed0"
    proc = run_maln("train", "--dataset", "synthetic-iemocap", "--variant", "full", "--seed", "0",
                    "--set", "train.epochs=4", "--threads", "1", cwd=synthetic_project, check=True)
    return out, proc


def test_every_head_of_a_multimodal_run_has_its_own_scores(trained):
    """The fusion classifier's and each modality's own WF1 and NLL, valid and test (issue 22): a
    head given no weight by the combination can be told from one that is merely worse."""
    out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    heads = metrics["heads"]
    assert set(heads) == {"prediction", "fusion", "text", "audio", "visual",  # and model.linear_head's:
                          "linear", "linear_text", "linear_audio", "linear_visual"}
    assert heads["prediction"]["test"]["weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"], abs=1e-6)
    assert heads["prediction"]["valid"]["weighted_f1"] == pytest.approx(metrics["valid"]["weighted_f1"], abs=1e-6)
    rows = (out / "predictions.csv").read_text().splitlines()
    gold = np.array([metrics["class_names"].index(r.split(",")[3]) for r in rows[1:]])
    probs = np.array([[float(x) for x in r.split(",")[5:]] for r in rows[1:]])
    nll = -np.mean(np.log(np.maximum(probs[np.arange(len(gold)), gold], 1e-12)))
    assert heads["prediction"]["test"]["nll"] == pytest.approx(nll, abs=2e-3)  # the CSV rounds probabilities
    assert all(0 <= h[s]["weighted_f1"] <= 1 and h[s]["nll"] > 0 for h in heads.values() for s in ("valid", "test"))
    assert len({h["test"]["nll"] for h in heads.values()}) == len(heads)  # six different classifiers


def test_a_run_leaves_every_output(trained):
    out, proc = trained
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.json").exists() and not list(out.glob("checkpoint-epoch*.pt"))
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("valid", "test"):
        for key in ("accuracy", "weighted_f1", "macro_f1", "waa", "per_class", "confusion"):
            assert key in metrics[split]
    assert metrics["epochs_run"] == 4 and 1 <= metrics["best_epoch"] <= 4
    assert len(metrics["config_hash"]) == 64 and len(metrics["store_hash"]) == 64
    assert metrics["parameters"] > 0 and metrics["device"] == "cpu" and metrics["precision"] == "float32"
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["epoch"] == metrics["best_epoch"] and ckpt["class_names"] == metrics["class_names"]
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:7] == ["epoch", "ce", "unimodal", "adversarial", "discriminator", "orthogonality", "loss"]
    assert len(history) == 5
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("dialogue_id,position,speaker,gold,predicted,p_hap")
    assert len(rows) - 1 == metrics["test"]["n"]
    probs = np.array([[float(x) for x in r.split(",")[5:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    probes = metrics["invariance"]
    assert probes["chance"] == pytest.approx(1 / 3)
    # no bound on the specific features: since AMDM reads the standardised features (issue 22) they
    # are linear projections of inputs that look alike across modalities, and nothing asks a probe
    # to tell them apart (tests/test_probes.py checks the probes on features made to differ)
    assert 0 <= probes["common_modality_accuracy"] <= 1 and 0 <= probes["specific_modality_accuracy"] <= 1
    feats = np.load(out / "features.npz", allow_pickle=False)
    assert feats["specific"].shape == (metrics["test"]["n"], 3, 48) == feats["common"].shape
    assert re.search(r"epoch 4/4 loss [0-9.]+ .* valid acc [0-9.]+ wf1 [0-9.]+", proc.stderr)  # per-epoch log lines


def test_the_prediction_combines_the_heads_each_decoded_by_the_training_splits_emotion_chain(trained, synthetic_project):
    """model.decode: chain (the recommended configuration), branchwise: the checkpoint carries the
    training split's transitions and prior and each head's (mix, temperature) chosen on validation,
    and predictions.csv holds the combination of the decoded heads."""
    from maln import chain
    from maln.combination import posterior
    from maln.inference import predict

    out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    names = ("fusion", "text", "audio", "visual", "linear", "linear_text", "linear_audio", "linear_visual")  # linear*: model.linear_head
    settings = [(metrics["decoding"][n]["mix"], metrics["decoding"][n]["temperature"]) for n in names]
    for s in settings:
        assert s == chain.IDENTITY or (s[0] in chain.MIXES and s[1] in chain.TEMPERATURES)
    run = Run(load_params(synthetic_project / "params.yaml", ["train.epochs=4"]), "synthetic-iemocap", "full", threads=1)
    model = run.build_model(0)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True)["model"])
    store = run.store
    transition = chain.transitions(store.labels, store.offsets, store.dialogues("train"), len(store.class_names))
    np.testing.assert_allclose(model.decoder.transition.numpy(), transition, rtol=1e-6)
    np.testing.assert_allclose(model.decoder.prior.numpy(), store.class_prior, rtol=1e-6)
    assert [tuple(r) for r in model.decoder.setting.tolist()] == settings
    assert model.combination.tolist() == [metrics["combination"][n] for n in names]
    p = predict(model, run.data, store.dialogues("test"), 8)
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    np.testing.assert_allclose(np.array([[float(x) for x in r.split(",")[5:]] for r in rows]), p.probs, atol=1e-5)
    # whatever validation chose for this short run: settings set by hand decode through predict exactly
    by_hand = [(0.5, 0.75), (0.75, 1.0), (0.0, 1.0), (0.25, 1.0), (1.0, 0.5), (0.5, 0.5), (0.0, 1.0), (1.0, 1.0)]
    model.decoder.setting.copy_(torch.tensor(by_hand))
    p = predict(model, run.data, store.dialogues("test"), 8)
    decoded = [np.log(np.maximum(chain.decode(np.exp(p.heads[n]), p.dialogue, transition, np.asarray(store.class_prior),
                                              *s), 1e-12)) for n, s in zip(names, by_hand)]
    expected = posterior(decoded, model.combination.numpy(), model.log_prior.numpy())
    np.testing.assert_allclose(p.probs, expected, atol=1e-5)
    assert np.abs(p.probs - p.undecoded).max() > 1e-3


def test_distillation_is_refused_where_the_auxiliary_heads_read_the_common_features(synthetic_project):
    """Joint training: the auxiliary classifiers read AMDM's common features, which a modality's
    teacher would pull towards that modality; train.distill must be 0 there (the paper's configuration)."""
    from maln.errors import ConfigError

    joint = ["model.training=joint", "model.amdm_reads=branches", "model.linear_head=false"]
    with pytest.raises(ConfigError, match="train.distill needs model.training: branchwise"):
        Run(load_params(synthetic_project / "params.yaml", joint), "synthetic-iemocap", "full", threads=1)
    assert Run(load_params(synthetic_project / "params.yaml", [*joint, "train.distill=0"]), "synthetic-iemocap",
               "full", threads=1).teachers.fit() is None
    # a single modality's classifier reads its branch whatever the training
    assert Run(load_params(synthetic_project / "params.yaml", joint), "synthetic-iemocap", "text_only", threads=1)


def test_the_branches_learn_from_their_regressions_as_the_synthetic_budget_says(trained):
    """train.distill (1 in the synthetic budget): every epoch's loss holds the heads' cross-entropy
    against their context-free regressions' cross-fitted posteriors, logged in history.csv."""
    out, _ = trained
    history = list(csv.DictReader((out / "history.csv").open()))
    assert [float(h["distill"]) > 0 for h in history] == [True] * 4
    # three heads' cross-entropies against soft targets over 6 emotions: above 0, under 3 x log 6 by far
    assert all(float(h["distill"]) < 3 * np.log(6) for h in history)
    assert json.loads((out / "metrics.json").read_text())["config"]["train"]["distill"] == 1.0


def test_evaluate_reproduces_the_stored_test_metrics(trained, synthetic_project):
    out, _ = trained
    proc = run_maln("evaluate", "--checkpoint", out / "model.pt", cwd=synthetic_project, check=True)
    stored = json.loads((out / "metrics.json").read_text())["test"]
    printed = json.loads(proc.stdout)
    assert printed["weighted_f1"] == stored["weighted_f1"] and printed["per_class"] == stored["per_class"]
    assert "equal to" in proc.stderr


def test_predict_labels_a_feature_file(trained, synthetic_project):
    out, _ = trained
    target = synthetic_project / "pred.csv"
    run_maln("predict", "--checkpoint", out / "model.pt", "--input", "data/raw/synthetic-iemocap.pkl",
             "--output", target, cwd=synthetic_project, check=True)
    rows = target.read_text().splitlines()
    meta = json.loads((synthetic_project / "data/features/synthetic-iemocap/meta.json").read_text())
    assert len(rows) - 1 == meta["n_utterances"]  # every dialogue, whatever its split


def test_predict_refuses_features_of_the_wrong_size(trained, synthetic_project):
    out, _ = trained
    proc = run_maln("predict", "--checkpoint", out / "model.pt", "--input", "data/raw/synthetic-meld.pkl",
                    "--layout", "conv-emotion-meld", cwd=synthetic_project)
    assert proc.returncode == 1 and "text features are 600-d, the model was trained on 100-d" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_variant_without_its_modality_exits_3_with_one_line(synthetic_project):
    proc = run_maln("train", "--dataset", "synthetic-meld", "--variant", "visual_only", "--seed", "0",
                    cwd=synthetic_project)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "not applicable" in proc.stderr


def test_importing_maln_pins_the_avx2_cpu_kernels_unless_the_environment_chose():
    """An AVX-512 host rounds differently from an AVX2 one (maln/__init__.py): there, any process
    that imports maln gets torch's, OpenBLAS's and numpy's AVX2 kernels, and a choice made in the
    environment stands; elsewhere nothing is set."""
    import platform

    # oneDNN is left its own choice: float32 training never reaches it, and train.bf16 needs its AMX kernels
    names = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")
    ask = ("import json, os, maln, numpy, scipy.linalg, torch, threadpoolctl\n"
           "from numpy._core._multiarray_umath import __cpu_features__\n"
           "print(json.dumps([torch.backends.cpu.get_cpu_capability(), __cpu_features__.get('X86_V4'), "
           "sorted({i['architecture'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'}), "
           f"[n for n in {names!r} if n in os.environ]]))")
    env = {k: v for k, v in os.environ.items() if k not in names}

    def child(**extra):
        out = subprocess.run([sys.executable, "-W", "error::ImportWarning", "-c", ask], env={**env, **extra},
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    with open("/proc/cpuinfo") as f:
        avx512 = platform.machine() == "x86_64" and re.search(r"^flags\s*:.*\bavx512f\b", f.read(), re.M)
    if not avx512:
        assert child()[3] == [], "maln set kernel choices on a CPU without AVX-512"
        return
    assert child() == ["AVX2", False, ["Haswell"], [n for n in names if n != "ONEDNN_MAX_CPU_ISA"]]
    assert child(ATEN_CPU_CAPABILITY="default")[0] == "DEFAULT"


def test_two_runs_with_one_seed_give_identical_results(synthetic_project, tmp_path):
    params = load_params(synthetic_project / "params.yaml", ["train.epochs=3"])
    run = Run(params, "synthetic-meld", "full", threads=1)
    a = run.train_seed(5, tmp_path / "a", progress=False)
    b = run.train_seed(5, tmp_path / "b", progress=False)
    assert a == b
    # every versioned file byte for byte (DVC sees no change); the clock times only in timing.json,
    # which .dvcignore keeps out of the run folder's hash in dvc.lock
    for name in RUN_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    clock = json.loads((tmp_path / "a/timing.json").read_text())
    assert clock["wall_time_s"] > 0 and len(clock["epoch_seconds"]) == 3
    run.train_seed(6, tmp_path / "c", progress=False)
    assert (tmp_path / "c/history.csv").read_bytes() != (tmp_path / "a/history.csv").read_bytes()


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 5, 300))  # class 5 never predicted
    names = ["hap", "sad", "neu", "ang", "exc", "fru"]
    m = classification_metrics(gold, pred, names)
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert m["weighted_f1"] == pytest.approx(f1_score(gold, pred, average="weighted", zero_division=0))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=range(6), zero_division=0)
    for i, name in enumerate(names):
        assert m["per_class"][name]["precision"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]
    assert m["confusion"] == confusion_matrix(gold, pred, labels=range(6)).tolist()
    assert m["waa"] == pytest.approx(m["accuracy"])


def test_evaluate_says_when_the_run_computed_in_another_precision(trained, synthetic_project, tmp_path):
    """A run trained with bf16 (CUDA's autocast, or a CPU's AMX) and evaluated where that precision
    is not available may differ in a last prediction: `maln evaluate` names both precisions."""
    import shutil

    from maln.evaluate import evaluate_checkpoint

    out, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    store = synthetic_project / "data/features/synthetic-iemocap"
    assert evaluate_checkpoint(copy / "model.pt", store)[2] == ""  # trained and evaluated in float32
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps(metrics | {"precision": "bf16 autocast"}))
    result, stored, note = evaluate_checkpoint(copy / "model.pt", store)
    assert result == stored and note == "the run computed in bf16 autocast, this evaluation in float32"


def test_hostile_checkpoint_is_refused(synthetic_project, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "model.pt"
    torch.save({"format": "maln-model", "payload": Evil()}, path)
    proc = run_maln("evaluate", "--checkpoint", path, cwd=synthetic_project)
    assert proc.returncode == 1 and "refused or unreadable checkpoint" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_recorded_test_scores_never_steer_selection(synthetic_project, tmp_path, monkeypatch):
    """The per-epoch test scores (for the protocol table) are written, never read: with them
    replaced by random numbers the same epoch is selected and the same weights are saved."""
    params = load_params(synthetic_project / "params.yaml", ["train.epochs=4"])
    run = Run(params, "synthetic-meld", "no_sclm", threads=1)
    honest = run.train_seed(0, tmp_path / "honest", progress=False)
    rng = np.random.default_rng(0)
    monkeypatch.setattr(Run, "_test_curve_score", lambda self, step: float(rng.random()))
    perturbed = run.train_seed(0, tmp_path / "perturbed", progress=False)
    assert perturbed["best_epoch"] == honest["best_epoch"] and perturbed["test"] == honest["test"]
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True)["model"] for d in ("honest", "perturbed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    def col(d):
        with open(tmp_path / d / "history.csv") as f:
            return [row["test_weighted_f1"] for row in csv.DictReader(f)]
    assert col("honest") != col("perturbed")


def test_the_default_adversary_hides_part_of_the_modality_from_the_common_features_and_keeps_it_in_the_specific(
        synthetic_project, tmp_path):
    """Issue 13, measured out of sample (issue 21: probes fitted and scored on disjoint test
    dialogues). Since AMDM reads the standardised features (issue 22), a linear probe reads the
    modality from the common features at 50 % without an adversary (chance 33 %) and at 35 % with
    the default one (erasure) after a short run; a small MLP probe still reads the modality from
    the specific features (92 %). Before issue 22 (AMDM on the branches' outputs) the figures were
    100 % and 70 %."""
    params = load_params(synthetic_project / "params.yaml", ["train.epochs=6"])
    assert params.run_config("synthetic-iemocap")[0]["adversary"] == "erasure"
    probes = {variant: Run(params, "synthetic-iemocap", variant, threads=1).train_seed(
        0, tmp_path / variant, progress=False)["invariance"] for variant in ("no_adversary", "full")}
    chance = probes["full"]["chance"]
    assert probes["no_adversary"]["common_modality_accuracy"] > chance + 0.1
    assert probes["full"]["common_modality_accuracy"] < probes["no_adversary"]["common_modality_accuracy"] - 0.1
    assert probes["full"]["specific_modality_accuracy_mlp"] > 0.85


def test_amdm_learns_at_its_own_rate_and_every_parameter_is_optimised_once(synthetic_project):
    from maln.optim import input_parameters
    from maln.train import make_optimizer

    params = load_params(synthetic_project / "params.yaml", ["train.amdm_lr_scale=4", "train.weight_decay=1.0e-4",
                                                             "train.branch_weight_decay=5.0e-3",
                                                             "train.input_weight_decay=2.0e-2",
                                                             "train.fusion_input_weight_decay=null"])
    for variant in ("full", "text_only"):
        run = Run(params, "synthetic-iemocap", variant, threads=1)
        model = run.build_model(0)
        groups = make_optimizer(model, run.train_cfg).param_groups
        ids = [id(p) for g in groups for p in g["params"]]
        assert sorted(ids) == sorted(id(p) for p in model.parameters())
        amdm = {id(p) for p in model.amdm.parameters()} if getattr(model, "amdm", None) is not None else set()
        branches = {id(p) for name in ("context", "sclm", "aux") if hasattr(model, name)
                    for p in getattr(model, name).parameters()}
        if variant == "text_only":  # a single modality's classifier is its branch's
            branches |= {id(p) for p in model.classifier.parameters()}
        inputs = {id(p) for p in input_parameters(model)}
        assert len(inputs) == 2 * len(model.context)  # both directions of each GRU's first layer
        for g in groups:
            members = {id(p) for p in g["params"]}
            assert g["lr"] == pytest.approx(run.train_cfg.lr * (4 if members <= amdm else 1))
            assert g["weight_decay"] == (2e-2 if members <= inputs else 5e-3 if members <= branches else 1e-4)
        assert len(groups) == (4 if amdm else 2)
    # the fusion path's input weights (AMDM's specific and common encoders on the features) in a group of their own
    from maln.optim import fusion_input_parameters

    run = Run(load_params(synthetic_project / "params.yaml", ["train.amdm_lr_scale=4",
                                                              "train.fusion_input_weight_decay=3.0e-2"]),
              "synthetic-iemocap", "full", threads=1)
    model = run.build_model(0)
    groups = make_optimizer(model, run.train_cfg).param_groups
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in model.parameters())
    fusion_inputs = {id(p) for p in fusion_input_parameters(model)}
    assert len(fusion_inputs) == 2 * len(model.modalities)
    held = [g for g in groups if {id(p) for p in g["params"]} == fusion_inputs]
    assert len(held) == 1 and held[0]["weight_decay"] == 3e-2 and held[0]["lr"] == pytest.approx(4 * run.train_cfg.lr)
    assert all(p.shape[1] == model.amdm.specific[m][0].in_features  # they read the input features
               for m, p in zip(model.modalities, fusion_input_parameters(model)))


def test_our_adam_steps_exactly_as_torchs_and_their_states_are_interchangeable():
    """maln.optim.Adam only skips torch's graph breaks for torch.compile: same parameters to the
    bit after steps with weight decay and two groups, and a checkpointed state loads either way."""
    from maln.optim import Adam

    def run(cls, state=None):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
        opt = cls([{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 3e-3}],
                  lr=1e-2, weight_decay=1e-4)
        if state is not None:
            opt.load_state_dict(state)
        x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()], opt.state_dict()

    ours, our_state = run(Adam)
    theirs, their_state = run(torch.optim.Adam)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert all(torch.equal(a, b) for a, b in zip(run(Adam, their_state)[0], run(torch.optim.Adam, our_state)[0]))


def test_adam_is_fused_where_torch_has_the_kernel_and_a_resume_keeps_it():
    """Fused on CPU parameters, foreach on a device without the fused kernel (torch would only say
    so at the first step); a checkpoint from a foreach optimizer (written before fused was used)
    loads without switching the resumed run's kernels."""
    from maln.optim import Adam, kernels, load_state

    net = torch.nn.Linear(3, 2)
    assert kernels(net.parameters()) == {"fused": True}
    assert kernels([torch.nn.Parameter(torch.empty(2, device="meta"))]) == {"foreach": True}
    old = Adam(net.parameters(), lr=1e-2, foreach=True)
    net(torch.randn(4, 3)).sum().backward()
    old.step()
    plain, resumed = (Adam(net.parameters(), lr=1e-2, fused=True) for _ in range(2))
    plain.load_state_dict(old.state_dict())
    load_state(resumed, old.state_dict())
    assert (plain.param_groups[0]["fused"], plain.param_groups[0]["foreach"]) == (None, True)  # what load_state undoes
    assert (resumed.param_groups[0]["fused"], resumed.param_groups[0]["foreach"]) == (True, None)
    assert resumed.state_dict()["state"][0]["step"] == 1


def test_a_training_process_never_imports_torchs_compiler(synthetic_project):
    """torch._dynamo and torch._inductor cost about 2 s of every training job's start on this
    machine, symbolic shapes (for attention's mask check) 0.5 s, and do nothing where nothing is
    compiled (maln/optim.py). no_adversary: every module of the model, attention included."""
    code = ("import sys; from maln.cli import main; "
            "main(['train', '--dataset', 'synthetic-iemocap', '--variant', 'no_adversary', '--seed', '0', '--threads', '1', "
            "'--set', 'train.epochs=1', '--out', sys.argv[1]]); "
            "print(sorted(m for m in ('torch._dynamo', 'torch._inductor', 'torch.fx.experimental.symbolic_shapes') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(synthetic_project / "no-compiler-run")],
                          cwd=synthetic_project, capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


def test_the_attention_mask_check_without_symbolic_shapes_still_refuses_a_wrong_mask():
    from maln.optim import _check_key_padding_mask

    _check_key_padding_mask(torch.zeros(2, 5, dtype=torch.bool), 5, 2)
    with pytest.raises(AssertionError, match=r"shape\[0\] to be 3, but got 2"):
        _check_key_padding_mask(torch.zeros(2, 5, dtype=torch.bool), 5, 3)
    with pytest.raises(AssertionError, match=r"shape\[1\] to be 5, but got 4"):
        _check_key_padding_mask(torch.zeros(2, 4, dtype=torch.bool), 5, 2)


def test_threads_bound_numpys_blas_as_well_as_torch_whatever_the_environment_says(synthetic_project):
    """Snakemake sets OMP_NUM_THREADS and OPENBLAS_NUM_THREADS to the CPUs it counts for a job, which
    may exceed the job's threads (workflow/rules/common.smk job_cpus); `--threads` decides."""
    code = ("import torch; from threadpoolctl import threadpool_info; from maln.config import load_params; "
            "from maln.train import Run; Run(load_params('params.yaml'), 'synthetic-meld', 'full', threads=1); "
            "import scipy.linalg, sklearn.linear_model; "  # libraries loaded afterwards: scipy's BLAS, OpenMP
            "print(torch.get_num_threads(), sorted({p['num_threads'] for p in threadpool_info()}))")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=synthetic_project, env=env, capture_output=True, text=True,
                          check=True)
    assert proc.stdout.split() == ["1", "[1]"], proc.stdout + proc.stderr


@pytest.mark.parametrize("every, epochs_saved", [(0, [1, 2, 3]), (3600, [1])])
def test_resume_checkpoints_are_written_after_the_first_epoch_then_every_so_many_seconds(
        synthetic_project, tmp_path, monkeypatch, every, epochs_saved):
    import maln.train

    saved = []
    write = maln.train.save_checkpoint
    monkeypatch.setattr(maln.train, "save_checkpoint", lambda out, state: (saved.append(state["epoch"]), write(out, state)))
    params = load_params(synthetic_project / "params.yaml", ["train.epochs=3", f"resources.checkpoint_every_s={every}"])
    Run(params, "synthetic-meld", "text_only", threads=1).train_seed(0, tmp_path / "run", progress=False)
    assert saved == epochs_saved


def linear_head_scores(store, baseline: str, grid) -> dict:
    """What model.linear_lda makes a linear head, scored by scikit-learn: the study's regression `baseline`
    or shrinkage LDA on the same inputs, whichever has the lower validation NLL; {split: metrics}."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from maln.baselines import BASELINES, classifier, features_of, fit, split_rows
    from maln.metrics import classification_metrics

    b = BASELINES[baseline]
    rows = {s: split_rows(store, s) for s in ("train", "valid", "test")}
    x = {s: features_of(store, b.uses(store.modalities), r) for s, r in rows.items()}
    y = {s: np.asarray(store.labels)[r] for s, r in rows.items()}
    fitted = [classifier(b, fit(store, b, grid)["C"]).fit(x["train"], y["train"]),
              LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x["train"], y["train"])]
    nll = [-np.log(np.maximum(m.predict_proba(x["valid"])[np.arange(len(y["valid"])),
                                                          np.searchsorted(m.classes_, y["valid"])], 1e-12)).mean()
           for m in fitted]
    model = fitted[int(np.argmin(nll))]
    return {s: classification_metrics(y[s], model.predict(x[s]), store.class_names) for s in ("valid", "test")}


def test_the_linear_heads_are_the_studys_regressions_and_join_the_combination(trained, synthetic_project):
    """model.linear_head (true in the recommended configuration): the study's logreg_all and each logreg_X (or,
    with model.linear_lda, shrinkage LDA where its validation NLL is lower), fitted before training and never
    trained, are heads of the validated combination; their own test scores are scikit-learn's fits' (to a
    near-tie or two), and training leaves them as fitted. Each modality's branch and regression are a pair: one member at the pair's weight,
    the other a share of it from the grid, the branch never at 0 where the pair has weight."""
    from maln.combination import COMBINATION_GRID
    from maln.data.store import load_store
    from maln.errors import ConfigError

    out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    weights = metrics["combination"]
    assert set(weights) == {"fusion", "text", "audio", "visual", "linear", "linear_text", "linear_audio", "linear_visual"}
    for m in ("text", "audio", "visual"):
        pair = max(weights[m], weights[f"linear_{m}"])
        if pair:
            assert weights[m] > 0 and min(weights[m], weights[f"linear_{m}"]) / pair in COMBINATION_GRID
        else:
            assert weights[m] == weights[f"linear_{m}"] == 0
    params = load_params(synthetic_project / "params.yaml")
    store = load_store(synthetic_project / "data/features/synthetic-iemocap")
    for head, baseline in (("linear", "logreg_all"), ("linear_text", "logreg_text"), ("linear_visual", "logreg_visual")):
        fitted = linear_head_scores(store, baseline, params.data["baselines"]["logreg_C"])
        for split in ("valid", "test"):
            assert metrics["heads"][head][split]["weighted_f1"] == pytest.approx(fitted[split]["weighted_f1"], abs=5e-3)
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    fresh = Run(params, "synthetic-iemocap", "full", threads=1).build_model(0)
    for key in ("linear_weight", "linear_bias", "linear_audio_weight", "linear_audio_bias"):
        torch.testing.assert_close(state["model"][key], fresh.state_dict()[key])
    with pytest.raises(ConfigError, match="model.linear_head needs model.training: branchwise"):
        Run(load_params(synthetic_project / "params.yaml", ["model.training=joint", "model.amdm_reads=branches",
                                                             "train.distill=0"]), "synthetic-iemocap", "full", threads=1)


def test_a_single_modality_with_the_linear_head_predicts_with_its_branch_and_its_regression(synthetic_project, tmp_path):
    """model.linear_head on a single modality, end to end: its combination is its branch and its own
    linear head (logreg_text or shrinkage LDA, fitted before training: linear_head_scores), one of them
    at weight 1 and the branch never at 0, and
    model.pt records the prediction's validation WF1, whatever selected the epoch (the branch alone)."""
    from maln.data.store import load_store

    params = load_params(synthetic_project / "params.yaml", ["train.epochs=2"])
    metrics = Run(params, "synthetic-iemocap", "text_only", threads=1).train_seed(0, tmp_path / "run", progress=False)
    assert set(metrics["combination"]) == {"text", "linear"}
    assert max(metrics["combination"].values()) == 1.0 and metrics["combination"]["text"] > 0
    assert set(metrics["heads"]) == {"prediction", "text", "linear"}
    store = load_store(synthetic_project / "data/features/synthetic-iemocap")
    head = linear_head_scores(store, "logreg_text", params.data["baselines"]["logreg_C"])
    assert metrics["heads"]["linear"]["test"]["weighted_f1"] == pytest.approx(head["test"]["weighted_f1"], abs=5e-3)
    saved = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=False)
    assert saved["best_valid_weighted_f1"] == metrics["valid"]["weighted_f1"]


def test_re_choosing_a_runs_weights_with_the_same_rule_gives_its_stored_scores(trained, synthetic_project):
    """benchmarks/recombine.py measures a change to the combination rule on runs trained before it: its
    heads' predictions, decoded as the run chose, with the weights chosen again. With the rule that
    trained the run it must give the run's own weights and stored scores, or its numbers are not a rerun's."""
    from builders import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import recombine

    out, _ = trained
    stored = json.loads((out / "metrics.json").read_text())
    r = recombine.recombine(out, synthetic_project)
    assert r["weights"] == {k: v for k, v in stored["combination"].items() if v}
    for split in ("valid", "test"):
        assert r["now"][split] == pytest.approx(100 * stored[split]["weighted_f1"], abs=1e-9)
