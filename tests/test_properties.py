"""Property-based tests: the store round-trips any valid dataset, and validation accepts every valid
dataset and rejects each single corruption of one; any parameter value outside its type or range,
and any of the project's own files cut short, emptied, of the wrong type or missing a field, ends
in one `maln COMMAND: error:` line that changes nothing."""

import copy
import hashlib
import json
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trained
from builders import REPO
from corpus import ERROR_LINE, SECONDS
from maln import readback
from maln.data.readers import Dialogue, RawDataset
from maln.data.store import load_store, write_store
from maln.data.validate import validate
from maln.errors import DataError

CLASSES = ("a", "b", "c")


@st.composite
def datasets(draw):
    """Valid datasets of 2..6 dialogues, 1..5 utterances, 1..3 modalities of 1..4 dimensions."""
    n = draw(st.integers(2, 6))
    modalities = draw(st.sampled_from([("text",), ("text", "audio"), ("text", "audio", "visual")]))
    dims = {m: draw(st.integers(1, 4)) for m in modalities}
    floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    dialogues = {}
    for i in range(n):
        length = draw(st.integers(1, 5))
        dialogues[f"dlg{i}"] = Dialogue(
            speakers=np.array(draw(st.lists(st.integers(0, 3), min_size=length, max_size=length)), dtype=np.int64),
            labels=np.array(draw(st.lists(st.integers(0, len(CLASSES) - 1), min_size=length, max_size=length)), dtype=np.int64),
            features={m: np.array(draw(st.lists(st.lists(floats, min_size=d, max_size=d), min_size=length, max_size=length)),
                                  dtype=np.float32).reshape(length, d) for m, d in dims.items()},
        )
    ids = list(dialogues)
    cut = draw(st.integers(1, n - 1))
    return RawDataset("generated.pkl", "conv-emotion-iemocap", CLASSES, dialogues,
                      {"train": ids[:cut], "test": ids[cut:]}, ["0", "1", "2", "3"])


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(datasets())
def test_store_round_trips_any_valid_dataset(raw):
    validate(raw)
    with tempfile.TemporaryDirectory() as tmp:
        write_store(raw, Path(tmp) / "store", "generated", 0.3, [])
        store = load_store(Path(tmp) / "store")
        assert store.dialogue_ids == list(raw.dialogues)
        assert store.modalities == {m: x.shape[1] for m, x in next(iter(raw.dialogues.values())).features.items()}
        for i, k in enumerate(store.dialogue_ids):
            a, b = store.offsets[i], store.offsets[i + 1]
            d = raw.dialogues[k]
            np.testing.assert_array_equal(store.labels[a:b], d.labels)
            np.testing.assert_array_equal(store.speakers[a:b], d.speakers)
            for m, x in d.features.items():
                np.testing.assert_array_equal(store.features[m][a:b], x)
        split_of = {k: s for s, ids in raw.splits.items() for k in ids}
        for i, k in enumerate(store.dialogue_ids):
            name = ("train", "valid", "test")[store.split[i]]
            assert name == split_of[k] or (name == "valid" and split_of[k] == "train")


def _corrupt(raw, kind, rng):
    raw = copy.deepcopy(raw)
    ids = list(raw.dialogues)
    k = ids[rng.integers(len(ids))]
    d = raw.dialogues[k]
    m = next(iter(d.features))
    if kind == "nan":
        d.features[m][rng.integers(len(d.labels)), 0] = np.nan
    elif kind == "inf":
        d.features[m][rng.integers(len(d.labels)), 0] = -np.inf
    elif kind == "label":
        d.labels[rng.integers(len(d.labels))] = len(CLASSES)
    elif kind == "count":
        d.labels = np.append(d.labels, 0)
    elif kind == "dimension":
        d.features[m] = np.zeros((len(d.labels), d.features[m].shape[1] + 1), np.float32)
    elif kind == "empty":
        d.labels, d.speakers = d.labels[:0], d.speakers[:0]
        d.features = {name: x[:0] for name, x in d.features.items()}
    elif kind == "overlap":
        raw.splits["test"].append(raw.splits["train"][0])
    elif kind == "unassigned":
        raw.splits["train"].remove(raw.splits["train"][0]) if len(raw.splits["train"]) > 1 else raw.splits["test"].pop()
    elif kind == "unknown":
        raw.splits["test"].append("ghost")
    elif kind == "modality":
        d.features.pop(m)
    return raw


KINDS = ["nan", "inf", "label", "count", "dimension", "empty", "overlap", "unassigned", "unknown", "modality"]


@PROPERTY
@given(datasets(), st.sampled_from(KINDS), st.integers(0, 2**31 - 1))
def test_validation_rejects_every_single_corruption(raw, kind, seed):
    validate(raw)  # the dataset as generated is valid
    if kind == "dimension" and len(raw.dialogues) < 2:
        return
    with pytest.raises(DataError):
        validate(_corrupt(raw, kind, np.random.default_rng(seed)))


# -- values and files a careless or hostile user hands over -----------------------------------------
# Through the real CLI, in this process (a failing command takes milliseconds here, a subprocess
# seconds): every generated value or corruption must end in one `maln COMMAND: error:` line, no
# traceback (one would propagate out of main() and fail the example), nothing of the project
# changed, within corpus.SECONDS. The project is a finished tiny study (tests/trained.py).

CLI = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRAIN = ["train", "--dataset", trained.DATASET, "--variant", trained.VARIANT, "--seed", "1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return trained.copy_to(tmp_path_factory.mktemp("study") / "project")


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _refused(root: Path, args, *needles) -> str:
    """Run `maln ARGS` in `root`: one error line holding every needle, nothing changed, in time."""
    before = _snapshot(root)
    start = time.perf_counter()
    code, err = trained.run_in_process(root, args)
    seconds = time.perf_counter() - start
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert code not in (0, None) and len(errors) == 1 and "Traceback" not in err, f"exit {code}: {err}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err}"
    assert _snapshot(root) == before, "the command changed the project"
    assert seconds < SECONDS, f"took {seconds:.1f} s"
    return errors[0]


def _numeric_keys(params: dict, prefix: str = "") -> list:
    """(dotted key, list length or None) of every number in a params dict."""
    out = []
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _numeric_keys(v, key + ".")
        elif isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            out.append((key, len(v)))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((key, None))
    return out


NUMERIC = _numeric_keys(yaml.safe_load((REPO / "params.yaml").read_text()))
# Every value below is outside every range the schema states: no maximum reaches 2^32 or 1e10,
# no minimum is below 0.
BAD_VALUES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=2**32, max_value=10**99),
    st.floats(min_value=1e10, max_value=1e308),
    st.integers(max_value=-1),
    st.floats(max_value=-1e-12, min_value=-1e308),
    st.sampled_from(["many", "", "1e3", True, None, [], {}, [1, 2], {"a": 1}]),
)


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def test_the_generated_keys_cover_the_parameters():
    keys = {k for k, _ in NUMERIC}
    assert {"train.lr", "study.seeds", "report.seed", "model.dropout", "baselines.logreg_C",
            "datasets.synthetic-meld.synthetic.seed", "budgets.synthetic.train.lr"} <= keys
    assert len(keys) > 60


@CLI
@given(st.sampled_from(NUMERIC), BAD_VALUES, st.sampled_from(["--set", "params.yaml"]))
def test_a_parameter_outside_its_range_or_type_is_one_error_line(study, key_length, value, via):
    key, length = key_length
    value = value if length is None else [value] * length
    shown = key.split(".")[-1]
    if via == "--set":
        _refused(study, [*TRAIN, "--set", f"{key}={_yaml(value)}"], shown)
        return
    path = study / "params.yaml"
    original = path.read_bytes()
    params = yaml.safe_load(original)
    node = params
    for part in key.split(".")[:-1]:
        node = node[part]
    node[key.split(".")[-1]] = value
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        _refused(study, TRAIN, "params.yaml", shown)
    finally:
        path.write_bytes(original)


def _option_types() -> dict:
    from maln.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    return {a.option_strings[0]: a.type for a in train._actions if a.option_strings}


def test_seed_and_threads_are_parsed_within_their_range():
    """--seed and --threads reach numpy and torch, which take 0 .. 2^32 - 1 and a thread count:
    argparse's `type=int` let 10^22 through to an overflow in torch after the store was loaded."""
    from maln.config import seed_option, threads_option

    assert _option_types()["--seed"] is seed_option and _option_types()["--threads"] is threads_option


@CLI
@given(st.sampled_from(["--seed", "--threads"]),
       st.one_of(st.integers(max_value=-1).map(str), st.integers(min_value=2**32, max_value=10**99).map(str),
                 st.integers(100, 5000).map(lambda n: "9" * n)))  # beyond what Python converts to int
def test_a_command_line_number_outside_its_range_is_one_error_line(study, option, value):
    test_seed_and_threads_are_parsed_within_their_range()  # else the command would train
    args = [*TRAIN, option, value] if option == "--threads" else [*TRAIN[:-2], "--seed", value]
    line = _refused(study, args, f"argument {option}")
    assert len(line) < 300


# -- the project's own files, broken ---------------------------------------------------------------

AGGREGATE, EVALUATE = ["aggregate"], ["evaluate", "--checkpoint", str(trained.RUN / "model.pt")]
TARGETS = {  # file -> (the command that reads it, what the message must hold)
    trained.RUN / "metrics.json": (AGGREGATE, "maln train --dataset synthetic-meld --variant full --seed 0"),
    trained.RUN / "history.csv": (AGGREGATE, "--force"),
    trained.RUN / "predictions.csv": (AGGREGATE, "--force"),
    trained.RUN / "features.npz": (AGGREGATE, "--force"),
    trained.BASELINES: (AGGREGATE, "maln baseline synthetic-meld"),
    trained.RUN / "model.pt": (EVALUATE, "--force"),
    trained.STORE / "meta.json": (TRAIN, "maln prepare synthetic-meld"),
    trained.STORE / "labels.npy": (TRAIN, "maln prepare synthetic-meld"),
}
KINDS = ("truncate", "empty", "wrong type", "missing field")
CHECKPOINT_FIELDS = [("format",), ("model",), ("config",), ("class_names",), ("dims",), ("store_hash",),
                     ("config", "model"), ("config", "train"), ("config", "variant"), ("config", "dataset"),
                     ("config", "model", "width"), ("config", "model", "sclm"), ("config", "train", "batch_dialogues")]


def _required(obj, schema, path=()) -> list:
    """Paths of the fields a reader's schema requires, as they occur in `obj`."""
    out = []
    if not isinstance(obj, dict):
        return out
    for key in schema.get("required", []):
        if key in obj:
            out.append((*path, key))
            out += _required(obj[key], schema.get("properties", {}).get(key, {}), (*path, key))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(obj) - set(schema.get("properties", {})):
            out += _required(obj[key], extra, (*path, key))
    return out


def _other_type(value):
    """A JSON value of another type than `value`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, list, dict)):
        return "x"
    return {int: "x", float: "x", str: 12, list: {"a": 1}, dict: [1]}[type(value)]


def _get(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    return obj


def _break_json(text: str, kind: str, schema, data) -> str:
    obj = json.loads(text)
    paths = _required(obj, schema) if schema is not None else [(k,) for k in obj]
    path = data.draw(st.sampled_from(sorted(paths)), label="field")
    parent = _get(obj, path)
    if kind == "missing field":
        del parent[path[-1]]
    else:
        parent[path[-1]] = _other_type(parent[path[-1]])
    return json.dumps(obj, indent=1) + "\n"


def _break_csv(text: str, kind: str, required: list, numeric: list, data) -> str:
    rows = [line.split(",") for line in text.splitlines()]
    header = rows[0]
    if kind == "missing field":
        col = header.index(data.draw(st.sampled_from(required), label="column"))
        rows = [r[:col] + r[col + 1:] for r in rows]
    else:
        col = header.index(data.draw(st.sampled_from(numeric), label="column"))
        line = data.draw(st.integers(1, len(rows) - 1), label="line")
        # (not "": a column that some epochs leave empty is allowed to)
        rows[line][col] = data.draw(st.sampled_from(["x", "nan", "inf", "-inf", "1e999", "-", "0x1p3"]), label="value")
    return "\n".join(",".join(r) for r in rows) + "\n"


def _break_npz(path: Path, kind: str, data) -> None:
    with np.load(path) as z:
        arrays = dict(z)
    name = data.draw(st.sampled_from(sorted(arrays)), label="array")
    if kind == "missing field":
        del arrays[name]
    else:
        arrays[name] = data.draw(st.sampled_from([np.array(["x"]), np.zeros((2, 2, 2, 2)), np.array(3.5)]), label="as")
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _break_checkpoint(path: Path, kind: str, data) -> None:
    import torch

    ckpt = torch.load(path, weights_only=True)
    fields = CHECKPOINT_FIELDS + [("model", next(iter(ckpt["model"])))]
    field = data.draw(st.sampled_from(fields), label="field")
    parent = _get(ckpt, field)
    if kind == "missing field":
        del parent[field[-1]]
    else:
        parent[field[-1]] = _other_type(parent[field[-1]]) if not isinstance(parent[field[-1]], torch.Tensor) else "x"
    torch.save(ckpt, path)


def _break(path: Path, kind: str, data) -> None:
    original = path.read_bytes()
    if kind == "truncate":  # strictly inside the content: dropping only a final newline changes nothing
        path.write_bytes(original[:data.draw(st.integers(1, len(original) - 2), label="keep")])
    elif kind == "empty":
        path.write_bytes(b"")
    elif path.suffix == ".npy":  # the store's arrays: any change is caught by their hashes
        path.unlink() if kind == "missing field" else np.save(path, np.zeros(3, np.float32))
    elif path.name == "meta.json":
        path.write_text(_break_json(original.decode(), kind, None, data))
    elif path.suffix == ".json":
        schema = readback.BASELINES if path.parent.name == "baselines" else readback.RUN_METRICS
        path.write_text(_break_json(original.decode(), kind, schema, data))
    elif path.name == "history.csv":
        text = original.decode()
        path.write_text(_break_csv(text, kind, ["epoch", "ce", "valid_weighted_f1"], text.split("\n")[0].split(","), data))
    elif path.name == "predictions.csv":
        header = original.decode().split("\n")[0].split(",")
        probs = [c for c in header if c.startswith("p_")]
        path.write_text(_break_csv(original.decode(), kind, header, ["position", "gold", "predicted", *probs], data))
    elif path.suffix == ".npz":
        _break_npz(path, kind, data)
    else:
        _break_checkpoint(path, kind, data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(TARGETS, key=str)), st.sampled_from(KINDS), st.data())
def test_a_broken_file_of_the_project_is_one_error_line_naming_it_and_its_remedy(study, target, kind, data):
    path = study / target
    original = path.read_bytes()
    args, remedy = TARGETS[target]
    try:
        _break(path, kind, data)
        line = _refused(study, args, target.name, remedy)
    finally:
        path.write_bytes(original)
    assert re.search(re.escape(target.name) + r": .+; .+", line), line
