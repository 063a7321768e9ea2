"""A speed kernel, not a stage of the paper: a GRU layer with its own backward pass, for the CPU.

PyTorch's CPU GRU runs the recurrence step by step through autograd, and its backward pass costs
about 3.5x its forward. The math needs far less: the input projections of all time steps are one
matrix product, and so are both weight gradients; only the recurrent product h_{t-1} W_hh^T (and
its transpose in the backward pass) has to run step by step, and the two directions can share
each step. This module does exactly that, on the packed layout (time-major rows, the active
sequences of step t first), with the weights of an nn.GRU so that both implementations train the
same parameters. On CUDA the model uses cuDNN (nn.GRU) instead.

Equations and weight layout are nn.GRU's (gates r, z, n):
  r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
  h' = (1 - z) * n + z * h
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from maln.model.dropout import dropout


class _BiGRULayer(torch.autograd.Function):
    """Both directions of one layer at once, over packed rows: x [2, N, I] (the forward direction's
    rows, then the reversed direction's, each in its own packed order); weights stacked per
    direction ([2, 3H, I], [2, 3H, H], [2, 3H], [2, 3H]). Both directions have the same rows per
    step, so every step is one batched product for the two."""

    @staticmethod
    def forward(ctx, x, batch_sizes, w_ih, w_hh, b_ih, b_hh, products=None):
        # products: the dtype of every matrix product (products_in), whose results come back in x's
        # and then get their biases; None: x's (a cast to a tensor's own dtype is free: the float32
        # path is the one from before products existed)
        hidden = w_hh.shape[2]
        n_rows = x.shape[1]
        low = products or x.dtype
        x_low = x.to(low)
        gi = _product_plus(b_ih[:, None, :], x_low, w_ih.to(low).transpose(1, 2), x.dtype)  # [2, N, 3H]: all input projections
        # W_hh^T laid out contiguously: a step's small product runs 1.3-2x faster on it than on the
        # transposed view; transposed per direction, as 2-D copies are 2-3x faster than a 3-D one
        w_hh_t = torch.stack([w.t().to(low).contiguous() for w in w_hh])
        out = x.new_empty(2, n_rows, hidden)
        gates = x.new_empty(2, n_rows, 4 * hidden)  # per row: r, z, n, W_hn h + b_hn (for the backward pass)
        h = x.new_zeros(2, batch_sizes[0], hidden)
        start = 0
        for b in batch_sizes:
            end = start + b
            h = h[:, :b]
            gh = _product_plus(b_hh[:, None, :], h.to(low), w_hh_t, x.dtype)
            g = gates[:, start:end]
            rz = torch.add(gi[:, start:end, :2 * hidden], gh[..., :2 * hidden], out=g[..., :2 * hidden]).sigmoid_()
            h_n = g[..., 3 * hidden:].copy_(gh[..., 2 * hidden:])
            n = torch.addcmul(gi[:, start:end, 2 * hidden:], rz[..., :hidden], h_n, out=g[..., 2 * hidden:3 * hidden]).tanh_()
            h = torch.lerp(n, h, rz[..., hidden:], out=out[:, start:end])  # (1 - z) n + z h
            start = end
        ctx.batch_sizes, ctx.products = batch_sizes, products
        ctx.save_for_backward(x_low, w_ih, w_hh, out, gates)
        return out

    @staticmethod
    def backward(ctx, d_out):
        x_low, w_ih, w_hh, out, gates = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        hidden = w_hh.shape[2]
        n_rows = d_out.shape[1]
        f, low = d_out.dtype, ctx.products or d_out.dtype
        w_hh_low = w_hh.to(low)
        d_gi = d_out.new_empty(2, n_rows, 3 * hidden)
        d_gh = d_out.new_empty(2, n_rows, 3 * hidden)  # d(W_hh h + b_hh): r and z parts equal d_gi's
        h_prev = d_out.new_zeros(2, n_rows, hidden)  # h_{t-1} of every row: last step's outputs, shifted
        starts = [0]
        for b in batch_sizes[:-1]:
            starts.append(starts[-1] + b)
        for t in range(1, len(batch_sizes)):
            b = batch_sizes[t]
            h_prev[:, starts[t]:starts[t] + b] = out[:, starts[t - 1]:starts[t - 1] + b]
        r, z, n, h_n = gates[..., :hidden], gates[..., hidden:2 * hidden], gates[..., 2 * hidden:3 * hidden], gates[..., 3 * hidden:]
        # each gate's derivative factor, for every row at once and in few passes over these [2, N, H]
        # arrays, so that a step (the Python loop below: its op count is its cost) only multiplies by them
        one_minus_z = 1 - z
        dn_dh = torch.addcmul(one_minus_z, one_minus_z, n * n, value=-1)  # d n-preactivation / dh: (1 - z)(1 - n^2)
        dz_dh = torch.sub(h_prev, n).mul_(z).mul_(one_minus_z)  # d z-preactivation / dh
        dr_dn = torch.addcmul(r, r, r, value=-1).mul_(h_n)  # d r-preactivation / d n-preactivation: r(1 - r) h_n
        carry = d_out.new_zeros(2, 0, hidden)  # dL/dh_t flowing back from step t + 1
        for t in reversed(range(len(batch_sizes))):
            start, b = starts[t], batch_sizes[t]
            end = start + b
            dh = d_out[:, start:end].clone()
            dh[:, : carry.shape[1]] += carry
            dgh = d_gh[:, start:end]
            dn = torch.mul(dh, dn_dh[:, start:end], out=d_gi[:, start:end, 2 * hidden:])
            torch.mul(dh, dz_dh[:, start:end], out=dgh[..., hidden:2 * hidden])
            torch.mul(dn, dr_dn[:, start:end], out=dgh[..., :hidden])
            torch.mul(dn, r[:, start:end], out=dgh[..., 2 * hidden:])
            carry = _product_plus(dh * z[:, start:end], dgh.to(low), w_hh_low, f)  # dL/dh_{t-1} = z dh + [dr, dz, dn r] W_hh
        d_gi[..., :2 * hidden] = d_gh[..., :2 * hidden]  # r and z: the input and recurrent pre-activations share them
        d_gi_low, d_gh_low = d_gi.to(low), d_gh.to(low)
        d_x = torch.bmm(d_gi_low, w_ih.to(low)).to(f) if ctx.needs_input_grad[0] else None  # the raw features need none
        d_w_ih = torch.bmm(d_gi_low.transpose(1, 2), x_low).to(f)
        d_w_hh = torch.bmm(d_gh_low.transpose(1, 2), h_prev.to(low)).to(f)
        return d_x, None, d_w_ih, d_w_hh, d_gi.sum(1), d_gh.sum(1), None


_products = None  # the dtype of the GRU's matrix products where not its inputs' (products_in)


def _product_plus(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """c + a @ b (batched) in `dtype`. With a and b in a lower precision, the product is theirs
    (accumulated in float32 by the hardware, its result rounded to theirs) and the sum is `dtype`'s:
    the recurrent state's carry and the biases are never rounded. Otherwise one baddbmm."""
    if a.dtype == dtype:
        return torch.baddbmm(c, a, b)
    return torch.bmm(a, b).to(dtype).add_(c)


@contextlib.contextmanager
def products_in(dtype: torch.dtype | None):
    """The GRU's matrix products in `dtype` (bf16 where the CPU multiplies it natively: AMX): the
    hardware accumulates them in float32 and rounds their results to bf16 (so are the weight
    gradients); the state, the gates, the biases and the gradient carried through time stay float32."""
    global _products
    before, _products = _products, dtype
    try:
        yield
    finally:
        _products = before


def packing(lengths: torch.Tensor, steps: int):
    """_packing for these lengths, cached: a batch's modalities share it, so it is computed once a batch."""
    return _packing(tuple(lengths.tolist()), steps)


@functools.lru_cache(maxsize=8)
def _packing(lengths: tuple, steps: int):
    """Row indices (into a flattened [B * steps] batch) of the forward and the reversed direction in
    packed order, and the rows per step. Longest sequences first, so each step's active rows are a
    prefix and shrinking the batch needs no copy."""
    # cached: a tensor made in inference mode could not be saved for a later backward pass
    with torch.inference_mode(False):
        lengths = torch.tensor(lengths)
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_len = lengths[order]
        batch_sizes = [int((sorted_len > t).sum()) for t in range(int(sorted_len[0]))]
        fwd, rev = [], []
        for t, b in enumerate(batch_sizes):
            rows = order[:b]
            fwd.append(rows * steps + t)
            rev.append(rows * steps + (lengths[rows] - 1 - t))
        return torch.cat(fwd), torch.cat(rev), batch_sizes


def bidirectional_gru(gru: torch.nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """nn.GRU(batch_first, bidirectional) on padded x [B, T, I] with per-sequence lengths, computed
    with _BiGRULayer; returns [B, T, 2H], zero on padding (as pad_packed_sequence gives)."""
    batch, steps, _ = x.shape
    fwd, rev, batch_sizes = packing(lengths, steps)
    fwd, rev = fwd.to(x.device), rev.to(x.device)
    flat = x.reshape(batch * steps, -1)
    layer_in_f, layer_in_r = flat[fwd], flat[rev]  # both directions' inputs, in their own packed order
    # position of each flat row in fwd order, to re-align the reversed direction's outputs
    where_f = torch.empty(batch * steps, dtype=torch.long, device=x.device)
    where_f[fwd] = torch.arange(len(fwd), device=x.device)
    rev_in_f = where_f[rev]  # for each reversed-order row, its row in forward order
    f_in, r_in = layer_in_f, layer_in_r
    for layer in range(gru.num_layers):
        weights = [torch.stack([getattr(gru, f"{name}_l{layer}"), getattr(gru, f"{name}_l{layer}_reverse")])
                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        out_f, out_r = _BiGRULayer.apply(torch.stack([f_in, r_in]), batch_sizes, *weights, _products)
        out_r_in_f = torch.empty_like(out_r).index_copy(0, rev_in_f, out_r)  # reversed outputs, forward order
        both = torch.cat([out_f, out_r_in_f], 1)  # [N, 2H] in forward packed order
        if layer < gru.num_layers - 1:
            both = dropout(both, gru.dropout, gru.training)
            f_in, r_in = both, both[rev_in_f]
    out = x.new_zeros(batch * steps, both.shape[1])
    out = out.index_copy(0, fwd, both)
    return out.view(batch, steps, -1)
