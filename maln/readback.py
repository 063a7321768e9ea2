"""Reading back what the project wrote: a run's metrics.json, history.csv, predictions.csv and
features.npz, the baselines (results/baselines/*.json), a model checkpoint's content, a store's
meta.json. Each is checked where it is read against what its writer writes (maln/train.py,
maln/baselines.py, maln/data/store.py), so a file that is truncated, emptied, edited by hand or of
another version ends in one DataError naming the file, what is wrong and the command that writes
it again, never in a KeyError or IndexError deep in the report."""

from __future__ import annotations

import csv
import io as _io
import json
import math
import re
from pathlib import Path

from maln import io
from maln.errors import DataError
from maln.schema import problems

COUNT = {"type": "integer", "minimum": 0}
FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
NAMES = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
HASH = {"type": "string", "minLength": 1}

SCORES = {  # maln.metrics.classification_metrics
    "type": "object",
    "required": ["n", "accuracy", "weighted_f1", "macro_f1", "waa", "per_class", "confusion"],
    "properties": {
        "n": {"type": "integer", "minimum": 1}, "accuracy": FRACTION, "weighted_f1": FRACTION,
        "macro_f1": FRACTION, "waa": FRACTION,
        "per_class": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["precision", "recall", "f1", "support"],
            "properties": {"precision": FRACTION, "recall": FRACTION, "f1": FRACTION, "support": COUNT}}},
        "confusion": {"type": "array", "items": {"type": "array", "items": COUNT}},
    },
}

RUN_METRICS = {  # maln/train.py finish: the fields the report reads
    "type": "object",
    "required": ["dataset", "configuration", "variant", "seed", "modalities", "class_names", "valid", "test",
                 "best_epoch", "epochs_run", "config_hash", "store_hash"],
    "properties": {
        "dataset": {"type": "string"}, "configuration": {"type": "string"}, "variant": {"type": "string"},
        "seed": COUNT, "modalities": NAMES,
        "class_names": NAMES, "valid": SCORES, "test": SCORES, "best_epoch": {"type": "integer", "minimum": 1},
        "epochs_run": {"type": "integer", "minimum": 1}, "config_hash": HASH, "store_hash": HASH,
        "invariance": {"type": "object", "required": ["chance", "common_modality_accuracy",
                                                      "specific_modality_accuracy", "common_emotion_accuracy"],
                       "properties": {"chance": FRACTION}, "patternProperties": {"_accuracy(_mlp)?$": FRACTION}},
        "combination": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}

BASELINES = {  # maln/baselines.py run_baselines
    "type": "object",
    "required": ["class_names", "baselines"],
    "properties": {
        "class_names": NAMES,
        "baselines": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "required": ["valid", "test", "test_predictions"],
            "properties": {"valid": SCORES, "test": SCORES, "test_predictions": {"type": "array", "items": COUNT},
                           "C": {"type": "number", "exclusiveMinimum": 0}, "alpha": {"type": "number", "minimum": 0},
                           "class": {"type": "string"}, "modalities": NAMES}}},
    },
}


def broken(path, problem: str, remedy: str) -> DataError:
    return DataError(io.shown(path), f"{problem}; {remedy}")


def run_remedy(dataset: str, variant: str, seed: int, out=None, sets=()) -> str:
    """The command that writes a run folder again (with --force, as a complete-looking run would
    otherwise be kept); `variant` may be a study row label (paper/full)."""
    from maln.study import RECOMMENDED, parse_label

    configuration, variant = parse_label(variant)
    sets = ([f"configuration={configuration}"] if configuration != RECOMMENDED else []) + list(sets)
    extra = "".join(f" --set {s}" for s in sets) + (f" --out {io.shown(out)}" if out is not None else "")
    return f"train it again: `maln train --dataset {dataset} --variant {variant} --seed {seed}{extra} --force`"


def folder_remedy(folder) -> str:
    """run_remedy for a run folder named by the study's layout (results/runs/D/[CONFIGURATION/]V/seedS),
    else the command's shape."""
    m = re.search(r"runs/([^/]+)/((?:[^/]+/)?[^/]+)/seed(\d+)$", Path(folder).absolute().as_posix())
    if m:
        return run_remedy(m[1], m[2], int(m[3]), out=folder)
    return f"train it again: `maln train --dataset DATASET --variant VARIANT --seed SEED --out {io.shown(folder)} --force`"


def _read(path, remedy: str) -> bytes:
    try:
        with io.open_regular(path) as f:
            return f.read()
    except FileNotFoundError:
        raise broken(path, "missing", remedy) from None
    except OSError as e:
        raise broken(path, io.problem(e) or e.strerror or str(e), remedy) from None


def _text(path, remedy: str) -> str:
    data = _read(path, remedy)
    if not data.strip():
        raise broken(path, "empty", remedy)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise broken(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", remedy) from None


def _no_constant(name):
    raise ValueError(f"holds {name}, which maln never writes")


def read_json(path, remedy: str, schema: dict | None = None):
    """A JSON file the project wrote, checked against `schema`."""
    text = _text(path, remedy)
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise broken(path, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; cut short?)", remedy) from None
    except ValueError as e:  # NaN, or an integer of more than 4300 digits
        raise broken(path, str(e).split(";")[0], remedy) from None
    except RecursionError:
        raise broken(path, "nested too deeply to be one of maln's files", remedy) from None
    if schema is not None and (found := problems(obj, schema, limit=1)):
        raise broken(path, field_words(found[0]), remedy)
    return obj


def field_words(problem: str) -> str:
    """A schema problem as a file's message says it: 'test: missing field 'n'', no '(top level)'."""
    problem = re.sub(r"'([^']*)' is a required property$", r"missing field '\1'", problem)
    return problem.removeprefix("(top level): ")


def check_scores(path, scores: dict, key: str, class_names, remedy: str) -> None:
    """A split's scores must be of the run's classes: per_class by name, a C x C confusion matrix."""
    c = len(class_names)
    if sorted(scores["per_class"]) != sorted(class_names):
        raise broken(path, f"{key}.per_class names {sorted(scores['per_class'])}, not the classes {class_names}", remedy)
    if len(scores["confusion"]) != c or any(len(row) != c for row in scores["confusion"]):
        raise broken(path, f"{key}.confusion is not a {c} x {c} matrix", remedy)
    if sum(map(sum, scores["confusion"])) != scores["n"]:
        raise broken(path, f"{key}.confusion counts {sum(map(sum, scores['confusion']))} utterances, "
                           f"{key}.n says {scores['n']}", remedy)


def read_metrics(path, remedy: str) -> dict:
    """A run's metrics.json, every field the report reads present and consistent."""
    metrics = read_json(path, remedy, RUN_METRICS)
    for split in ("valid", "test"):
        check_scores(path, metrics[split], split, metrics["class_names"], remedy)
    return metrics


def read_baselines(path, remedy: str) -> dict:
    result = read_json(path, remedy, BASELINES)
    for name, r in result["baselines"].items():
        for split in ("valid", "test"):
            check_scores(path, r[split], f"baselines.{name}.{split}", result["class_names"], remedy)
        preds = r["test_predictions"]
        if len(preds) != r["test"]["n"] or any(p >= len(result["class_names"]) for p in preds):
            raise broken(path, f"baselines.{name}.test_predictions: not {r['test']['n']} class indices "
                               f"below {len(result['class_names'])}", remedy)
    return result


def read_csv(path, remedy: str, required, numeric=None, rows: int | None = None) -> list[dict]:
    """A CSV the project wrote: the `required` columns present, every row complete, the `numeric`
    columns (default: all) finite numbers, and `rows` rows when given."""
    text = _text(path, remedy)
    if not text.endswith("\n"):  # maln ends every line; a file cut short inside its last value still parses
        raise broken(path, "cut short (its last line does not end)", remedy)
    try:
        reader = csv.DictReader(_io.StringIO(text, newline=""))
        table = list(reader)
        header = list(reader.fieldnames or [])
    except csv.Error as e:
        raise broken(path, f"not a readable CSV ({e})", remedy) from None
    if missing := [c for c in required if c not in header]:
        raise broken(path, f"no column {missing[0]!r} (the header has {', '.join(map(repr, header[:8]))})", remedy)
    numeric = header if numeric is None else numeric
    for line, row in enumerate(table, 2):
        if None in row or None in row.values():
            raise broken(path, f"line {line} has {'more' if None in row else 'fewer'} fields than the header", remedy)
        for c in numeric:
            if row[c] == "" and c not in required:  # a column some epochs leave empty
                continue
            try:
                ok = math.isfinite(float(row[c]))
            except ValueError:
                ok = False
            if not ok:
                raise broken(path, f"line {line}: {c} is {row[c][:40]!r}, not a finite number", remedy)
    if not table:
        raise broken(path, "has a header and no rows", remedy)
    if rows is not None and len(table) != rows:
        raise broken(path, f"has {len(table)} rows where metrics.json counts {rows} (cut short?)", remedy)
    return table


def read_history(path, remedy: str, epochs: int) -> list[dict]:
    rows = read_csv(path, remedy, ("epoch", "ce", "valid_weighted_f1"), rows=epochs)
    return [{k: float(v) for k, v in row.items() if v != ""} for row in rows]


def read_predictions(path, remedy: str, class_names, n: int) -> list[dict]:
    """predictions.csv (or valid_predictions.csv): every gold and predicted label one of the run's
    classes, every probability a number in [0, 1]."""
    probs = [f"p_{c}" for c in class_names]
    rows = read_csv(path, remedy, ("dialogue_id", "position", "speaker", "gold", "predicted", *probs),
                    numeric=("position", *probs), rows=n)
    names = set(class_names)
    for line, row in enumerate(rows, 2):
        for c in ("gold", "predicted"):
            if row[c] not in names:
                raise broken(path, f"line {line}: {c} {row[c][:40]!r} is not one of the run's classes", remedy)
        if any(not 0 <= float(row[p]) <= 1 for p in probs):
            raise broken(path, f"line {line}: a probability outside [0, 1]", remedy)
    return rows


def check_features(path, remedy: str, n: int, modalities: list, classes: list) -> None:
    """features.npz (train.write_features): n test utterances, the run's modality and class names;
    for a multimodal run, specific and common features [n, modalities, width], finite."""
    import zipfile
    import zlib

    import numpy as np

    need = ["gold", "predicted", "modalities", "classes"] + (["specific", "common"] if len(modalities) > 1 else [])
    try:
        with io.open_regular(path) as f, np.load(f, allow_pickle=False) as z:
            if missing := [k for k in need if k not in z.files]:
                raise broken(path, f"has no array {missing[0]!r}", remedy)
            arrays = {k: z[k] for k in need}
    except FileNotFoundError:
        raise broken(path, "missing", remedy) from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise broken(path, f"unreadable ({type(e).__name__}: {str(e)[:120] or 'cut short?'})", remedy) from None
    for k in ("gold", "predicted"):
        if arrays[k].shape != (n,) or arrays[k].dtype.kind not in "iu" or not (0 <= arrays[k]).all() \
                or not (arrays[k] < len(classes)).all():
            raise broken(path, f"{k} is not {n} class indices, as metrics.json counts", remedy)
    for k, names in (("modalities", modalities), ("classes", classes)):
        if arrays[k].dtype.kind != "U" or arrays[k].tolist() != list(names):
            raise broken(path, f"{k} are not the run's {', '.join(names)}", remedy)
    m = len(modalities)
    for k in ("specific", "common"):
        x = arrays.get(k)
        if x is not None and (x.ndim != 3 or x.shape[:2] != (n, m) or x.dtype.kind != "f"):
            raise broken(path, f"{k} is {x.dtype} {list(x.shape)}, not [{n}, {m}, width] floats", remedy)
        if x is not None and not np.isfinite(x).all():
            raise broken(path, f"{k} holds non-finite values", remedy)


def check_checkpoint(ckpt, path, remedy: str) -> dict:
    """A model.pt's content (runs.save_run): the format, tensors by name, and a configuration of
    the params schema's own keys and ranges, before any model is built from it."""
    import torch

    from maln.config import schema
    from maln.data.layouts import LAYOUTS
    from maln.model.variants import VARIANTS

    params = schema()
    shape = {
        "$defs": params["$defs"], "type": "object",
        "required": ["format", "model", "config", "class_names", "dims", "store_hash"],
        "properties": {
            "format": {"const": "maln-model"}, "model": {"type": "object", "minProperties": 1},
            "class_names": NAMES, "store_hash": HASH, "layout": {"enum": [*LAYOUTS, None]},
            "dims": {"type": "object", "minProperties": 1,
                     "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 65536}},
            "config": {"type": "object", "required": ["dataset", "variant", "model", "train"], "properties": {
                "dataset": {"type": "string"}, "variant": {"enum": list(VARIANTS)},
                "model": params["properties"]["model"], "train": params["properties"]["train"]}},
        },
    }
    if not isinstance(ckpt, dict):
        raise broken(path, f"holds a {type(ckpt).__name__}, not a maln model checkpoint", remedy)
    weights = ckpt.get("model")
    plain = {**ckpt, "model": {k: 0 for k in weights} if isinstance(weights, dict) else weights}
    if found := problems(plain, shape, limit=1):
        raise broken(path, field_words(found[0]), remedy)
    if bad := next((k for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None):
        raise broken(path, f"model.{bad}: not a tensor", remedy)
    return ckpt
