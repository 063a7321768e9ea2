"""`maln evaluate` and `maln predict` on saved checkpoints: a model.pt read and checked, its model
built, and run over a store's test split or over a raw feature file (maln/inference.py)."""

from __future__ import annotations

import io as _io
import os
from pathlib import Path

import torch

from maln import io
from maln.data.batching import DeviceData
from maln.errors import MalnError
from maln.inference import metrics_of, precision, predict


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


def evaluate_checkpoint(checkpoint: str | Path, store_path: str | Path | None = None) -> tuple[dict, dict | None, str]:
    """Test metrics recomputed from model.pt and the store on the CPU, in the precision the run's
    train.bf16 gives here; the run's stored ones, if any; and a note where the run computed in
    another precision (its numbers may then differ in the last predictions), else ""."""
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
    stored, note = None, ""
    device = torch.device("cpu")
    here = precision(device, cfg["train"]["bf16"])
    if os.path.lexists(metrics_path):  # read (and checked) before the work, not after it
        run = readback.read_metrics(metrics_path, readback.folder_remedy(checkpoint.parent))
        stored = run["test"]
        if run.get("precision", "float32") != here:  # older runs computed in float32 on the CPU
            note = f"the run computed in {run.get('precision', 'float32')}, this evaluation in {here}"
    model = build_from_checkpoint(ckpt, device, checkpoint)
    data = DeviceData(store, model.modalities, device)
    p = predict(model, data, store.dialogues("test"), cfg["train"]["batch_dialogues"], cfg["train"]["bf16"])
    return metrics_of(p, store.class_names), stored, note


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
        p = predict(model, data, store.dialogues("test"), ckpt["config"]["train"]["batch_dialogues"],
                    ckpt["config"]["train"]["bf16"])
        from maln.runs import write_predictions

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
