"""The synthetic kinds with an exact Bayes oracle (maln/data/fusion.py, maln/data/oracle.py): the
oracle is right (brute force, dense formulas, Monte Carlo from the generator), the control has no
fusion headroom, the registered fusion datasets have at least 8 WF1 points of it, and the files are
deterministic and prepare into stores like any other."""

import itertools
import math
import json

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from builders import REPO, write_params
from conftest import run_maln
from maln.config import load_params
from maln.data import fusion, layouts, oracle, synthetic
from maln.data.store import load_store
from maln.errors import ConfigError

FUSION = ["synthetic-iemocap-interaction", "synthetic-meld-nuisance"]
CONTROL = "synthetic-iemocap-independent"
KEYS = {"dialogue", "position", "label", "split", "class_names", *oracle.RULES,
        *(oracle.MODALITY_RULE.format(m) for m in ("text", "audio", "visual"))}


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def synth(tmp_path, params, name, **changes):
    entry = params.dataset(name)
    path = tmp_path / f"{name}.pkl"
    synthetic.write(path, entry["layout"], {**entry["synthetic"], **changes})
    return path, oracle.oracle_path(path)


def test_oracle_path_is_beside_the_raw_file():
    assert oracle.oracle_path("data/raw/synthetic-foo.pkl").as_posix() == "data/raw/synthetic-foo.oracle.npz"


def test_control_joint_equals_late_and_the_file_has_the_agreed_format(tmp_path, params):
    raw, path = synth(tmp_path, params, CONTROL, dialogues=12)
    o = oracle.read_oracle(path)  # allow_pickle=False
    assert set(o) == KEYS
    n, c = len(o["label"]), len(layouts.IEMOCAP_CLASSES)
    assert o["dialogue"].dtype.kind == "U" and o["split"].dtype.kind == "U" and o["class_names"].dtype.kind == "U"
    assert o["position"].dtype == np.int64 and o["label"].dtype == np.int64
    assert list(o["class_names"]) == list(layouts.IEMOCAP_CLASSES) and set(o["split"]) == {"train", "test"}
    for rule in oracle.rules_of(o):
        assert o[rule].shape == (n, c) and o[rule].dtype == np.float64
        np.testing.assert_allclose(o[rule].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(o["joint_context"], o["late_context"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(o["joint_utterance"], o["late_utterance"], rtol=0, atol=1e-9)
    # positions count up within each dialogue, in the raw file's order
    starts = np.flatnonzero(np.r_[True, o["dialogue"][1:] != o["dialogue"][:-1]])
    assert len(starts) == 12 and all(o["position"][s] == 0 for s in starts)


@pytest.mark.parametrize("name", FUSION)
def test_registered_fusion_datasets_leave_fusion_headroom(tmp_path, params, name):
    _, path = synth(tmp_path, params, name)
    scores = oracle.oracle_scores(path)
    wf1 = {rule: 100 * s["weighted_f1"] for rule, s in scores.items()}
    assert wf1["joint_context"] - wf1["late_context"] >= 8, wf1
    assert wf1["joint_utterance"] - wf1["late_utterance"] >= 8, wf1
    assert wf1["joint_context"] < 97, wf1  # room for models below the oracle


@pytest.mark.parametrize("name", FUSION)
def test_each_modalitys_rule_alone_is_its_own_likelihood_through_the_chain(tmp_path, params, name):
    """`<m>_context` holds, row by row, modality m's exact likelihood alone decoded by the chain; it
    is scored with the other rules, and no modality alone reaches the joint rule on a fusion kind."""
    _, path = synth(tmp_path, params, name, dialogues=16)
    o = oracle.read_oracle(path)
    entry = params.dataset(name)
    dialogues, _, em, chain = fusion.sample(entry["layout"], {**entry["synthetic"], "dialogues": 16})
    assert oracle.rules_of(o) == (*oracle.RULES, *(oracle.MODALITY_RULE.format(m) for m in em.modalities))
    for m in em.modalities:
        want = np.concatenate([oracle.forward_backward(oracle.loglik(x, em, [m]), chain) for *_, x in dialogues])
        np.testing.assert_allclose(o[oracle.MODALITY_RULE.format(m)], want, rtol=0, atol=1e-12)
    _, full = synth(tmp_path / "full", params, name)
    wf1 = {rule: s["weighted_f1"] for rule, s in oracle.oracle_scores(full).items()}
    assert all(wf1[oracle.MODALITY_RULE.format(m)] < wf1["joint_context"] - 0.2 for m in em.modalities), wf1


@pytest.mark.parametrize("name", [*FUSION, CONTROL])
def test_same_seed_same_bytes(tmp_path, params, name):
    a = synth(tmp_path / "a", params, name, dialogues=10)
    b = synth(tmp_path / "b", params, name, dialogues=10)
    c = synth(tmp_path / "c", params, name, dialogues=10, seed=params.dataset(name)["synthetic"]["seed"] + 1)
    for x, y, z in zip(a, b, c):
        assert x.read_bytes() == y.read_bytes() and x.read_bytes() != z.read_bytes()


def test_explicit_styled_kind_is_todays_generator(tmp_path, params):
    entry = params.dataset("synthetic-meld")
    synthetic.write(tmp_path / "a.pkl", entry["layout"], {**entry["synthetic"], "dialogues": 10})
    synthetic.write(tmp_path / "b.pkl", entry["layout"], {**entry["synthetic"], "dialogues": 10, "kind": "styled"})
    assert (tmp_path / "a.pkl").read_bytes() == (tmp_path / "b.pkl").read_bytes()
    assert not oracle.oracle_path(tmp_path / "a.pkl").exists()


# -- the math ---------------------------------------------------------------------------------------

def test_forward_backward_equals_brute_force_enumeration():
    rng = np.random.default_rng(0)
    c, length = 3, 4
    log_lik = rng.normal(scale=2.0, size=(length, c))
    transition = rng.dirichlet(np.ones(c), size=c)
    for chain in (oracle.Chain.sticky([0.5, 0.3, 0.2], 0.6), oracle.Chain(rng.dirichlet(np.ones(c)), transition)):
        post = np.zeros((length, c))
        for seq in itertools.product(range(c), repeat=length):
            p = chain.initial[seq[0]] * np.prod([chain.transition[a, b] for a, b in zip(seq, seq[1:])])
            p *= np.exp(sum(log_lik[t, y] for t, y in enumerate(seq)))
            for t, y in enumerate(seq):
                post[t, y] += p
        np.testing.assert_allclose(oracle.forward_backward(log_lik, chain), post / post.sum(1, keepdims=True), atol=1e-12)
        marg = chain.marginals(length)
        single = marg * np.exp(log_lik)
        np.testing.assert_allclose(oracle.utterance_posteriors(log_lik, chain), single / single.sum(1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(oracle.Chain.sticky([0.5, 0.3, 0.2], 0.6).marginals(5), [[0.5, 0.3, 0.2]] * 5)


def test_woodbury_loglik_equals_the_dense_gaussian():
    rng = np.random.default_rng(1)
    x, mu, b = rng.normal(size=(5, 7)), rng.normal(size=(3, 7)), rng.normal(size=(7, 2))
    dense = np.array([[multivariate_normal(mu[c], np.eye(7) + b @ b.T).logpdf(xi) for c in range(3)] for xi in x])
    np.testing.assert_allclose(oracle.gaussian_loglik(x, mu, b), dense, atol=1e-10)
    plain = np.array([[multivariate_normal(mu[c], np.eye(7)).logpdf(xi) for c in range(3)] for xi in x])
    np.testing.assert_allclose(oracle.gaussian_loglik(x, mu, np.zeros((7, 0))), plain, atol=1e-10)


TINY = {"dims": {"text": 4, "audio": 3, "visual": 3}, "signal": {"text": 1.0, "audio": 0.8, "visual": 0.6}, "stay": 0.5,
        "nuisance": {"rank": 2, "scale": {"text": 1.0, "audio": 1.2, "visual": 0.8}},
        "interaction": {"inverted": "text", "revealed_by": "audio", "probability": 0.3, "reveal": 2.0}}


@pytest.mark.parametrize("kind", ["nuisance", "interaction"])
def test_likelihoods_agree_with_monte_carlo_from_the_generator(kind):
    """Closed-form log p(x | y) (joint and per modality) against the average over the generator's
    own latent draws (z for nuisance, s for interaction) of the density given the latents."""
    rng = np.random.default_rng(3)
    dims = TINY["dims"]
    em = fusion.emission(rng, "conv-emotion-iemocap", kind, TINY, dims)
    labels = rng.integers(6, size=4)
    x = fusion.emit(rng, em, labels, *fusion.draw_latents(rng, em, 4))
    k, z = fusion.draw_latents(np.random.default_rng(4), em, 50_000)

    def mc(modalities):  # log of the mean over draws of prod_m N(x_m | mu_mk[c] + B_m z, I): [4, C]
        out = np.empty((4, 6))
        for c in range(6):
            dens = 0
            for m in modalities:
                mean = em.means[m][k, c] + z @ em.loadings[m].T  # [draws, d]
                diff = x[m].astype(float)[:, None, :] - mean[None]
                dens = dens - 0.5 * ((diff ** 2).sum(-1) + dims[m] * np.log(2 * np.pi))
            out[:, c] = logsumexp(dens, axis=1) - np.log(len(k))
        return out

    np.testing.assert_allclose(oracle.joint_loglik(x, em), mc(list(dims)), atol=0.05)
    for m in dims:
        np.testing.assert_allclose(oracle.loglik(x, em, [m]), mc([m]), atol=0.05)
    late = oracle.late_loglik(x, em)
    joint = oracle.joint_loglik(x, em)
    assert np.abs(late - joint).max() > 1  # the modalities are dependent given the label


@pytest.mark.parametrize("kind", ["independent", "nuisance", "interaction"])
def test_generated_features_have_the_oracles_moments(kind):
    """Per class, the generator's features have the mean and covariance of the oracle's emission law."""
    cfg = {**TINY, "kind": kind, "dialogues": 400, "test_fraction": 0.25, "length": [20, 30], "seed": 5}
    dialogues, _, em, _ = fusion.sample("synthetic-iemocap", cfg)
    mods = list(TINY["dims"])
    x = np.concatenate([np.concatenate([d[3][m] for m in mods], 1) for d in dialogues]).astype(float)
    y = np.concatenate([d[2] for d in dialogues])
    b = np.concatenate([em.loadings[m] for m in mods])
    resid, within = [], []
    for c in range(6):
        mu_k = np.concatenate([em.means[m][:, c] for m in mods], 1)  # [K, D]
        mean = em.weights @ mu_k
        spread = (em.weights[:, None] * (mu_k - mean)).T @ (mu_k - mean)
        within.append((np.eye(len(b)) + b @ b.T + spread) * (y == c).sum())
        resid.append(x[y == c] - mean)
    resid = np.concatenate(resid)
    assert np.abs(resid.mean(0)).max() < 0.05
    np.testing.assert_allclose(resid.T @ resid / len(y), sum(within) / len(y), atol=0.12)


# -- configuration and the command line -------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("datasets.synthetic-meld.synthetic.stay=0.5", "datasets.synthetic-meld.synthetic: this combination of keys is not allowed"),
    ("datasets.synthetic-meld-nuisance.synthetic.nuisance.rank=9", "rank: 9 is greater than the maximum of 6"),
    ("datasets.synthetic-meld-nuisance.synthetic.kind=interaction", "'interaction' is a required property"),
    ("datasets.synthetic-iemocap-interaction.synthetic.interaction.inverted=smell", "'smell' is not one of"),
])
def test_schema_checks_the_oracle_kinds(override, message):
    with pytest.raises(ConfigError) as e:
        load_params(REPO / "params.yaml", [override])
    assert message in str(e.value)


@pytest.mark.parametrize("name", FUSION)
def test_synth_then_prepare_builds_a_store_that_matches_the_oracle(tmp_path, name):
    write_params(tmp_path)
    small = f"datasets.{name}.synthetic.dialogues=12"
    proc = run_maln("synth", name, "--set", small, cwd=tmp_path, check=True)
    assert f"data/raw/{name}.oracle.npz" in proc.stderr
    run_maln("prepare", name, "--set", small, cwd=tmp_path, check=True)
    meta = json.loads((tmp_path / f"data/features/{name}/meta.json").read_text())
    assert meta["n_dialogues"] == 12
    store = load_store(tmp_path / f"data/features/{name}")
    o = oracle.read_oracle(tmp_path / f"data/raw/{name}.oracle.npz")
    assert list(dict.fromkeys(o["dialogue"])) == [str(d) for d in store.dialogue_ids]
    for i, vid in enumerate(store.dialogue_ids):
        rows = o["dialogue"] == str(vid)
        assert np.array_equal(store.labels[store.offsets[i]:store.offsets[i + 1]], o["label"][rows])
        assert (store.split[i] == 2) == (o["split"][rows][0] == "test")


# -- your own dataset with its own oracle (issue 21: a held-out dataset through the bring-your-own path) --

TINY_MODEL = {"model": {"width": 8, "context": {"hidden": {"text": 8, "audio": 8, "visual": 8}, "layers": 1},
                  "sclm": {"max_positions": 64, "feedforward": 16}, "discriminator_hidden": 8},
        "train": {"epochs": 2, "batch_dialogues": 8}}


def test_your_own_features_with_their_own_oracle_get_oracle_rows_and_headroom_shares(tmp_path):
    """A file you place in a real layout (`path:`), its oracle beside it (`oracle: {path}`): prepare,
    train, baseline and aggregate as any dataset, and the main table reads the runs against the
    oracle. Made here by the project's generator under another name, as an outside one would be."""
    import shutil

    made = {"layout": "synthetic-iemocap", "synthetic": {
        "kind": "interaction", "dialogues": 24, "test_fraction": 0.25, "length": [6, 12], "stay": 0.3,
        "dims": {"text": 12, "audio": 8, "visual": 8}, "signal": {"text": 2.7, "audio": 0.5, "visual": 0.8}, "seed": 3,
        "interaction": {"inverted": "text", "revealed_by": "audio", "probability": 0.5, "reveal": 6.0}}}
    yours = {"layout": "conv-emotion-iemocap", "path": "data/raw/yours.pkl", "valid_fraction": 0.3,
             "oracle": {"path": "data/raw/yours.oracle.npz"}, "overrides": TINY_MODEL}
    write_params(tmp_path, {"made": made, "yours": yours}, study_datasets=["yours"],
                 study={"configurations": ["recommended"], "variants": ["full", "text_only", "audio_only", "visual_only"],
                        "seeds": [0]},
                 report={"bootstrap": 100, "tsne_utterances": 20}, baselines={"logreg_C": [0.1], "mlp_alpha": [1.0]})
    run_maln("synth", "made", cwd=tmp_path, check=True)  # in subprocesses: training in this process would
    # leave it holding memory that the bad-input corpus then counts against every command it forks
    shutil.move(tmp_path / "data/raw/made.pkl", tmp_path / "data/raw/yours.pkl")
    shutil.move(tmp_path / "data/raw/made.oracle.npz", tmp_path / "data/raw/yours.oracle.npz")
    for args in (["prepare", "yours"], *(["train", "--dataset", "yours", "--variant", v, "--seed", "0", "--threads", "1"]
                                        for v in ("full", "text_only", "audio_only", "visual_only")),
                 ["baseline", "yours"], ["aggregate"]):
        run_maln(*args, cwd=tmp_path, check=True)
    main = (tmp_path / "results/tables/main.md").read_text()
    assert "| yours | oracle: joint Bayes rule, with context |" in main
    assert "| yours | oracle: best late fusion, without context |" in main
    metrics = json.loads((tmp_path / "results/metrics.json").read_text())["yours"]
    assert metrics["oracle"]["headroom_wf1"] >= 1.0  # the generator's interaction leaves headroom
    assert set(metrics["oracle"]) >= {"text_context", "audio_context", "visual_context"}
    assert "| T, exact Bayes rule alone, with context (oracle) |" in (tmp_path / "results/tables/modality.md").read_text()
    assert math.isfinite(metrics["full"]["headroom_share_mean"])

    # an oracle without the rules of each modality alone (they are optional): no ceilings in the modality table
    o = dict(np.load(tmp_path / "data/raw/yours.oracle.npz"))
    np.savez(tmp_path / "data/raw/yours.oracle.npz", **{k: v for k, v in o.items() if k in KEYS - {
        oracle.MODALITY_RULE.format(m) for m in ("text", "audio", "visual")}})
    run_maln("aggregate", cwd=tmp_path, check=True)
    assert "text_context" not in json.loads((tmp_path / "results/metrics.json").read_text())["yours"]["oracle"]
    assert "| all, joint Bayes rule, with context (oracle) |" in (tmp_path / "results/tables/modality.md").read_text()

    # an oracle of another draw (same dialogues, other emotions) is refused by name
    o["label"] = np.roll(o["label"], 1)
    np.savez(tmp_path / "data/raw/yours.oracle.npz", **o)
    proc = run_maln("aggregate", cwd=tmp_path)
    assert proc.returncode != 0 and "yours: its oracle's emotions differ from the store's" in proc.stderr


def test_a_tie_goes_to_the_first_class_whatever_its_last_bits():
    """Text alone cannot tell an emotion from its inversion at probability 0.5: the two posteriors
    differ only by rounding, which must not decide the oracle's score."""
    tied = np.array([[0.2, 0.4 + 1e-15, 0.4 - 1e-15], [0.2, 0.4 - 1e-15, 0.4 + 1e-15], [0.1, 0.3, 0.6]])
    assert oracle.decisions(tied).tolist() == [1, 1, 2]
