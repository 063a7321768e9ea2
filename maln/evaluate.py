"""Running a trained model over a split: predictions, probabilities, metrics, and the decomposed
features for the visualisation; plus `maln evaluate` and `maln predict` on saved checkpoints."""

from __future__ import annotations

import contextlib
import io as _io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maln import io
from maln.data.batching import DeviceData
from maln.errors import MalnError
from maln.combination import choose_combination
from maln.metrics import classification_metrics


@dataclass
class Predictions:
    dialogue: np.ndarray  # store index of each utterance's dialogue
    position: np.ndarray  # utterance position within its dialogue
    speaker: np.ndarray
    gold: np.ndarray
    probs: np.ndarray  # [N, C]
    specific: np.ndarray | None = None  # [N, M, W]
    common: np.ndarray | None = None
    heads: dict | None = None  # multimodal, with keep_features: head name -> its own probabilities [N, C]

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)


def autocast(device: torch.device, bf16: bool):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model, data: DeviceData, dialogues: np.ndarray, batch_size: int, bf16: bool = False,
            keep_features: bool = False) -> Predictions:
    """Model outputs for every real utterance of `dialogues`, in store order (by dialogue, then
    position), whatever the batching."""
    model.eval()
    parts = []
    for idx in data.eval_batches(dialogues, batch_size):
        b = data.batch(idx)
        with autocast(data.device, bf16):
            out = model(b.features, b.speakers, b.mask, b.lengths)
        mask = b.mask.cpu()
        part = {
            "probs": torch.softmax(out.logits.float(), -1).cpu()[mask],
            "gold": b.labels.cpu()[mask],
            "speaker": b.speakers.cpu()[mask],
            "dialogue": torch.from_numpy(idx).repeat_interleave(b.lengths),
            "position": torch.cat([torch.arange(n) for n in b.lengths.tolist()]),
        }
        if keep_features and out.specific:
            part["specific"] = torch.stack([out.specific[m] for m in model.modalities], 2).float().cpu()[mask]
            part["common"] = torch.stack([out.common[m] for m in model.modalities], 2).float().cpu()[mask]
            for name, logits in (("fusion", out.fused_logits), *out.aux_logits.items()):
                part[f"head:{name}"] = torch.softmax(logits.float(), -1).cpu()[mask]
        parts.append(part)
    cat = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
    order = np.lexsort((cat["position"], cat["dialogue"]))
    cat = {k: v[order] for k, v in cat.items()}
    heads = {k.split(":", 1)[1]: v for k, v in cat.items() if k.startswith("head:")} or None
    return Predictions(cat["dialogue"], cat["position"], cat["speaker"], cat["gold"], cat["probs"],
                       cat.get("specific"), cat.get("common"), heads)


@torch.no_grad()
def fit_combination(model, data: DeviceData, dialogues: np.ndarray, batch_size: int, bf16: bool = False) -> dict:
    """Set a branchwise model's combination from `dialogues` (the validation split): the fusion
    classifier and each modality's, text (or the first modality) as the anchor. Returns it by name."""
    model.eval()
    heads, gold = [], []
    for idx in data.eval_batches(dialogues, batch_size):
        b = data.batch(idx)
        with autocast(data.device, bf16):
            out = model(b.features, b.speakers, b.mask, b.lengths)
        heads.append([torch.log_softmax(x.float(), -1)[b.mask].cpu() for x in (out.fused_logits, *out.aux_logits.values())])
        gold.append(b.labels[b.mask].cpu())
    log_probs = [torch.cat([h[k] for h in heads]).numpy() for k in range(len(heads[0]))]
    anchor = 1 + (model.modalities.index("text") if "text" in model.modalities else 0)
    w = choose_combination(log_probs, torch.cat(gold).numpy(), model.log_prior.cpu().numpy(), anchor)
    model.combination.copy_(torch.as_tensor(w, dtype=torch.float32))
    return dict(zip(("fusion", *model.modalities), map(float, w)))


def metrics_of(p: Predictions, class_names) -> dict:
    return classification_metrics(p.gold, p.pred, class_names)


def nll(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold emotions (nats), probabilities floored at 1e-12."""
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(gold)), gold], 1e-12))))


def head_scores(valid: Predictions, test: Predictions, class_names) -> dict:
    """Each head's own scores (the fusion classifier and every modality's), and the prediction's:
    {name: {split: {"weighted_f1", "nll"}}}; what the combination weights are chosen from, so a
    fusion head given no weight can be told from one that is merely worse than the branches."""
    out = {}
    for name in ("prediction", *(valid.heads or {})):
        out[name] = {}
        for split, p in (("valid", valid), ("test", test)):
            probs = p.probs if name == "prediction" else p.heads[name]
            out[name][split] = {
                "weighted_f1": round(classification_metrics(p.gold, probs.argmax(1), class_names)["weighted_f1"], 6),
                "nll": round(nll(probs, p.gold), 6)}
    return out


def load_checkpoint(path: str | Path) -> dict:
    """A model.pt, loaded with weights_only=True (tensors and plain data only, never code), its
    content checked before anything is built from it (maln/readback.py)."""
    from maln import readback

    path = Path(path)
    remedy = readback.folder_remedy(path.parent)
    if (problem := io.not_regular(path)) is not None:
        raise MalnError(f"{path}: {problem if path.exists() or path.is_symlink() else 'no such checkpoint'}")
    try:
        with io.open_regular(path) as f:  # a FIFO put there since the check is refused, not waited on
            data = f.read()
    except OSError as e:
        raise MalnError(f"{path}: {io.problem(e) or e}") from None
    if not data:
        raise readback.broken(path, "empty", remedy)
    try:  # from memory: what torch raises then is about the content, never about the file system
        ckpt = torch.load(_io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, OSError or zip errors
        said = (str(e).strip().splitlines() or ["cut short?"])[0][:200]
        raise readback.broken(path, f"refused or unreadable checkpoint ({type(e).__name__}: {said})", remedy) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "maln-model":
        raise readback.broken(path, "not a maln model checkpoint", remedy)
    return readback.check_checkpoint(ckpt, path, remedy)


def build_from_checkpoint(ckpt: dict, device: torch.device, path: str | Path | None = None):
    """The model a checkpoint describes, its weights loaded; weights that do not fit the recorded
    configuration (a checkpoint edited, or from another version) name the file."""
    from maln import readback
    from maln.model.config import ModelConfig
    from maln.model.maln import MALN
    from maln.model.variants import get

    cfg = ckpt["config"]
    try:
        model = MALN(ckpt["dims"], len(ckpt["class_names"]), ModelConfig.from_dict(cfg["model"]), get(cfg["variant"]),
                     cfg["dataset"])
        model.load_state_dict(ckpt["model"])
    except (MalnError, KeyError, TypeError, ValueError, RuntimeError) as e:
        if path is None:
            raise
        said = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise readback.broken(path, f"its weights do not fit its configuration ({said})",
                              readback.folder_remedy(Path(path).parent)) from None
    return model.to(device)


def evaluate_checkpoint(checkpoint: str | Path, store_path: str | Path | None = None) -> tuple[dict, dict | None]:
    """Test metrics recomputed from model.pt and the store; and the run's stored ones, if any."""
    from maln.data.store import load_store

    from maln import readback

    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    store = load_store(store_path or Path("data") / "features" / cfg["dataset"])
    if store.hash != ckpt["store_hash"]:
        raise MalnError(f"{store.path} is not the store this model was trained on "
                        f"(store {store.hash[:12]}, model trained on {ckpt['store_hash'][:12]}); prepare it again")
    metrics_path = checkpoint.with_name("metrics.json")
    stored = None
    if os.path.lexists(metrics_path):  # read (and checked) before the work, not after it
        stored = readback.read_metrics(metrics_path, readback.folder_remedy(checkpoint.parent))["test"]
    device = torch.device("cpu")
    model = build_from_checkpoint(ckpt, device, checkpoint)
    data = DeviceData(store, model.modalities, device)
    p = predict(model, data, store.dialogues("test"), cfg["train"]["batch_dialogues"])
    return metrics_of(p, store.class_names), stored


def predict_file(checkpoint: str | Path, input_path: str | Path, layout: str | None = None,
                 output: str | Path | None = None) -> Path:
    """Label every dialogue of a raw feature file (any split) and write a CSV."""
    import tempfile

    from maln.data import layouts, readers
    from maln.data.store import load_store, write_store
    from maln.data.validate import validate

    ckpt = load_checkpoint(checkpoint)
    input_path = Path(input_path)
    layout = layout or _training_layout(ckpt)
    if layout not in layouts.LAYOUTS or layouts.get(layout).files != ("main",):
        raise MalnError(f"--layout {layout!r}: predict reads single-file layouts: "
                        + ", ".join(n for n, l in layouts.LAYOUTS.items() if l.files == ("main",)))
    raw = readers.read(layout, {"main": input_path})
    validate(raw)
    have = {m: raw.dialogues[next(iter(raw.dialogues))].features[m].shape[1] for m in raw.modalities}
    model_dims = {m: ckpt["dims"][m] for m in ckpt["dims"]}
    device = torch.device("cpu")
    model = build_from_checkpoint(ckpt, device, checkpoint)
    for m in model.modalities:
        if m not in have:
            raise MalnError(f"{input_path}: the model uses {m} features, the file has {', '.join(have)}")
        if have[m] != model_dims[m]:
            raise MalnError(f"{input_path}: {m} features are {have[m]}-d, the model was trained on {model_dims[m]}-d")
    if raw.class_names != tuple(ckpt["class_names"]):
        raise MalnError(f"{input_path}: layout {layout} has classes {raw.class_names}, the model {ckpt['class_names']}")
    # Every dialogue is predicted: put them all in one split of a throw-away store.
    raw.splits = {"train": [], "test": list(raw.dialogues)}
    with tempfile.TemporaryDirectory() as tmp:
        write_store(raw, Path(tmp) / "store", "predict", 0.1, [{"role": "main", "path": str(input_path)}])
        store = load_store(Path(tmp) / "store")
        limit = ckpt["config"]["model"]["sclm"]["max_positions"]
        if model.sclm is not None and store.lengths().max() > limit:
            raise MalnError(f"{input_path}: a dialogue has {store.lengths().max()} utterances; the model's "
                            f"position embeddings cover {limit} (model.sclm.max_positions)")
        data = DeviceData(store, model.modalities, device)
        p = predict(model, data, store.dialogues("test"), ckpt["config"]["train"]["batch_dialogues"])
        from maln.train import write_predictions

        output = Path(output) if output else input_path.with_name(f"predictions-{input_path.stem}.csv")
        write_predictions(output, p, store)
    return output


def _training_layout(ckpt: dict) -> str:
    from maln.data import layouts

    name = ckpt.get("layout")
    if name is None:
        raise MalnError("the checkpoint does not record its data layout; pass --layout")
    layout = layouts.get(name)
    return layout.synthetic_of or name
