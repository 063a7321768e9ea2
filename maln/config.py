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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = "params.yaml"


# Parameters nest a few levels; far deeper input is refused before yaml's recursive reader (and
# the validation, copying and hashing after it) runs out of stack.
MAX_DEPTH = 32


class _Refused(yaml.YAMLError):
    """Valid YAML that parameters may not use."""

    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _ParamsLoader(yaml.SafeLoader):
    """yaml's safe loader without aliases. An alias makes two places one object, so a `--set` of
    one would silently change the other; and a few lines of nested aliases denote more values than
    memory holds, which validation, messages and hashing would then expand (the command hangs)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"the alias *{event.anchor}: aliases (and merge keys `<<: *name`) are not allowed in "
                           "parameters; write the values out", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(text: str | bytes, source: str):
    """The one reader of parameters (params files, `--set` values, the schema): UTF-8 YAML without
    aliases, any problem a ConfigError that names `source`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{source}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                              "save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_ParamsLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = "" if isinstance(e, _Refused) else "not valid YAML: "
        raise ConfigError(f"{source}: {where}{what}{getattr(e, 'problem', None) or e}") from None


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
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY.SUB=VALUE, e.g. --set train.epochs=3")
    parsed = read_yaml(value, f"--set {text!r}") if value.strip() else ""
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
    check_sweep(params, source)


SWEEPABLE = ("model", "train", "datasets")  # what one training job's --set may change


def check_sweep(params: dict, source: str = DEFAULT_PARAMS) -> None:
    """Every swept key must be a key a training job reads, and every value valid there: each
    value is applied as its job's --set would be and the result validated, so a typo stops the
    workflow before any job starts."""
    from maln.study import sweep_value

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
    raw = read_params_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (datasets, data, study, model, train)")
    params = apply_overrides(raw, overrides)
    validate(params, str(path))
    return Params(params, path.resolve(), tuple(overrides))
