"""params.yaml: loading, `--set` overrides, schema validation (the one schema, in
workflow/schemas/), the checks a schema cannot express, and the effective configuration of a run."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from maln.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = "params.yaml"


@functools.cache
def schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise ConfigError(
            f"schema not found at {SCHEMA_PATH}; install maln from a clone of the repository "
            "with `pip install -e .` so the package can see workflow/schemas/"
        )
    return yaml.safe_load(SCHEMA_PATH.read_text())


def parse_override(text: str) -> tuple[list[str], object]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY.SUB=VALUE, e.g. --set train.epochs=3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({e.problem})") from None
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
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out += diff_overrides(base[k], v, key + ".")
        elif base.get(k, object()) != v:
            out.append(f"{key}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
    return out


def _format_error(err) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f"{where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
    if err.validator == "oneOf":
        # the schema's only oneOf: where a raw file comes from
        return f"{where}: give either url + sha1 (a pinned download) or path (a file you place), not both"
    if err.validator in ("anyOf", "allOf") and err.context:
        from jsonschema.exceptions import best_match

        inner = best_match(err.context)
        if inner.validator not in ("not",):
            return _format_error(inner)
    if err.validator == "not":
        return f"{where}: this combination of keys is not allowed here (see the comments in params.yaml)"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    return f"{where}: {err.message}"


def validate_schema(params: dict, source: str = DEFAULT_PARAMS) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_format_error(e) for e in errors[:12]]
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(dict.fromkeys(lines)))


def check_references(params: dict, source: str = DEFAULT_PARAMS) -> None:
    """What the schema cannot say: names that must exist, values that must fit together."""
    unknown = [d for d in params["study"]["datasets"] if d not in params["datasets"]]
    if unknown:
        raise ConfigError(
            f"{source}: study.datasets: unknown dataset {', '.join(map(repr, unknown))}; "
            f"the registry has {', '.join(params['datasets'])}"
        )
    from maln.model.config import ModelConfig

    for name, entry in params["datasets"].items():
        model = deep_merge(params["model"], entry.get("overrides", {}).get("model", {}))
        try:
            ModelConfig.from_dict(model)
        except ConfigError as e:
            raise ConfigError(f"{source}: datasets.{name}: {e}") from None


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

    def run_config(self, dataset: str) -> tuple[dict, dict]:
        """(model, train) sections for `dataset`: global values, then the dataset's overrides, then
        the command line's --set (so `--set train.epochs=3` means 3 epochs, whatever the dataset)."""
        overrides = self.dataset(dataset).get("overrides", {})
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


def load_params(path: str | Path = DEFAULT_PARAMS, overrides=()) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such parameter file (run from the project root or pass --params PATH)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (datasets, data, study, model, train)")
    params = apply_overrides(raw, overrides)
    validate(params, str(path))
    return Params(params, path.resolve(), tuple(overrides))
