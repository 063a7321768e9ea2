"""The fast CPU path (training and evaluation) computes what the plain path computes."""


import contextlib

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from maln.model.context import ContextEncoder
from maln.model.dropout import Dropout, dropout
from maln.model.fast_gru import bidirectional_gru, products_in


def reference(gru, x, lengths):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=x.shape[1])[0]


@pytest.mark.parametrize("layers", [1, 2])
def test_fused_gru_matches_nn_gru_exactly_in_double_precision(layers):
    torch.manual_seed(0)
    gru = torch.nn.GRU(7, 6, layers, batch_first=True, bidirectional=True).double()
    x = torch.randn(5, 9, 7, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([9, 3, 7, 1, 9])
    a, b = reference(gru, x, lengths), bidirectional_gru(gru, x, lengths)
    torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12)
    with torch.no_grad():  # evaluation runs it too (ContextEncoder on the CPU)
        torch.testing.assert_close(bidirectional_gru(gru, x, lengths), a, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(a)
    grads_a = torch.autograd.grad((a * g).sum(), [x, *gru.parameters()])
    grads_b = torch.autograd.grad((b * g).sum(), [x, *gru.parameters()])
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(gb, ga, atol=1e-12, rtol=1e-12)


def test_fused_gru_with_bf16_products_stays_float32_and_close_to_the_float32_gru():
    """train.bf16 on a CPU with AMX: only the matrix products are bf16 (8 mantissa bits, float32
    accumulation); outputs and gradients are float32 and within bf16's rounding of the exact ones."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(16, 32, 2, batch_first=True, bidirectional=True)
    x = torch.randn(4, 11, 16, requires_grad=True)
    lengths = torch.tensor([11, 5, 8, 2])
    exact = bidirectional_gru(gru, x, lengths)
    with products_in(torch.bfloat16):
        low = bidirectional_gru(gru, x, lengths)
    assert low.dtype == torch.float32
    assert 0 < (low - exact).abs().max() < 0.02  # bf16 rounding: 2^-8 of each product's terms
    g = torch.randn_like(exact)
    grads_exact = torch.autograd.grad((exact * g).sum(), [x, *gru.parameters()])
    grads_low = torch.autograd.grad((low * g).sum(), [x, *gru.parameters()])
    for ge, gl in zip(grads_exact, grads_low):
        assert gl.dtype == torch.float32
        assert (gl - ge).norm() < 0.01 * ge.norm()
    assert torch.equal(bidirectional_gru(gru, x, lengths), exact)  # the context restores float32


@pytest.mark.parametrize("amx", [True, False])
def test_cpu_bf16_needs_amx_and_onednn_allowed_to_use_it(monkeypatch, amx):
    from maln import inference
    from maln.model import fast_gru

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert inference.cpu_bf16() == amx
    with inference.autocast(cpu, True):
        assert fast_gru._products == (torch.bfloat16 if amx else None)
    assert fast_gru._products is None
    assert inference.precision(cpu, True) == ("bf16 GRU products (AMX)" if amx else "float32")  # metrics.json's
    assert isinstance(inference.autocast(cpu, False), contextlib.nullcontext)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN kept off AMX: bf16 products 100x slower
    assert not inference.cpu_bf16() and inference.precision(cpu, True) == "float32"


def test_cpu_dropout_keeps_1_minus_p_scaled_and_passes_gradients_through_the_kept_units():
    torch.manual_seed(0)
    x = torch.rand(400, 500, dtype=torch.double) + 1  # no zeros, so a zero output is a dropped unit
    x.requires_grad_(True)
    y = dropout(x, 0.3, training=True)
    kept = y != 0
    assert abs(kept.double().mean().item() - 0.7) < 0.005  # 200 000 draws: 4.5 standard errors
    torch.testing.assert_close(y[kept], (x / 0.7)[kept])
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.double() / 0.7)
    assert torch.equal(dropout(x, 0.3, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    with pytest.raises(ValueError):
        dropout(x, -0.1, training=True)  # as F.dropout
    with pytest.raises(ValueError):
        Dropout(0.3, inplace=True)


def test_evaluation_under_inference_mode_does_not_poison_the_cached_packing():
    gru = torch.nn.GRU(4, 3, 2, batch_first=True, bidirectional=True)
    x, lengths = torch.randn(2, 5, 4), torch.tensor([5, 2])
    with torch.inference_mode():
        bidirectional_gru(gru, x, lengths)
    bidirectional_gru(gru, x, lengths).sum().backward()  # the same lengths, now for training
    assert gru.weight_hh_l0.grad is not None


@pytest.fixture
def plain_path():
    ContextEncoder.fused_cpu_gru = False
    yield
    ContextEncoder.fused_cpu_gru = True


def test_fast_and_plain_paths_give_the_same_losses_gradients_and_predictions(synthetic_project, plain_path):
    from maln.config import load_params
    from maln.train import Run

    # dropout off: the two paths draw their dropout masks differently, everything else must agree
    params = load_params(synthetic_project / "params.yaml",
                         ["model.dropout=0", "model.common_dropout=0", "model.fusion_dropout=0", "model.context.dropout=0"])
    run = Run(params, "synthetic-iemocap", "full", threads=1)
    batch = run.data.batch(np.argsort(run.data.lengths)[-6:])
    results = {}
    for fused in (True, False):
        ContextEncoder.fused_cpu_gru = fused
        model = run.build_model(0).train()
        out = model(batch.features, batch.speakers, batch.mask, batch.lengths)
        terms = model.loss(out, batch.labels, batch.mask, run.train_cfg.loss_weights)
        terms["loss"].backward()
        results[fused] = (terms, out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (t_fast, logits_fast, g_fast), (t_plain, logits_plain, g_plain) = results[True], results[False]
    for k in t_fast:
        torch.testing.assert_close(t_fast[k], t_plain[k], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits_fast, logits_plain, atol=1e-5, rtol=1e-4)
    assert torch.equal(logits_fast.argmax(-1)[batch.mask], logits_plain.argmax(-1)[batch.mask])
    for name in g_fast:
        torch.testing.assert_close(g_fast[name], g_plain[name], atol=1e-5, rtol=1e-3)


def test_benchmark_script_runs(tmp_path):
    import subprocess
    import sys

    from builders import REPO

    out = tmp_path / "speed.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/speed.py"), "--shape", "meld", "--dialogues", "12",
                           "--epochs", "1", "--threads", "1", "--float32", "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    assert "| meld (12 dialogues" in table
    for path in ("fast", "plain"):  # --float32: each path with params.yaml's train.bf16 and with float32 everywhere
        assert table.count(f"| {path}, erasure, ") == 2 and f"| {path}, erasure, float32 | cpu |" in table
    assert "refits its statistics on the training split" in table


FAKE_AUTHORS_MODEL = '''
import torch
from torch import nn


class MALN(nn.Module):
    """The authors' call signature and return order (MALN_model_fix.py), a linear layer inside."""

    def __init__(self, args):
        super().__init__()
        assert args.dropout == 0.66 and args.cross_n_heads == 4
        self.text = nn.Linear(1024, 6)
        self.calls = 0

    def forward(self, training, label, text, visual, acoustic, x1, x2, x3, x4, x5, x6, o1, o2, o3, qmask, umask):
        assert text.shape[-1] == 1024 and visual.shape[-1] == 512 and acoustic.shape[-1] == 100
        assert qmask.shape[:2] == text.shape[:2] and umask.shape == label.shape == text.shape[1::-1]
        lp = torch.log_softmax(self.text(text), -1)
        return (lp.sum() * 0, None, lp, lp, lp, lp)
'''

FAKE_LOSS = '''
import torch


class MaskedNLLLoss(torch.nn.Module):
    def forward(self, pred, target, mask):
        return torch.nn.functional.nll_loss(pred, target)
'''


def test_the_authors_timing_harness_calls_their_model_as_their_training_script_does(tmp_path):
    """benchmarks/authors_speed.py against a stand-in checkout with the authors' file names and call
    signature (their repository is not part of this one): it builds the model with their argument
    defaults, feeds IEMOCAP-shaped batches in their layout and writes the table."""
    import subprocess
    import sys

    from builders import REPO

    authors = tmp_path / "authors"
    authors.mkdir()
    (authors / "MALN_model_fix.py").write_text(FAKE_AUTHORS_MODEL)
    (authors / "transformer_model.py").write_text(FAKE_LOSS)
    out = tmp_path / "authors.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/authors_speed.py"), "--authors", str(authors),
                           "--dialogues", "3", "--epochs", "1", "--threads", "1", "--lengths", "3", "5",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    assert "| 3 (" in table and "0.0 M (0.0 M)" in table and "median of 1 epoch" in table
    missing = subprocess.run([sys.executable, str(REPO / "benchmarks/authors_speed.py"), "--authors", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "has no MALN_model_fix.py" in missing.stderr


def test_a_training_step_runs_under_bf16_autocast_as_on_cuda(synthetic_project, monkeypatch):
    """train.bf16 on CUDA autocasts the model's forward pass; its losses must run under the same
    autocast (the discriminator reads bf16 features). Checked here with the CPU's autocast."""
    from maln import train
    from maln.config import load_params
    from maln.optim import make_optimizer

    monkeypatch.setattr(train, "autocast", lambda device, bf16: torch.autocast("cpu", dtype=torch.bfloat16))
    run = train.Run(load_params(synthetic_project / "params.yaml"), "synthetic-iemocap", "full", threads=1)
    model = run.build_model(0)
    batches = run.data.training_batches(run.splits["train"][:8], 4, np.random.default_rng(0))
    losses = train.train_epoch(run, model, model, batches, make_optimizer(model, run.train_cfg),
                               run.train_cfg.loss_weights, None)
    assert np.isfinite(losses["loss"]) and losses["discriminator"] > 0
