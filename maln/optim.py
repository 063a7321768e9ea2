"""The optimiser, and the settings that keep torch's compiler stack out of a training process.

torch imports its compiler (torch._dynamo, torch._inductor: about 2 s on a 2-core machine, a third
of a short job's time) from places that only matter inside torch.compile: the optimiser's step and
zero_grad, and torch.use_deterministic_algorithms. Nothing here is compiled except the model on
CUDA with train.compile, so those imports are avoided where they change nothing; the arithmetic
is torch's own, and the results are identical to the digit (tests/test_train.py).
"""

from __future__ import annotations

import inspect
import sys

import torch


class Adam(torch.optim.Adam):
    """torch's Adam, its step run as torch runs it eagerly (without gradients) but without the
    graph breaks for torch.compile that torch's step wrapper inserts, which import torch._dynamo.
    Step hooks and the profiler still apply: Optimizer wraps this step as it wraps Adam's."""

    @torch.no_grad()
    def step(self, closure=None):
        if self.defaults["differentiable"]:  # torch's wrapper then keeps gradients on
            return torch.optim.Adam.step(self, closure)
        return inspect.unwrap(torch.optim.Adam.step)(self, closure)


def branch_parameters(model) -> list:
    """The modality branches' parameters: context encoders, SCLMs and each modality's own classifier
    (a single-modality variant's classifier is its branch's)."""
    parts = [getattr(model, name, None) for name in ("context", "sclm", "aux")]
    if not getattr(model, "multimodal", True):
        parts.append(model.classifier)
    return [p for part in parts if part is not None for p in part.parameters()]


def input_parameters(model) -> list:
    """The weights that read a branch's standardised input features: each context GRU's first-layer
    input weights (what a logistic regression's L2 acts on; the rest of the branch is left alone)."""
    return [w for encoder in (getattr(model, "context", None) or {}).values()
            for name, w in encoder.gru.named_parameters() if name.startswith("weight_ih_l0")]


def fusion_input_parameters(model) -> list:
    """The weights of the fusion path that read the standardised input features: AMDM's specific and
    common encoders when it reads the features (model.amdm_reads: features), else none."""
    if not getattr(model, "amdm_reads_features", False) or getattr(model, "amdm", None) is None:
        return []
    return [encoders[m][0].weight for encoders in (model.amdm.specific, model.amdm.common_private)
            for m in model.amdm.modalities]


def make_optimizer(model, cfg) -> torch.optim.Optimizer:
    """Adam. The modality branches at weight decay branch_weight_decay (their GRUs' input weights at
    input_weight_decay unless it is None), the fusion path's input weights at fusion_input_weight_decay
    unless it is None, the rest at weight_decay;
    AMDM's parameters (its encoders and the discriminator) at amdm_lr_scale times the learning
    rate. Adam's steps are about lr in size whatever the loss weight, so a stronger adversary weight
    does not move the encoders further per step; a larger rate does. Adam's update is per parameter,
    so the grouping alone changes no number."""
    inputs = input_parameters(model) if cfg.input_weight_decay is not None else []
    fusion_inputs = fusion_input_parameters(model) if cfg.fusion_input_weight_decay is not None else []
    held = {id(p) for p in inputs + fusion_inputs}
    amdm = [p for p in model.amdm.parameters() if id(p) not in held] if getattr(model, "amdm", None) is not None else []
    branches = [p for p in branch_parameters(model) if id(p) not in held]
    taken = {id(p) for p in amdm + branches} | held
    groups = [{"params": [p for p in model.parameters() if id(p) not in taken]},
              {"params": branches, "weight_decay": cfg.branch_weight_decay},
              {"params": inputs, "weight_decay": cfg.input_weight_decay}]
    if amdm:
        groups.append({"params": amdm, "lr": cfg.lr * cfg.amdm_lr_scale})
    if fusion_inputs:
        groups.append({"params": fusion_inputs, "lr": cfg.lr * cfg.amdm_lr_scale,
                       "weight_decay": cfg.fusion_input_weight_decay})
    groups = [g for g in groups if g["params"]]
    return Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels(model.parameters()))


def kernels(parameters) -> dict:
    """Adam's implementation for these parameters. fused: one kernel for every parameter's whole
    update, 2.9 -> 0.9 ms a step on the synthetic full model on one CPU thread; torch has it on the
    CPU and CUDA (since 2.4) for floating-point parameters, and checks only at the first step, so the
    choice is made here. foreach otherwise: one kernel per state tensor kind, 4.6 ms against 10 for
    one per parameter."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)
    return {"fused": True} if fused else {"foreach": True}


def load_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """optimizer.load_state_dict(state), keeping the optimizer's own kernels: load_state_dict takes
    every group setting from the checkpoint, so one written with another implementation (foreach,
    before fused was used) would silently switch a resumed run to it, and its numbers with it."""
    chosen = [(g.get("fused"), g.get("foreach")) for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, (fused, foreach) in zip(optimizer.param_groups, chosen):
        group["fused"], group["foreach"] = fused, foreach


def without_compiler(device: torch.device) -> None:
    """Settings for a process that compiles nothing (train.compile is CUDA only)."""
    if device.type == "cpu":
        # deterministic kernels; the public torch.use_deterministic_algorithms also imports
        # torch._inductor to tell compiled graphs
        getattr(torch._C, "_set_deterministic_algorithms", torch.use_deterministic_algorithms)(True)
        # ...and NaN-fills every fresh allocation, seconds per epoch at the paper's sizes; nothing
        # here reads memory it has not written, so results stay deterministic
        torch.utils.deterministic.fill_uninitialized_memory = False
    if "torch._dynamo" in sys.modules:
        return
    # Attention with a key padding mask checks the mask's shape through torch._check_with, whose
    # first call imports torch.fx.experimental.symbolic_shapes (with sympy: 0.5 s of every job's
    # start) to allow symbolic shapes, which only tracing makes. The same check, on plain integers:
    if hasattr(torch.nn.functional, "_check_key_padding_mask"):
        torch.nn.functional._check_key_padding_mask = _check_key_padding_mask
    # Optimizer's state_dict, load_state_dict, zero_grad and add_param_group are wrapped in
    # torch._compile._disable_dynamo, which imports torch._dynamo on the first call only to mark
    # them "not to be traced" and caches the marked function as __dynamo_disable; with nothing
    # traced, the unmarked function is that cache.
    marker = torch._compile._disable_dynamo(lambda: None).__code__
    for method in vars(torch.optim.Optimizer).values():
        inner = getattr(method, "__wrapped__", None)
        if getattr(method, "__code__", None) is marker and inner is not None:
            setattr(inner, "__dynamo_disable", inner)


def _check_key_padding_mask(key_padding_mask: torch.Tensor, src_len: int, bsz: int) -> None:
    """torch.nn.functional's check of the same name (its messages), for untraced code."""
    if key_padding_mask.shape[0] != bsz:
        raise AssertionError(f"Expected key_padded_mask.shape[0] to be {bsz}, but got {key_padding_mask.shape[0]}")
    if key_padding_mask.shape[1] != src_len:
        raise AssertionError(f"Expected key_padded_mask.shape[1] to be {src_len}, but got {key_padding_mask.shape[1]}")
