"""Exact Bayes oracles of the synthetic kinds that have one (maln/data/fusion.py): the best any
model can do on them, with all modalities read jointly and with the best late fusion.

Every such kind emits, given the label y of an utterance,
    x_m = means[m][k, y] + loadings[m] @ z + noise_m,   k ~ weights,  z ~ N(0, I_r),  noise_m ~ N(0, I)
(k: a discrete latent, z: a continuous one, both shared by the modalities and drawn afresh for every
utterance), and the labels of a dialogue follow a first-order chain. So, exactly:
- joint rule: p(x | y) = sum_k w_k N(x | mu_k[y], I + B B^T) over the concatenated modalities (a
  finite mixture of Gaussians with one shared low-rank covariance, evaluated with Woodbury's identity);
- best late fusion: the product over modalities of p(x_m | y) = sum_k w_k N(x_m | mu_mk[y], I + B_m B_m^T)
  (each modality's exact marginal likelihood);
- each with the dialogue's context (forward-backward over the chain) and without it (the chain's
  marginal at the utterance's position as the prior);
- each modality's exact rule alone, with the dialogue's context: the best expected accuracy of a
  single-modality model (the argmax of the posterior maximises expected accuracy; weighted F1, which
  rewards rarer classes, can be raised by another decision rule, so it is no bound there).
Where the modalities are independent given the label (one component, block-diagonal loadings) the
two rules coincide; where they share z or k, only the joint rule can use it.

The file beside a raw file `NAME.pkl` is `NAME.oracle.npz` (np.load(..., allow_pickle=False)):
dialogue (str [N]), position (int64 [N]), label (int64 [N]), split (str [N], train | test),
joint_context, joint_utterance, late_context, late_utterance (float64 [N, C], posteriors),
class_names (str [C]), and, optionally, one `<modality>_context` (float64 [N, C]) per modality (files
written before 2026-12-06, and your own, may lack them). It is written deterministically: same raw
file, same bytes.
"""

from __future__ import annotations

import io as _io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from maln import io
from maln.metrics import classification_metrics

RULES = ("joint_context", "joint_utterance", "late_context", "late_utterance")
MODALITY_RULE = "{}_context"  # a modality's exact rule alone, with context; optional in a file
TIE = 1e-9  # posteriors this close are a tie (decisions)
LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Emission:
    """The class-conditional law of one utterance's features (module docstring): component weights
    [K], per modality means [K, C, d_m] and loadings [d_m, r] (r may be 0)."""

    weights: np.ndarray
    means: dict
    loadings: dict

    @property
    def modalities(self) -> tuple:
        return tuple(self.means)


@dataclass(frozen=True)
class Chain:
    """First-order label chain of a dialogue: initial law and transition matrix (rows: from)."""

    initial: np.ndarray
    transition: np.ndarray

    @classmethod
    def sticky(cls, prior, stay: float) -> Chain:
        """Stay with probability `stay`, else draw afresh from `prior`: stay*I + (1-stay)*1 prior^T,
        whose stationary law is the prior, which is also the initial law."""
        prior = np.asarray(prior, dtype=float)
        c = len(prior)
        return cls(prior, stay * np.eye(c) + (1 - stay) * np.ones((c, 1)) * prior[None, :])

    def marginals(self, length: int) -> np.ndarray:
        """The law of the label at each position, before any feature is seen: [length, C]."""
        out = np.empty((length, len(self.initial)))
        p = self.initial
        for t in range(length):
            out[t] = p
            p = p @ self.transition
        return out


# -- likelihoods --------------------------------------------------------------------------------

def gaussian_loglik(x, mu, loadings) -> np.ndarray:
    """log N(x_i | mu_c, I + B B^T) for every row x_i [N, D] and class mean mu_c [C, D]: [N, C].
    Woodbury: (I + BB^T)^-1 = I - B (I + B^T B)^-1 B^T and det(I + BB^T) = det(I_r + B^T B)."""
    x, mu = np.asarray(x, dtype=float), np.asarray(mu, dtype=float)
    d = x.shape[1]
    quad = (x * x).sum(1)[:, None] - 2 * x @ mu.T + (mu * mu).sum(1)[None, :]
    logdet = 0.0
    b = np.asarray(loadings, dtype=float).reshape(d, -1)
    r = b.shape[1]
    if r:
        chol = np.linalg.cholesky(np.eye(r) + b.T @ b)
        diff = (x @ b)[:, None, :] - (mu @ b)[None, :, :]  # B^T (x - mu): [N, C, r]
        w = np.linalg.solve(chol, diff.reshape(-1, r).T)  # L^-1 B^T (x - mu)
        quad = quad - (w * w).sum(0).reshape(quad.shape)
        logdet = 2 * np.log(np.diag(chol)).sum()
    return -0.5 * (d * LOG_2PI + logdet + quad)


def loglik(features: dict, emission: Emission, modalities=None) -> np.ndarray:
    """log p(x_M | y) [N, C] of the modalities M (default: all) read together, exactly."""
    modalities = tuple(modalities or emission.modalities)
    x = np.concatenate([np.asarray(features[m], dtype=float) for m in modalities], axis=1)
    b = np.concatenate([emission.loadings[m] for m in modalities], axis=0)
    per_k = [np.log(w) + gaussian_loglik(x, np.concatenate([emission.means[m][k] for m in modalities], axis=1), b)
             for k, w in enumerate(emission.weights)]
    return logsumexp(np.stack(per_k), axis=0)


def joint_loglik(features: dict, emission: Emission) -> np.ndarray:
    return loglik(features, emission)


def late_loglik(features: dict, emission: Emission) -> np.ndarray:
    """The best late fusion: the sum of each modality's exact marginal log-likelihood."""
    return sum(loglik(features, emission, [m]) for m in emission.modalities)


# -- the chain ----------------------------------------------------------------------------------

def _normalise(p):
    return p / p.sum(-1, keepdims=True)


def forward_backward(log_lik, chain: Chain) -> np.ndarray:
    """p(y_t | x_1..x_L) for every position of one dialogue: [L, C] (scaled forward-backward)."""
    log_lik = np.asarray(log_lik, dtype=float)
    length = len(log_lik)
    lik = np.exp(log_lik - log_lik.max(1, keepdims=True))
    alpha, beta = np.empty_like(lik), np.ones_like(lik)
    alpha[0] = _normalise(chain.initial * lik[0])
    for t in range(1, length):
        alpha[t] = _normalise((alpha[t - 1] @ chain.transition) * lik[t])
    for t in range(length - 2, -1, -1):
        beta[t] = _normalise(chain.transition @ (lik[t + 1] * beta[t + 1]))
    return _normalise(alpha * beta)


def utterance_posteriors(log_lik, chain: Chain) -> np.ndarray:
    """p(y_t | x_t) with the chain's marginal at position t as the prior: [L, C]."""
    log_post = np.log(chain.marginals(len(log_lik))) + log_lik
    return np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))


# -- the oracle file ----------------------------------------------------------------------------

def oracle_path(raw_path) -> Path:
    """data/raw/NAME.pkl -> data/raw/NAME.oracle.npz."""
    raw_path = Path(raw_path)
    return raw_path.with_name(f"{raw_path.stem}.oracle.npz")


def oracle_arrays(dialogues, test_ids, emission: Emission, chain: Chain, class_names) -> dict:
    """The oracle's arrays (module docstring) for `dialogues`: a list of (id, labels, {m: [L, d_m]}),
    in the raw file's order; `test_ids`: the ids of its test split."""
    test_ids = set(test_ids)
    alone = [MODALITY_RULE.format(m) for m in emission.modalities]
    cols = {k: [] for k in ("dialogue", "position", "label", "split", *RULES, *alone)}
    for vid, labels, feats in dialogues:
        length = len(labels)
        joint, late = joint_loglik(feats, emission), late_loglik(feats, emission)
        cols["dialogue"] += [str(vid)] * length
        cols["position"].append(np.arange(length, dtype=np.int64))
        cols["label"].append(np.asarray(labels, dtype=np.int64))
        cols["split"] += ["test" if vid in test_ids else "train"] * length
        cols["joint_context"].append(forward_backward(joint, chain))
        cols["joint_utterance"].append(utterance_posteriors(joint, chain))
        cols["late_context"].append(forward_backward(late, chain))
        cols["late_utterance"].append(utterance_posteriors(late, chain))
        for m, rule in zip(emission.modalities, alone):
            cols[rule].append(forward_backward(loglik(feats, emission, [m]), chain))
    out = {"dialogue": np.array(cols["dialogue"], dtype=str), "split": np.array(cols["split"], dtype=str)}
    for k in ("position", "label", *RULES, *alone):
        out[k] = np.concatenate(cols[k])
    for k in (*RULES, *alone):
        out[k] = out[k].astype(np.float64)
    out["class_names"] = np.array(list(class_names), dtype=str)
    return out


def npz_bytes(arrays: dict) -> bytes:
    """What np.savez writes, without the clock: every member dated 1980-01-01, so the same arrays
    give the same bytes."""
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            member = _io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_oracle(path, dialogues, test_ids, emission: Emission, chain: Chain, class_names) -> None:
    """Write the oracle of a synthetic dataset atomically to `path` (oracle_path of its raw file)."""
    io.write_bytes(path, npz_bytes(oracle_arrays(dialogues, test_ids, emission, chain, class_names)))


def read_oracle(path) -> dict:
    """The oracle file's arrays; a broken or incomplete one is a DataError naming it and the remedy."""
    import zlib

    from maln.errors import DataError

    remedy = "write it again (a synthetic kind's: `maln synth DATASET`, or delete it and run the study)"
    try:
        with io.open_regular(path) as f, np.load(f, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(io.shown(path), f"unreadable oracle file ({type(e).__name__}: {str(e)[:120]}); {remedy}") from None
    missing = [k for k in ("label", "split", "class_names", *RULES) if k not in out]
    n = len(out.get("label", ()))
    if missing or any(out[r].shape != (n, len(out["class_names"])) for r in rules_of(out)):
        raise DataError(io.shown(path), f"not an oracle file (missing or misshapen: {', '.join(missing) or 'posteriors'}); {remedy}")
    return out


def rules_of(oracle: dict) -> tuple:
    """The rules a file holds: the four, then each modality's alone that it has, in the file's order."""
    return (*RULES, *(k for k in oracle if k.endswith(MODALITY_RULE.format("")) and k not in RULES))


def decisions(posteriors) -> np.ndarray:
    """The argmax, a tie (within TIE) going to the first class. Where a rule cannot tell two emotions
    apart (text alone, when an inversion at probability 0.5 maps each emotion to another) their
    posteriors are equal but for the last bits, which the summation order decides, not the data."""
    return (posteriors >= posteriors.max(1, keepdims=True) - TIE).argmax(1)


def oracle_scores(path, split: str = "test") -> dict:
    """{rule: {"weighted_f1", "accuracy"}} of the file's rules' decisions on `split`, as
    fractions (maln.metrics.classification_metrics, the tables' metric; the tables show x100)."""
    o = read_oracle(path)
    keep = o["split"] == split
    names = [str(c) for c in o["class_names"]]
    out = {}
    for rule in rules_of(o):
        m = classification_metrics(o["label"][keep], decisions(o[rule][keep]), names)
        out[rule] = {"weighted_f1": m["weighted_f1"], "accuracy": m["accuracy"]}
    return out
