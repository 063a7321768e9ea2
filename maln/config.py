"""params.yaml: loading, `--set` overrides, schema validation (the one schema, in
workflow/schemas/), the checks a schema cannot express, and the effective configuration of a run."""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from maln import io
from maln.errors import ConfigError
from maln.yaml_reader import read_yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = "params.yaml"


def read_params_file(path: str | Path):
    """A parameter file's content as read_yaml gives it; a missing path, or one that is a folder
    or a FIFO, is refused with what it is (a FIFO is never opened, so nothing blocks)."""
    path = Path(path)
    if (problem := io.not_regular(path)) is not None:
        if not os.path.lexists(path):
            problem = "no such parameter file (run from the project root or pass --params PATH)"
        raise ConfigError(f"{path}: {problem}")
    try:
        with io.open_regular(path) as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: {io.problem(e) or e.strerror}") from None
    return read_yaml(data, str(path))


@functools.cache
def schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise ConfigError(
            f"schema not found at {SCHEMA_PATH}; install maln from a clone of the repository "
            "with `pip install -e .` so the package can see workflow/schemas/"
        )
    return read_params_file(SCHEMA_PATH)


def parse_override(text: str) -> tuple[list[str], object]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is read as YAML."""
    key, sep, value = text.partition("=")
    shown = text if len(text) <= 120 else f"{text[:100]}... ({len(text)} characters)"  # a message stays readable
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {shown!r}: expected KEY.SUB=VALUE, e.g. --set train.epochs=3")
    parsed = read_yaml(value, f"--set {shown!r}") if value.strip() else ""
    return key.split("."), parsed


def apply_overrides(params: dict, overrides) -> dict:
    params = copy.deepcopy(params)
    for text in overrides:
        keys, value = parse_override(text)
        node = params
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return params


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def diff_overrides(base: dict, changed: dict, prefix: str = "") -> list[str]:
    """`--set` arguments that turn `base` into `changed` (how Snakemake's --config reaches maln)."""
    out = []
    for k, v in changed.items():
        key = f"{prefix}{k}"
        # a mapping whose own keys are dotted (sweep: {train.lr: [...]}) travels whole: a dotted
        # --set path would split those keys
        if isinstance(v, dict) and isinstance(base.get(k), dict) and not any("." in str(x) for x in v):
            out += diff_overrides(base[k], v, key + ".")
        elif base.get(k, object()) != v:
            out.append(f"{key}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
    return out


def validate_schema(params: dict, source: str = DEFAULT_PARAMS) -> None:
    from maln.schema import problems

    lines = problems(params, schema())
    if lines:
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(dict.fromkeys(lines)))


def check_rows(params: dict, source: str) -> None:
    """study.rows names datasets of the registry and rows of a known configuration and variant (that
    the study trains one of them: maln.study.dataset_labels)."""
    from maln.model.variants import VARIANTS

    for dataset, rows in (params["study"].get("rows") or {}).items():
        if rows is None:  # every row
            continue
        if dataset not in params["datasets"]:
            raise ConfigError(f"{source}: study.rows: unknown dataset {dataset!r}; the registry has "
                              f"{', '.join(params['datasets'])}")
        for row in rows:
            configuration, _, variant = row.rpartition("/")
            if configuration and configuration not in params["configurations"] or variant not in VARIANTS:
                raise ConfigError(f"{source}: study.rows.{dataset}: {row!r} is not a row; a row is a variant "
                                  f"({', '.join(VARIANTS)}), after its configuration and a slash unless that is "
                                  f"the recommended one (configurations: has {', '.join(params['configurations'])})")


def check_references(params: dict, source: str = DEFAULT_PARAMS) -> None:
    """What the schema cannot say: names that must exist, values that must fit together."""
    unknown = [d for d in params["study"]["datasets"] if d not in params["datasets"]]
    if unknown:
        raise ConfigError(
            f"{source}: study.datasets: unknown dataset {', '.join(map(repr, unknown))}; "
            f"the registry has {', '.join(params['datasets'])}"
        )
    known = params["configurations"]
    for key, names in (("configuration", [params["configuration"]]), ("study.configurations",
                                                                       params["study"]["configurations"])):
        if unknown := [n for n in names if n not in known]:
            raise ConfigError(f"{source}: {key}: unknown configuration {', '.join(map(repr, unknown))}; "
                              f"configurations: has {', '.join(map(repr, known))}")
    check_rows(params, source)
    from maln.model.config import ModelConfig

    for name, entry in params["datasets"].items():
        if "budget" in entry and entry["budget"] not in (params.get("budgets") or {}):
            raise ConfigError(f"{source}: datasets.{name}.budget: unknown budget {entry['budget']!r}; budgets: has "
                              f"{', '.join(map(repr, params.get('budgets') or {})) or 'none'}")
        for configuration in known:
            model = deep_merge(params["model"], dataset_overrides(params, name, configuration).get("model", {}))
            try:
                ModelConfig.from_dict(model)
            except ConfigError as e:
                raise ConfigError(f"{source}: datasets.{name} under configuration {configuration}: {e}") from None
    check_sweep(params, source)


def sweep_value(value) -> str:
    """A swept value as `--set` writes it (YAML) and as its folder is named: 0.01, 1.0e-05, true."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def dataset_overrides(params: dict, dataset: str, configuration: str | None = None) -> dict:
    """The model: and train: values a dataset changes under a configuration (default: params'
    `configuration:`): the configuration's `defaults:`, then the dataset's budget (budgets.NAME),
    then the configuration's own values, then the dataset's `overrides:` on top."""
    entry = params["datasets"][dataset]
    budget = (params.get("budgets") or {}).get(entry["budget"], {}) if "budget" in entry else {}
    chosen = dict(params["configurations"][configuration or params["configuration"]])
    defaults = chosen.pop("defaults", {})  # what a budget may change (the paper's: the authors' rate)
    return deep_merge(deep_merge(deep_merge(defaults, budget), chosen), entry.get("overrides", {}))


SWEEPABLE = ("model", "train", "datasets", "budgets", "configurations")  # what one training job's --set may change


def check_sweep(params: dict, source: str = DEFAULT_PARAMS) -> None:
    """Every swept key must be a key a training job reads, and every value valid there: each
    value is applied as its job's --set would be and the result validated, so a typo stops the
    workflow before any job starts."""
    for key, values in (params.get("sweep") or {}).items():
        if key.split(".", 1)[0] not in SWEEPABLE:
            raise ConfigError(f"{source}: sweep: {key!r}: only keys under {', '.join(SWEEPABLE)} can be swept "
                              "(a training job reads nothing else)")
        for value in values:
            changed = apply_overrides(params, [f"{key}={sweep_value(value)}"])
            changed["sweep"] = {}
            try:
                validate(changed, source)
            except ConfigError as e:
                raise ConfigError(f"sweep: {key}={sweep_value(value)}: {str(e).split(chr(10), 1)[-1].strip()}") from None
            node = params
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"{source}: sweep: {key!r} is not a key of the parameters")
                node = node[part]


def validate(params: dict, source: str = DEFAULT_PARAMS) -> None:
    """Raise ConfigError naming every invalid key (schema, then cross-references)."""
    validate_schema(params, source)
    check_references(params, source)


@dataclass(frozen=True)
class Params:
    """Validated params.yaml with overrides applied; paths resolve against the file's folder."""

    data: dict
    path: Path
    overrides: tuple = ()  # the --set arguments, re-applied last so they win over dataset overrides

    @property
    def root(self) -> Path:
        return self.path.parent

    def dataset(self, name: str) -> dict:
        try:
            return self.data["datasets"][name]
        except KeyError:
            raise ConfigError(
                f"unknown dataset {name!r}; {self.path.name} registers {', '.join(self.data['datasets'])}"
            ) from None

    def run_config(self, dataset: str, configuration: str | None = None) -> tuple[dict, dict]:
        """(model, train) sections for `dataset`: global values, then the dataset's budget, the
        configuration's values (default: `configuration:`) and the dataset's own overrides, then the
        command line's --set (so `--set train.epochs=3` means 3 epochs, whatever the dataset)."""
        self.dataset(dataset)  # an unknown name is refused by name
        overrides = dataset_overrides(self.data, dataset, configuration)
        merged = {
            "model": deep_merge(self.data["model"], overrides.get("model", {})),
            "train": deep_merge(self.data["train"], overrides.get("train", {})),
        }
        merged = apply_overrides(merged, [o for o in self.overrides if o.split(".", 1)[0] in merged])
        return merged["model"], merged["train"]

    def resolve(self, path: str, key: str) -> Path:
        """A registry path, relative to the project; refuses one that leaves the project unless
        data.allow_paths_outside_project is true."""
        p = Path(path).expanduser()
        resolved = (p if p.is_absolute() else self.root / p).resolve()
        if not self.data["data"]["allow_paths_outside_project"] and not resolved.is_relative_to(self.root.resolve()):
            raise ConfigError(
                f"{key}: {path!r} resolves to {resolved}, outside the project {self.root.resolve()}; "
                "move the file into data/raw/ or set data.allow_paths_outside_project: true"
            )
        return resolved


# Seeds reach numpy (SeedSequence, RandomState) and torch; 0 .. 2^32 - 1 is what all of them take
# (the schema's $defs/seed says the same for the seeds in params.yaml).
SEED_MAX = 2**32 - 1
THREADS_MAX = 1024


def _bounded_int(option: str, low: int, high: int, why: str):
    """An argparse `type`: an integer within [low, high], else argparse's one error line naming
    the option and the range (`maln train: error: argument --seed: ...`)."""
    import argparse

    def parse(text: str) -> int:
        digits = text.strip().lstrip("+-")
        try:  # (Python converts at most 4300 digits; far fewer are out of range anyway)
            value = int(text) if len(digits) <= 40 or not digits.isdigit() else None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
        if value is None or not low <= value <= high:
            shown = f"a {len(digits)}-digit number" if value is None else str(value)
            raise argparse.ArgumentTypeError(f"{shown} is outside {low} <= {option} <= {high} ({why})")
        return value

    parse.__name__ = option  # what argparse calls the type in its own messages
    return parse


seed_option = _bounded_int("seed", 0, SEED_MAX, "the seeds numpy and torch accept")
threads_option = _bounded_int("threads", 1, THREADS_MAX, "CPU threads (torch, BLAS) or processes")


def load_params(path: str | Path = DEFAULT_PARAMS, overrides=()) -> Params:
    path = Path(path)
    raw = read_params_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (datasets, data, study, model, train)")
    params = apply_overrides(raw, overrides)
    validate(params, str(path))
    return Params(params, path.resolve(), tuple(overrides))


def effective_config(params: Params, dataset: str, variant: str, seed: int, configuration: str | None = None) -> dict:
    """What one run is: its dataset, configuration, variant, seed and the model: and train: values it
    trains with (Params.run_config); hashed into the run's metrics.json and the workflow's job
    parameters."""
    configuration = configuration or params.data["configuration"]
    model, train = params.run_config(dataset, configuration)
    run = {"dataset": dataset, "configuration": configuration, "variant": variant, "seed": seed, "model": model,
           "train": train}
    if train["distill"] or model["linear_head"]:  # their regressions take C from the baselines' grid (maln/teacher.py)
        run["teacher_C"] = list(params.data["baselines"]["logreg_C"])
    return run
