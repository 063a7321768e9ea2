"""Where a run's common features still give their modality away: the modality probe of
maln/probes.py on the common features as they are, and again after each modality's own
training-split mean is removed (from both splits), after each modality's features are
standardised per coordinate (mean and std of that modality on the training split) and after each
is whitened (full covariance). If the probe falls to chance once the means are removed, what
separates the modalities for a linear read-out is their means alone. Last, a small non-linear
probe (an MLP with 64 hidden units) on the features as they are: what a linear probe at chance
does not rule out.

    python benchmarks/probe_diagnosis.py results/experiments/<experiment>/<config>/seed0 [...]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from maln.data.batching import DeviceData
from maln.data.store import load_store
from maln.evaluate import build_from_checkpoint, load_checkpoint
from maln.inference import predict
from maln.probes import _by_modality, probe_accuracy


def _per_modality(x: np.ndarray, y: np.ndarray, stats: dict | None, whiten: bool | None) -> tuple[np.ndarray, dict]:
    """Each modality's points minus its mean, then (whiten None) as they are, (False) over their
    per-coordinate std, (True) whitened; the statistics from the first call's points."""
    out, stats = np.empty_like(x), ({} if stats is None else stats)
    for m in np.unique(y):
        xm = x[y == m]
        if m not in stats:
            mu = xm.mean(0)
            if whiten is None:
                stats[m] = (mu, np.eye(x.shape[1]))
            elif whiten:
                w, v = np.linalg.eigh(np.cov((xm - mu).T) + 1e-3 * np.eye(x.shape[1]))
                stats[m] = (mu, v @ np.diag(w ** -0.5) @ v.T)
            else:
                stats[m] = (mu, np.diag(1.0 / (xm.std(0) + 1e-6)))
        mu, transform = stats[m]
        out[y == m] = (xm - mu) @ transform
    return out, stats


def diagnose(run: str) -> dict:
    ckpt = load_checkpoint(f"{run}/model.pt")
    cfg = ckpt["config"]
    store = load_store(f"data/features/{cfg['dataset']}")
    model = build_from_checkpoint(ckpt, torch.device("cpu")).eval()
    data = DeviceData(store, model.modalities, torch.device("cpu"))
    feats = {s: predict(model, data, store.dialogues(s), 32, keep_features=True).common for s in ("train", "test")}
    if feats["test"] is None:
        raise SystemExit(f"{run}: a single-modality run has no common features")
    (xa, ya), (xb, yb) = _by_modality(feats["train"]), _by_modality(feats["test"])
    row = {"as trained": probe_accuracy(xa, ya, xb, yb)}
    for name, whiten in (("means removed per modality", None), ("standardised per modality", False),
                         ("whitened per modality", True)):
        a, stats = _per_modality(xa, ya, None, whiten)
        b, _ = _per_modality(xb, yb, stats, whiten)
        row[name] = probe_accuracy(a, ya, b, yb)
    row["MLP probe"] = mlp_probe_accuracy(xa, ya, xb, yb)
    return row


def mlp_probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=500, random_state=0))
    return float(probe.fit(train_x, train_y).score(test_x, test_y))


def main() -> int:
    for run in sys.argv[1:]:
        row = diagnose(run)
        print(run + ": " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
