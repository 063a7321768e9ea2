"""The model's promises, each checked so that it fails when the behaviour breaks."""


import functools
import itertools

import numpy as np
import pytest
import torch

from builders import dialogues, raw_tuple, write_pickle
from maln.data import readers
from maln.data.batching import DeviceData
from maln.data.store import load_store, write_store
from maln.model.amdm import AMDM, LinearEraser, masked_cross_entropy, orthogonality_loss, reverse_gradient
from maln.model.config import ModelConfig
from maln.model.maln import MALN, LossWeights
from maln.model.sclm import masked_mean
from maln.model.variants import VARIANTS
from maln.errors import NotApplicable

CFG = ModelConfig(width=16, context_hidden={"text": 8, "audio": 6, "visual": 6}, context_layers=2, context_dropout=0.5,
                  sclm_reads="context", sclm_pool="speaker", sclm_layers=1, sclm_heads=2, sclm_feedforward=32,
                  sclm_max_positions=64, attention_heads=4, cross_gate=True, fusion="specific", training="joint",
                  amdm_reads="branches", adversary="reversal",
                  discriminator_hidden=16, grl_scale=1.0, dropout=0.1, common_dropout=0.3, fusion_dropout=0.66,
                  standardize=True, input_dropout=0.0, branch_input_dropout=None, input_noise=0.0, modality_dropout=0.0, decode="none", linear_head=False)
DIMS = {"text": 7, "audio": 5, "visual": 3}
WEIGHTS = LossWeights(unimodal=0.1, adversarial=0.01, orthogonality=0.05)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A store of 8 dialogues of 2..12 utterances, up to 9 parties (MELD-like layout with visual)."""
    tmp = tmp_path_factory.mktemp("model")
    dlg = dialogues(n=8, dims=DIMS, parties=9, length=(2, 12), n_classes=7)
    path = write_pickle(tmp / "f.pkl", raw_tuple("mmgcn-meld", dlg))
    write_store(readers.read("mmgcn-meld", {"main": path}), tmp / "store", "t", 0.2, [])
    store = load_store(tmp / "store")
    return DeviceData(store, DIMS, torch.device("cpu"))


def model_for(variant="full", seed=0):
    torch.manual_seed(seed)
    return MALN(DIMS, 7, CFG, VARIANTS[variant]).eval()


def logits(model, data, idx):
    b = data.batch(np.asarray(idx))
    with torch.no_grad():
        return model(b.features, b.speakers, b.mask, b.lengths).logits, b


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padding_with_longer_dialogues_does_not_change_predictions(data, variant):
    model = model_for(variant)
    short = np.argsort(data.lengths)[:3]
    longest = np.argsort(data.lengths)[-2:]
    alone, b1 = logits(model, data, short)
    padded, b2 = logits(model, data, np.concatenate([short, longest]))
    assert b2.mask.shape[1] > b1.mask.shape[1]
    for i in range(len(short)):
        n = int(b1.lengths[i])
        torch.testing.assert_close(padded[i, :n], alone[i, :n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["full", "text_only"])
def test_renaming_the_parties_does_not_change_predictions(data, variant):
    model = model_for(variant)
    idx = np.argsort(data.lengths)[-3:]
    b = data.batch(idx)
    perm = torch.tensor([4, 7, 0, 8, 1, 3, 6, 2, 5])
    renamed = torch.where(b.mask, perm[b.speakers.clamp(min=0)], -1)
    assert not torch.equal(renamed[b.mask], b.speakers[b.mask])
    with torch.no_grad():
        before = model(b.features, b.speakers, b.mask, b.lengths).logits
        after = model(b.features, renamed, b.mask, b.lengths).logits
    torch.testing.assert_close(after[b.mask], before[b.mask], atol=1e-5, rtol=1e-4)


def test_speaker_pools_follow_the_parties_for_nine_speakers():
    torch.manual_seed(0)
    speakers = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 8, 3]])
    mask = torch.ones_like(speakers, dtype=torch.bool)
    mask[0, -1] = False  # the last utterance is padding and must not be pooled
    h = torch.randn(1, 12, 4)
    same = (speakers[:, :, None] == speakers[:, None, :]) & mask[:, None, :]
    own = masked_mean(same, h)
    others = masked_mean(~same & mask[:, None, :], h)
    torch.testing.assert_close(own[0, 0], (h[0, 0] + h[0, 9]) / 2)
    torch.testing.assert_close(own[0, 3], h[0, 3])  # speaker 3's other utterance is padding
    torch.testing.assert_close(others[0, 0], h[0, [1, 2, 3, 4, 5, 6, 7, 8, 10]].mean(0))


def test_nine_party_dialogues_train(data):
    model = model_for("full").train()
    idx = np.arange(8)
    b = data.batch(idx)
    assert int(b.speakers.max()) >= 6
    out = model(b.features, b.speakers, b.mask, b.lengths)
    terms = model.loss(out, b.labels, b.mask, WEIGHTS)
    terms["loss"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_label_smoothing_mixes_each_cross_entropy_with_the_uniform_one(data):
    """train.label_smoothing s: every CE term (the fusion classifier's and each modality's) is
    (1 - s) CE(gold) + s mean_c CE(c), over the real utterances only."""
    model = model_for("full").eval()
    b = data.batch(np.arange(8))
    with torch.no_grad():
        out = model(b.features, b.speakers, b.mask, b.lengths)
        plain, smooth = (model.loss(out, b.labels, b.mask, WEIGHTS, label_smoothing=s) for s in (0.0, 0.1))
    real = b.labels.reshape(-1) != -100
    logp = torch.log_softmax(out.logits.reshape(-1, out.logits.shape[-1]).float(), -1)[real]
    gold, uniform = -logp.gather(1, b.labels.reshape(-1)[real, None]).mean(), -logp.mean()
    torch.testing.assert_close(plain["ce"], gold)
    torch.testing.assert_close(smooth["ce"], 0.9 * gold + 0.1 * uniform)
    assert not torch.isclose(smooth["unimodal"], plain["unimodal"])  # the modalities' heads too


def test_gradient_reversal_negates_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 2.5)
    torch.testing.assert_close(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -2.5 * torch.arange(3.0).expand(5, 3))


def _amdm(adversary, modalities=("text", "audio", "visual")):
    torch.manual_seed(0)
    amdm = AMDM({m: 4 for m in modalities}, 6, 0.0, 0.0, adversary, 8, 1.0).eval()
    mask = torch.tensor([[True, True, True, True, False]])
    spec = {m: torch.randn(1, 5, 6, requires_grad=True) for m in modalities}
    comm = {m: torch.randn(1, 5, 6, requires_grad=True) for m in modalities}
    return amdm, spec, comm, mask


def test_reversal_is_the_authors_one_term_summed_over_modalities():
    amdm, spec, comm, mask = _amdm("reversal")
    by_hand = sum(masked_cross_entropy(amdm.discriminator(f[m]), torch.full((1, 5), i), mask)
                  for f in (spec, comm) for i, m in enumerate(amdm.modalities))
    encoders, own = amdm.adversarial_loss(spec, comm, mask)
    torch.testing.assert_close(encoders, by_hand)
    assert own.item() == 0.0
    encoders.backward()  # reversed on the common features, as is on the specific ones
    x = comm["text"].detach().requires_grad_()
    masked_cross_entropy(amdm.discriminator(x), torch.zeros(1, 5, dtype=torch.long), mask).backward()
    torch.testing.assert_close(comm["text"].grad, -x.grad)


def test_under_erasure_the_discriminator_learns_alone_and_never_moves_the_encoders():
    amdm, spec, comm, mask = _amdm("erasure")
    encoders, own = amdm.adversarial_loss(spec, comm, mask)
    assert encoders.item() == 0.0
    own.backward()
    assert all(p.grad.abs().sum() > 0 for p in amdm.discriminator.parameters())
    assert spec["text"].grad is None and comm["text"].grad is None


def test_the_games_that_left_the_code_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown adversary 'moments'; known: reversal, erasure"):
        _amdm("moments")


def _modalities_apart(noise_seed, n=400, width=12):
    """[3, 1, n, width]: three modalities, each with its own mean (along small-variance directions
    too) and its own spread, around a shared low-rank 'emotion' signal; padding after n - 50. The
    distributions are fixed; noise_seed draws a sample of them."""
    fixed, gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(noise_seed)
    loadings, offsets = torch.randn(2, width, generator=fixed) * 3, 0.2 * torch.randn(3, width, generator=fixed)
    emotion = torch.randn(n, 2, generator=gen) @ loadings
    x = torch.stack([emotion + torch.randn(n, width, generator=gen) * (0.05 + 0.1 * k) + offsets[k]
                     for k in range(3)])[:, None]
    mask = torch.ones(3, 1, n, dtype=torch.bool)
    mask[:, :, n - 50:] = False
    x[:, :, n - 50:] = 1e3  # padding must not count
    return x, mask


def test_eraser_leaves_every_modality_the_pooled_mean_and_no_linear_probe_above_chance():
    from maln.probes import _by_modality, probe_accuracy

    train, train_mask = _modalities_apart(noise_seed=1)
    test, test_mask = _modalities_apart(noise_seed=2)  # a fresh sample of the same distributions
    eraser = LinearEraser(3, train.shape[-1])
    eraser.eval()
    torch.testing.assert_close(eraser(train, train_mask), train)  # never fitted: the identity
    eraser.begin_fit()
    assert torch.equal(eraser(train, train_mask), train)  # while being fitted: unchanged
    eraser.end_fit()
    erased = eraser(train, train_mask)[:, 0, :-50]
    means = erased.double().mean(1)
    torch.testing.assert_close(means, means.mean(0).expand_as(means), atol=1e-5, rtol=0)
    change = (erased - train[:, 0, :-50]).reshape(-1, train.shape[-1])
    assert torch.linalg.matrix_rank(change.double(), rtol=1e-6) == 2  # M - 1 directions, nothing else
    assert torch.equal(eraser(train, train_mask)[:, :, -50:], train[:, :, -50:])  # padding untouched
    flat = lambda x: _by_modality(x[:, 0, :-50].permute(1, 0, 2).numpy())
    assert probe_accuracy(*flat(train), *flat(test)) > 0.9  # apart before...
    assert probe_accuracy(*flat(eraser(train, train_mask)), *flat(eraser(test, test_mask))) < 1 / 3 + 0.05  # ...not after


def test_eraser_in_training_uses_running_statistics_of_the_batches():
    x, mask = _modalities_apart(noise_seed=3)
    eraser = LinearEraser(3, x.shape[-1]).train()
    for _ in range(3):
        out = eraser(x, mask)
    assert not eraser.fitted and 0 < float(eraser.ema_weight) < 1
    means = out[:, 0, :-50].double().mean(1)  # the same batch every time: its own means, erased
    torch.testing.assert_close(means, means.mean(0).expand_as(means), atol=1e-4, rtol=0)
    grad_in = x.clone().requires_grad_()
    eraser(grad_in, mask).sum().backward()  # gradients pass through the (fixed) affine map
    assert grad_in.grad is not None and grad_in.grad[:, :, :-50].abs().sum() > 0


def test_cross_modal_block_starts_closed_and_opens_with_training():
    from maln.model.fusion import CrossModalAttention

    torch.manual_seed(0)
    block = CrossModalAttention(8, 2, 0.0)
    text, audio = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    out = block(text, [audio], mask)
    assert out.shape == (2, 5, 16) and out.abs().max() == 0
    (out * torch.randn_like(out)).sum().backward()  # (a plain sum of layer-normalised rows is 0)
    assert block.gate.grad is not None and block.gate.grad.abs() > 0
    assert CrossModalAttention(8, 2, 0.0, gate=False)(text, [audio], mask).abs().max() > 0


def test_inputs_are_standardised_with_the_statistics_saved_in_the_weights(data):
    model = model_for("full")
    stats = {m: (np.full(d, 3.0, dtype=np.float32), np.full(d, 2.0, dtype=np.float32)) for m, d in DIMS.items()}
    model.set_statistics(stats)
    state = model.state_dict()
    assert torch.equal(state["standardize.visual.mean"], torch.full((3,), 3.0))
    b = data.batch(np.argsort(data.lengths)[[0, -1]])  # the shortest and the longest: padding
    assert (~b.mask).any()
    x = model.prepare_inputs(b.features, b.mask)
    torch.testing.assert_close(x["text"][b.mask], (b.features["text"][b.mask] - 3.0) / 2.0)
    assert x["text"][~b.mask].abs().max() == 0


def test_orthogonality_loss_is_zero_for_orthogonal_features_and_positive_otherwise():
    # Orthogonal features: no feature of A co-varies with a feature of B across utterances. Here A
    # lives on even utterances and B on odd ones, each column centred (x, -x pairs).
    torch.manual_seed(0)
    x, y = torch.randn(1, 5, 6), torch.randn(1, 5, 6)
    a = torch.zeros(1, 20, 6)
    b = torch.zeros(1, 20, 6)
    a[0, 0::4], a[0, 2::4] = x[0], -x[0]
    b[0, 1::4], b[0, 3::4] = y[0], -y[0]
    mask = torch.ones(1, 20, dtype=torch.bool)
    assert orthogonality_loss(a, b, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert orthogonality_loss(a, a + 0.1 * b, mask).item() > 0.1
    assert orthogonality_loss(a, torch.randn(1, 20, 6), mask).item() > 0.0


def test_orthogonality_loss_ignores_padding():
    torch.manual_seed(1)
    a, b = torch.randn(1, 6, 4), torch.randn(1, 6, 4)
    mask = torch.tensor([[True, True, True, True, False, False]])
    junk_a, junk_b = a.clone(), b.clone()
    junk_a[0, 4:] = 1e3
    junk_b[0, 4:] = -7
    torch.testing.assert_close(orthogonality_loss(junk_a, junk_b, mask), orthogonality_loss(a, b, mask))


def test_orthogonality_loss_does_not_grow_with_the_number_of_utterances():
    # correlated features (b = a + noise): the authors' ||A B^T||^2 grows with the batch, this one not
    torch.manual_seed(2)
    values = []
    for n in (50, 500, 2000):
        a = torch.randn(1, n, 8)
        b = a + torch.randn(1, n, 8)
        values.append(orthogonality_loss(a, b, torch.ones(1, n, dtype=torch.bool)).item())
    assert max(values) / min(values) < 1.5 and min(values) > 0.05


def test_losses_ignore_padding(data):
    model = model_for("full").train()
    idx = np.argsort(data.lengths)[-3:]
    b = data.batch(idx)
    torch.manual_seed(3)
    t1 = model.loss(model(b.features, b.speakers, b.mask, b.lengths), b.labels, b.mask, WEIGHTS)
    feats = {m: torch.where(b.mask[..., None], x, torch.full_like(x, 50.0)) for m, x in b.features.items()}
    torch.manual_seed(3)
    t2 = model.loss(model(feats, b.speakers, b.mask, b.lengths), b.labels, b.mask, WEIGHTS)
    for k in t1:
        torch.testing.assert_close(t1[k], t2[k], atol=1e-5, rtol=1e-4)


def test_no_sclm_has_no_sclm_parameters_and_no_adversary_no_discriminator():
    names = {v: [n for n, _ in model_for(v).named_parameters()] for v in VARIANTS}
    assert any(".sclm." in f".{n}" or n.startswith("sclm.") for n in names["full"])
    assert not any(n.startswith("sclm.") for n in names["no_sclm"])
    assert any("discriminator" in n for n in names["full"])
    assert not any("discriminator" in n for n in names["no_adversary"])
    assert not any(n.startswith("amdm.") for n in names["text_only"])
    assert all(n.split(".")[1] == "text" for n in names["text_only"] if n.startswith(("context.", "sclm.")))


def test_class_count_and_dimensions_come_from_the_data():
    model = MALN({"text": 11, "audio": 13}, 4, CFG, VARIANTS["full"])
    assert model.classifier.net[-1].out_features == 4
    assert model.context["audio"].gru.input_size == 13
    assert model.modalities == ("text", "audio")


def test_the_fusion_classifiers_experts_are_a_normalised_mixture_of_linear_softmaxes_added_to_its_logits():
    from dataclasses import replace

    from maln.model.fusion import EmotionClassifier, LinearExperts

    torch.manual_seed(0)
    x = torch.randn(3, 5, 10)
    mixture = LinearExperts(10, 4, 3)
    out = mixture(x)
    assert out.shape == (3, 5, 4)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 5), atol=1e-6)  # log-probabilities
    gate = torch.softmax(mixture.gate(x), -1)
    each = torch.softmax(mixture.experts(x).view(3, 5, 3, 4), -1)
    assert torch.allclose(out.exp(), (gate[..., None] * each).sum(-2), atol=1e-6)
    one = LinearExperts(10, 4, 1)  # one expert: a linear softmax classifier, the gate constant
    assert torch.allclose(one(x), torch.log_softmax(one.experts(x), -1), atol=1e-6)
    both = EmotionClassifier(10, 8, 4, 0.0, experts=3)
    assert torch.allclose(both(x), both.net(x) + both.experts(x))
    # model.fusion_experts reaches the fusion classifier only: not the auxiliary ones, not a single modality's
    experts = replace(CFG, fusion_experts=4)
    full = MALN(DIMS, 7, experts, VARIANTS["full"])
    assert isinstance(full.classifier.experts, LinearExperts) and full.classifier.experts.shape == (4, 7)
    assert all(aux.experts is None for aux in full.aux.values())
    assert MALN(DIMS, 7, experts, VARIANTS["text_only"]).classifier.experts is None
    assert MALN(DIMS, 7, CFG, VARIANTS["full"]).classifier.experts is None


def test_variant_missing_its_modality_is_not_applicable():
    with pytest.raises(NotApplicable, match="not applicable: variant visual_only needs the visual modality"):
        MALN({"text": 11, "audio": 13}, 7, CFG, VARIANTS["visual_only"], "meld")
    with pytest.raises(NotApplicable, match="at least two modalities"):
        MALN({"text": 11}, 7, CFG, VARIANTS["no_adversary"], "cosmic")


def test_schema_variant_enum_is_the_variant_table():
    import yaml

    from builders import REPO

    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    assert schema["$defs"]["variant"]["enum"] == list(VARIANTS)


def _branchwise(amdm_reads="branches"):
    from dataclasses import replace

    torch.manual_seed(0)
    return MALN(DIMS, 7, replace(CFG, training="branchwise", amdm_reads=amdm_reads), VARIANTS["full"]).train()


def test_branchwise_losses_reach_only_their_own_parts(data):
    """Each modality's branch learns from its own classifier only; AMDM, the cross-modal block and
    the fusion classifier learn on top of the branches without moving them."""
    model = _branchwise()
    b = data.batch(np.arange(4))
    out = model(b.features, b.speakers, b.mask, b.lengths)
    ce = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 7), b.labels.reshape(-1), ignore_index=-100)
    ce.backward(retain_graph=True)
    assert all(p.grad is None for p in model.context.parameters())
    assert model.classifier.net[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    aux = torch.nn.functional.cross_entropy(out.aux_logits["audio"].reshape(-1, 7), b.labels.reshape(-1), ignore_index=-100)
    aux.backward()
    assert model.context["audio"].out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in (*model.context["text"].parameters(), *model.amdm.parameters(),
                                        *model.classifier.parameters()))
    groups = model.clip_groups()
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(list(model.parameters()))


def test_a_fusion_path_on_the_features_has_encoders_of_its_own_that_only_its_losses_train(data):
    """amdm_reads: features (the recommended configuration): AMDM projects each modality's
    standardised inputs linearly; the fusion classifier's loss trains those projections (and nothing
    of the branches), a branch's classifier trains its branch (and nothing of the fusion path)."""
    model = _branchwise("features")
    assert {m: model.amdm.specific[m][0].in_features for m in DIMS} == DIMS
    assert isinstance(model.amdm.specific["text"][2], torch.nn.Identity)
    assert isinstance(_branchwise().amdm.specific["text"][2], torch.nn.Tanh)  # on branch features: the paper's tanh
    b = data.batch(np.arange(4))
    out = model(b.features, b.speakers, b.mask, b.lengths)
    fused = torch.nn.functional.cross_entropy(out.fused_logits.reshape(-1, 7), b.labels.reshape(-1), ignore_index=-100)
    fused.backward(retain_graph=True)
    assert all(model.amdm.specific[m][0].weight.grad.abs().sum() > 0 for m in DIMS)
    assert all(p.grad is None for p in (*model.context.parameters(), *model.sclm.parameters(), *model.aux.parameters()))
    model.zero_grad(set_to_none=True)
    aux = torch.nn.functional.cross_entropy(out.aux_logits["text"].reshape(-1, 7), b.labels.reshape(-1), ignore_index=-100)
    aux.backward()
    assert model.context["text"].out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in (*model.amdm.parameters(), *model.classifier.parameters(), *model.cross.parameters()))


def test_features_for_amdm_need_branchwise_training():
    from dataclasses import replace

    from maln.errors import ConfigError

    with pytest.raises(ConfigError, match="amdm_reads: features needs model.training: branchwise"):
        replace(CFG, amdm_reads="features")


def test_branchwise_prediction_is_the_bayes_combination(data):
    model = _branchwise().eval()
    prior = np.full(7, 1 / 7)
    prior[0] = 0.4
    prior /= prior.sum()
    model.set_statistics({m: (np.zeros(d), np.ones(d)) for m, d in DIMS.items()}, prior)
    model.combination.copy_(torch.tensor([0.5, 1.0, 0.25, 0.0]))
    b = data.batch(np.arange(3))
    with torch.no_grad():
        out = model(b.features, b.speakers, b.mask, b.lengths)
    lp = lambda x: torch.log_softmax(x, -1)
    by_hand = (0.5 * lp(out.fused_logits) + lp(out.aux_logits["text"]) + 0.25 * lp(out.aux_logits["audio"])
               - 0.75 * torch.log(torch.tensor(prior, dtype=torch.float32)))
    torch.testing.assert_close(out.logits, by_hand)


def test_combination_gives_a_classifier_of_noise_no_weight():
    from maln.combination import choose_combination

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 400)
    good = np.full((400, 3), 0.1)
    good[np.arange(400), np.where(rng.random(400) < 0.7, gold, rng.integers(0, 3, 400))] = 0.8
    noise = rng.dirichlet([0.3] * 3, 400)
    w = choose_combination([np.log(noise), np.log(good)], gold, np.log(np.full(3, 1 / 3)), anchor=1)
    assert list(w) == [0.0, 1.0]


def test_with_two_anchors_the_better_head_stays_at_one_and_the_other_may_fall():
    """choose_combination with several anchors (the combination's top stage holds text, the fusion
    classifier or `linear` at weight 1, by validation likelihood; here two of them). A fusion head that
    reads the label where text is wrong half the time takes the anchor; where text is the better head,
    it keeps it; on a tie, text (listed first) keeps it."""
    from maln.combination import choose_combination

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 600)

    def head(accuracy):
        p = np.full((600, 3), 0.1)
        p[np.arange(600), np.where(rng.random(600) < accuracy, gold, rng.integers(0, 3, 600))] = 0.8
        return np.log(p)

    prior = np.log(np.full(3, 1 / 3))
    strong, weak = head(0.95), head(0.5)
    w = choose_combination([strong, weak], gold, prior, (1, 0))  # [fusion, text], text listed first
    assert w[0] == 1.0 and w[1] < 1.0
    w = choose_combination([weak, strong], gold, prior, (1, 0))  # text the better head
    assert w[1] == 1.0 and w[0] < 1.0
    assert list(choose_combination([weak, weak], gold, prior, (1, 0))) == [0.0, 1.0]  # a tie: text


def _head(rng, gold, c, accuracy, sure):
    """Log-probabilities of a classifier right `accuracy` of the time (else a random class), giving its
    answer probability `sure` and the rest evenly over the other of its `c` classes."""
    n = len(gold)
    p = np.full((n, c), (1 - sure) / (c - 1))
    p[np.arange(n), np.where(rng.random(n) < accuracy, gold, rng.integers(0, c, n))] = sure
    return np.log(p / p.sum(1, keepdims=True))


def test_an_overconfident_branch_yields_the_anchor_to_its_regression_but_keeps_a_weight():
    """A branch and its regression (model.linear_head): the one the validation likelihood prefers is
    at 1. A branch sure of every answer and right 60 % of the time, beside a calibrated regression
    right as often, falls to a weight of the grid, never to 0; a calibrated branch beside a regression of
    noise keeps 1 and the regression gets 0."""
    from maln.inference import _with_regression

    rng = np.random.default_rng(0)
    n, c = 800, 4
    gold = rng.integers(0, c, n)

    head = functools.partial(_head, rng, gold, c)

    prior = np.log(np.full(c, 1 / c))
    w = _with_regression([head(0.6, 0.99), head(0.6, 0.6)], gold, prior)
    assert w[1] == 1.0 and 0 < w[0] < 1.0
    assert list(_with_regression([head(0.9, 0.85), head(0.0, 0.5)], gold, prior)) == [1.0, 0.0]  # regression: noise


def test_the_concatenated_regression_may_hold_the_anchor_and_the_fusion_classifier_never_leaves():
    """A multimodal model's top stage: text's pair, the fusion classifier or `linear` (the regression on
    every modality) at weight 1, by validation likelihood; the fusion classifier never at 0. Beside an
    overconfident fusion classifier, a calibrated `linear` as accurate takes the anchor and the fusion
    classifier keeps a weight of the grid; a fusion classifier of pure noise keeps the grid's smallest."""
    from types import SimpleNamespace

    from maln.combination import COMBINATION_GRID
    from maln.inference import _choose_weights

    rng = np.random.default_rng(0)
    n, c = 800, 4
    gold = rng.integers(0, c, n)

    head = functools.partial(_head, rng, gold, c)

    names = ("fusion", "text", "linear", "linear_text")
    model = SimpleNamespace(multimodal=True, modalities=("text",), head_names=names,
                            log_prior=torch.full((c,), float(np.log(1 / c))), combination=torch.zeros(len(names)))
    weak = head(0.3, 0.4)
    w = dict(zip(names, _choose_weights(model, [head(0.7, 0.99), weak, head(0.7, 0.7), weak], gold)))
    assert w["linear"] == 1.0 and 0 < w["fusion"] < 1.0
    noise = np.log(rng.dirichlet([0.3] * c, n))
    w = dict(zip(names, _choose_weights(model, [noise, weak, head(0.7, 0.7), weak], gold)))
    assert w["linear"] == 1.0 and w["fusion"] == min(g for g in COMBINATION_GRID if g > 0)
    torch.testing.assert_close(model.combination, torch.tensor([w[n] for n in names], dtype=torch.float32))


def test_combination_on_a_validation_split_of_400_utterances_rarely_weights_noise():
    """About 400 utterances, as synthetic-iemocap's validation split has: with three classifiers of
    pure noise beside an informative one, the likelihood gives any of them weight in 3 of these 30
    draws (mean total weight 0.025). Choosing by weighted F1, as this project did before, gave
    them weight in 15 of the same 30 (0.14); on 129 utterances, the old split's size, 22 of 30
    (0.32) against the likelihood's 13 (0.125)."""
    from maln.combination import choose_combination

    def log_softmax(x):
        return x - np.logaddexp.reduce(x, axis=1, keepdims=True)

    n, weighted, total = 400, 0, 0.0
    for draw in range(30):
        rng = np.random.default_rng(draw)
        gold = rng.integers(0, 6, n)
        informative = rng.normal(size=(n, 6))
        informative[np.arange(n), gold] += 1.5
        heads = [log_softmax(informative)] + [log_softmax(rng.normal(size=(n, 6))) for _ in range(3)]
        w = choose_combination(heads, gold, np.log(np.full(6, 1 / 6)), anchor=0)
        weighted += bool(w[1:].any())
        total += w[1:].sum()
    assert weighted <= 5 and total / 30 <= 0.05


def test_evaluation_batches_grow_to_32_dialogues_but_at_most_4x_the_training_batch():
    """Larger evaluation batches are faster; a training batch kept small for memory stays small-ish."""
    from maln.data.batching import eval_batch_size

    assert [eval_batch_size(b) for b in (1, 2, 8, 32, 64)] == [4, 8, 32, 32, 64]


def test_combination_scored_in_chunks_chooses_what_one_candidate_at_a_time_chooses(monkeypatch):
    """The candidates are scored many at once, in chunks bounded by CHUNK_VALUES; the choice is the
    one the plain loop over candidates with combine() makes, whatever the chunk size (ties included:
    two identical heads)."""
    from maln import combination
    from maln.combination import COMBINATION_GRID, choose_combination, combine

    def plain(log_probs, gold, log_prior, anchors):
        best = None
        for a in anchors:
            for ws in itertools.product(COMBINATION_GRID, repeat=len(log_probs) - 1):
                w = np.zeros(len(log_probs))
                w[a], w[[j for j in range(len(log_probs)) if j != a]] = 1.0, ws
                z = combine(log_probs, w, log_prior)
                key = (round(float((z[np.arange(len(gold)), gold] - np.logaddexp.reduce(z, axis=1)).mean()), 9),
                       -w.sum())
                if best is None or key > best[0]:
                    best = (key, w)
        return best[1]

    rng = np.random.default_rng(3)
    for draw in range(20):
        n, c = int(rng.integers(5, 300)), int(rng.integers(2, 8))
        heads = [rng.normal(size=(n, c)) * rng.uniform(0.1, 3) for _ in range(int(rng.integers(2, 5)))]
        heads = [h - np.logaddexp.reduce(h, axis=1, keepdims=True) for h in heads]
        heads[1] = heads[0].copy() if draw % 4 == 0 else heads[1]
        gold, log_prior = rng.integers(0, c, n), np.log(rng.dirichlet(np.ones(c)))
        expected = plain(heads, gold, log_prior, (1, 0))
        for chunk in (1, 7 * n * c, 10**9):
            monkeypatch.setattr(combination, "CHUNK_VALUES", chunk)
            assert list(choose_combination(heads, gold, log_prior, (1, 0))) == list(expected)


@pytest.mark.parametrize("amdm_reads", ["features", "branches"])
def test_the_erasers_refit_on_amdm_alone_equals_the_refit_through_the_whole_model(data, amdm_reads):
    """fit_eraser runs AMDM alone where it reads the features (the branches are most of an epoch's
    time); its statistics are those of the whole model's pass over the same dialogues."""
    from dataclasses import replace

    from maln.inference import fit_eraser, predict

    torch.manual_seed(0)
    model = MALN(DIMS, 7, replace(CFG, training="branchwise", amdm_reads=amdm_reads, adversary="erasure"),
                 VARIANTS["full"])
    eraser = model.amdm.eraser
    dialogues = np.arange(8)
    eraser.begin_fit()
    predict(model, data, dialogues, 3)  # the whole model, as the refit was before
    eraser.end_fit()
    whole = (eraser.means.clone(), eraser.cov.clone())
    eraser.means.zero_(), eraser.cov.zero_()
    fit_eraser(model, data, dialogues, 3)
    assert torch.equal(eraser.means, whole[0]) and torch.equal(eraser.cov, whole[1])
    assert eraser.fitted and whole[1].abs().sum() > 0


@pytest.mark.parametrize("variant", ["full", "text_only"])
def test_decode_none_has_no_decoder_and_predicts_the_undecoded_posteriors(data, variant):
    """The paper's configuration (model.decode: none): no chain in the weights, predictions as the
    network gives them; `chain` adds the decoder and nothing else to the state."""
    from dataclasses import replace

    from maln.inference import predict

    plain = model_for(variant)
    assert plain.decoder is None
    p = predict(plain, data, np.arange(len(data.lengths)), 4)
    assert p.undecoded is None
    torch.manual_seed(0)
    chained = MALN(DIMS, 7, replace(CFG, decode="chain"), VARIANTS[variant]).eval()
    extra = set(chained.state_dict()) - set(plain.state_dict())
    assert extra == {"decoder.transition", "decoder.prior", "decoder.setting"}
    q = predict(chained, data, np.arange(len(data.lengths)), 4)  # setting (0, 1) until validation chooses one
    np.testing.assert_array_equal(q.probs, p.probs)


@pytest.mark.parametrize("variant", ["full", "text_only"])
def test_branches_read_their_inputs_undropped_when_branch_input_dropout_is_zero(data, variant):
    """model.branch_input_dropout: 0: in training the modality branches read the standardised inputs
    without dropout while the fusion path's keep input_dropout; null: the branches read the fusion
    path's (dropped) inputs, as before."""
    from dataclasses import replace

    quiet = replace(CFG, training="branchwise", amdm_reads="features", context_dropout=0.0, dropout=0.0,
                    common_dropout=0.0, fusion_dropout=0.0, input_dropout=0.9)
    b = data.batch(np.arange(4))

    def heads(cfg, train):
        torch.manual_seed(0)
        model = MALN(DIMS, 7, cfg, VARIANTS[variant]).train(train)
        torch.manual_seed(1)
        with torch.no_grad():
            out = model(b.features, b.speakers, b.mask, b.lengths)
        return (out.aux_logits["text"] if out.aux_logits else out.logits), out.fused_logits

    own = replace(quiet, branch_input_dropout=0.0)
    branch_train, fused_train = heads(own, True)
    branch_eval, fused_eval = heads(own, False)
    torch.testing.assert_close(branch_train[b.mask], branch_eval[b.mask])
    shared_train, _ = heads(quiet, True)
    assert (shared_train[b.mask] - branch_eval[b.mask]).abs().max() > 1e-3
    if variant == "full":  # the fusion path still reads dropped inputs
        assert (fused_train[b.mask] - fused_eval[b.mask]).abs().max() > 1e-3


def test_a_branchwise_prediction_decodes_each_head_with_its_own_setting_then_combines(data):
    """model.decode: chain on a branchwise model: each head's posterior is decoded by the chain with its
    own (mix, temperature), and the decoded heads are combined by Bayes' rule (maln.combination)."""
    from dataclasses import replace

    from maln import chain
    from maln.combination import posterior
    from maln.inference import fit_prediction, predict

    torch.manual_seed(0)
    model = MALN(DIMS, 7, replace(CFG, training="branchwise", amdm_reads="features", decode="chain"), VARIANTS["full"])
    prior = np.arange(1, 8) / 28
    transition = np.full((7, 7), 0.02) + np.eye(7) * 0.86
    model.set_statistics({m: (np.zeros(d), np.ones(d)) for m, d in DIMS.items()}, prior, transition)
    assert model.decoder.setting.shape == (4, 2)  # fusion, text, audio, visual
    settings = [(0.5, 0.75), (0.75, 1.0), (0.0, 1.0), (0.25, 1.5)]
    model.decoder.setting.copy_(torch.tensor(settings))
    model.combination.copy_(torch.tensor([0.5, 1.0, 0.25, 0.0]))
    dialogues = np.arange(len(data.lengths))
    p = predict(model, data, dialogues, 4)
    decoded = [np.log(np.maximum(chain.decode(np.exp(p.heads[n]), p.dialogue, transition, prior, *s), 1e-12))
               for n, s in zip(("fusion", "text", "audio", "visual"), settings)]
    np.testing.assert_allclose(p.probs, posterior(decoded, [0.5, 1.0, 0.25, 0.0], np.log(prior)), atol=1e-5)
    # chosen on a split: each head's setting from its own posterior, the weights on the decoded heads
    combination, decoding = fit_prediction(model, p)
    for n, (mix, t) in zip(("fusion", "text", "audio", "visual"), model.decoder.setting.tolist()):
        assert decoding[n] == {"mix": mix, "temperature": t}
        assert (mix, t) == chain.choose(np.exp(p.heads[n]), p.gold, p.dialogue, transition, prior)
    assert model.combination.tolist() == [combination[n] for n in ("fusion", "text", "audio", "visual")]
    chosen = [np.log(np.maximum(chain.decode(np.exp(p.heads[n]), p.dialogue, transition, prior, mix, t), 1e-12))
              for n, (mix, t) in zip(("fusion", "text", "audio", "visual"), model.decoder.setting.tolist())]
    np.testing.assert_allclose(p.probs, posterior(chosen, model.combination.numpy(), np.log(prior)), atol=1e-5)
    again = predict(model, data, dialogues, 4)  # what the model predicts with what was chosen: the same
    np.testing.assert_allclose(again.probs, p.probs, atol=1e-5)


def test_the_linear_heads_are_their_regressions_on_the_standardised_inputs_and_members_of_the_combination(data):
    """model.linear_head: in evaluation each regression head's logits are the regression set on the model
    (set_linear) applied to the standardised features it reads (`linear` all of them concatenated in the
    model's modality order, `linear_<m>` modality m alone), and the prediction is Bayes' rule over every
    head, these last; in training there are no such heads (the regressions are fitted, never trained);
    a single modality's prediction is its branch and its own regression combined; without
    standardisation, or under joint training, it is refused."""
    from dataclasses import replace

    from maln.errors import ConfigError

    cfg = replace(CFG, training="branchwise", amdm_reads="features", linear_head=True)
    torch.manual_seed(0)
    model = MALN(DIMS, 7, cfg, VARIANTS["full"])
    stats = {m: (np.linspace(-1, 1, d), np.linspace(0.5, 2, d)) for m, d in DIMS.items()}
    model.set_statistics(stats, np.arange(1, 8) / 28)
    regressions = {"linear": (torch.randn(7, sum(DIMS.values())), torch.randn(7)),
                   **{f"linear_{m}": (torch.randn(7, d), torch.randn(7)) for m, d in DIMS.items()}}
    model.set_linear(regressions)
    model.combination.copy_(torch.tensor([1.0, 0.25, 0.0, 0.5, 0.75, 0.25, 0.0, 0.5]))
    assert model.head_names == ("fusion", "text", "audio", "visual", "linear", "linear_text", "linear_audio",
                                "linear_visual")
    b = data.batch(np.arange(4))
    with torch.no_grad():
        out = model.eval()(b.features, b.speakers, b.mask, b.lengths)
        x = {m: (b.features[m] - torch.tensor(stats[m][0], dtype=torch.float32)) / torch.tensor(stats[m][1], dtype=torch.float32)
             for m in ("text", "audio", "visual")}
        x["linear"] = torch.cat([x["text"], x["audio"], x["visual"]], -1)
        for name, (weight, bias) in regressions.items():
            torch.testing.assert_close(out.linear_logits[name][b.mask], (x[name.removeprefix("linear_")] @ weight.T + bias)[b.mask],
                                       atol=1e-5, rtol=1e-5)
        heads = [out.fused_logits, *out.aux_logits.values(), *out.linear_logits.values()]
        torch.testing.assert_close(out.logits[b.mask], model.combine(heads)[b.mask])
        assert (out.logits[b.mask] - model.combine(heads[:4], model.combination[:4])[b.mask]).abs().max() > 1e-3
        assert model.train()(b.features, b.speakers, b.mask, b.lengths).linear_logits == {}
    single = MALN(DIMS, 7, cfg, VARIANTS["text_only"])
    assert single.head_names == ("text", "linear") and single.combined and not single.branchwise
    single.set_statistics(stats, np.arange(1, 8) / 28)
    single.set_linear({"linear": regressions["linear_text"]})
    single.combination.copy_(torch.tensor([1.0, 0.5]))
    with torch.no_grad():
        out = single.eval()(b.features, b.speakers, b.mask, b.lengths)
        torch.testing.assert_close(out.linear_logits["linear"], model.eval()(b.features, b.speakers, b.mask, b.lengths).linear_logits["linear_text"])
        torch.testing.assert_close(out.logits, single.combine([out.aux_logits["text"], out.linear_logits["linear"]]))
        assert single.train()(b.features, b.speakers, b.mask, b.lengths).linear_logits == {}
    with pytest.raises(ConfigError, match="model.linear_head needs model.standardize"):
        replace(cfg, standardize=False)
    with pytest.raises(ConfigError, match="model.linear_head needs model.training: branchwise"):
        replace(CFG, linear_head=True)


def test_each_separately_trained_part_is_scored_by_its_own_head():
    """maln/selection.py scores: with model.linear_head a single modality's epoch score is its branch's
    own validation WF1, whatever its regression scores; a branchwise model on the features scores its
    fusion classifier and each branch by its own head; any other model by the prediction."""
    from dataclasses import replace

    from maln import selection
    from maln.inference import Predictions
    from maln.metrics import classification_metrics

    rng = np.random.default_rng(0)
    n, names = 300, [f"c{k}" for k in range(7)]
    gold = rng.integers(0, 7, n)

    def noisy(scale):  # log-probabilities that favour the gold class by `scale`
        z = rng.normal(size=(n, 7))
        z[np.arange(n), gold] += scale
        return z - np.logaddexp.reduce(z, 1, keepdims=True)

    def wf1(log_p):
        return classification_metrics(gold, log_p.argmax(1), names)["weighted_f1"]

    cfg = replace(CFG, training="branchwise", amdm_reads="features", linear_head=True)
    for variant in ("text_only", "full"):
        model = MALN(DIMS, 7, cfg, VARIANTS[variant])
        model.set_statistics({m: (np.zeros(d), np.ones(d)) for m, d in DIMS.items()}, np.full(7, 1 / 7))
        heads = {name: noisy(0.5) if name.startswith("linear") else noisy(1.0 + 0.1 * k)
                 for k, name in enumerate(model.head_names)}
        valid = Predictions(np.zeros(n, int), np.arange(n), np.zeros(n, int), gold, np.exp(heads[model.head_names[0]]),
                            heads=heads)
        scores = selection.scores(model, valid, {"weighted_f1": 0.42}, names)
        networks = [h for h in model.head_names if not h.startswith("linear")]
        assert list(scores) == networks
        assert scores == pytest.approx({h: wf1(heads[h]) for h in networks})
        heads["linear"] = np.log(np.eye(7)[gold] * (1 - 7e-6) + 1e-6)  # a perfect regression moves no score
        assert selection.scores(model, valid, {"weighted_f1": 1.0}, names) == pytest.approx(scores)
    for other, variant in ((replace(cfg, linear_head=False), "text_only"), (replace(cfg, linear_head=False, amdm_reads="branches"), "full")):
        plain = MALN(DIMS, 7, other, VARIANTS[variant])
        assert selection.scores(plain, valid, {"weighted_f1": 0.42}, names) == {"prediction": 0.42}


def test_each_part_is_kept_at_its_own_best_epoch():
    """maln/selection.py keep: every parameter of a branchwise model on the features belongs to exactly
    one part, and each part's weights are those of the epoch where its own score was best."""
    from dataclasses import replace

    from maln import selection

    model = MALN(DIMS, 7, replace(CFG, training="branchwise", amdm_reads="features"), VARIANTS["full"])
    owned = selection.parts(model)
    for name, _ in model.named_parameters():
        assert sum(name.startswith(prefix) for prefixes in owned.values() for prefix in prefixes) == 1, name
    state = {"parts": {}, "best_model": None, "stale": 0}
    trajectory = {"fusion": [0.3, 0.5, 0.4], "text": [0.6, 0.5, 0.7], "audio": [0.2, 0.2, 0.1], "visual": [0.1, 0.3, 0.3]}
    for epoch in (1, 2, 3):  # each epoch improves some part
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(epoch)  # every weight says which epoch it is from
        scores = {part: values[epoch - 1] for part, values in trajectory.items()}
        assert selection.keep(state, model, scores, epoch, {"weighted_f1": 0.5}, None, None)
    best = {"fusion": 2, "text": 3, "audio": 1, "visual": 2}
    assert selection.epochs(state) == best and state["best_epoch"] == 3
    for name, _ in model.named_parameters():
        part = next(p for p, prefixes in owned.items() if name.startswith(prefixes))
        assert torch.all(state["best_model"][name] == best[part]), name
    assert not selection.keep(state, model, {p: 0.0 for p in owned}, 4, {"weighted_f1": 0.5}, None, None)
    assert state["stale"] == 1 and selection.epochs(state) == best
