import re
import time

import pytest
import yaml

from builders import REPO, nested_aliases, write_params
from maln.config import diff_overrides, load_params, read_yaml
from maln.data.layouts import LAYOUTS
from maln.errors import ConfigError


def test_shipped_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert set(params.data["study"]["datasets"]) <= set(params.data["datasets"])


def test_schema_layout_enum_is_the_layout_registry():
    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    assert schema["$defs"]["layout"]["enum"] == list(LAYOUTS)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=-1", "train.epochs: -1 is less than the minimum of 1"),
        ("train.epochs=three", "train.epochs: 'three' is not of type 'integer'"),
        ("train.foo=1", "train: unknown key 'foo'"),
        ("study.variants=[full, everything]", "study.variants.1: 'everything' is not one of"),
        ("study.datasets=[nope]", "study.datasets: unknown dataset 'nope'"),
        ("datasets.iemocap.url=ftp://example.org/x.pkl", "datasets.iemocap.url: 'ftp://example.org/x.pkl' does not match"),
        ("datasets.meld.path=x.pkl", "datasets.meld: give either url + sha1"),
        ("datasets.iemocap.sha1=abc", "datasets.iemocap.sha1: 'abc' does not match"),
        ("model.width=50", "model.attention_heads: 4 does not divide model.width 50"),
        ("datasets.synthetic-meld.overrides.train.lr=0", "datasets.synthetic-meld.overrides.train.lr: 0 is less than or equal"),
    ],
)
def test_invalid_params_name_the_key_and_the_problem(override, message):
    with pytest.raises(ConfigError) as e:
        load_params(REPO / "params.yaml", [override])
    assert message in str(e.value)


def test_set_override_is_parsed_as_yaml():
    params = load_params(REPO / "params.yaml", ["train.epochs=3", "study.seeds=[4, 5]", "train.class_weights=true"])
    assert params.data["train"]["epochs"] == 3
    assert params.data["study"]["seeds"] == [4, 5]
    assert params.data["train"]["class_weights"] is True


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "train..epochs=3", "study.seeds.x=1"])
def test_malformed_set_is_refused(bad):
    with pytest.raises(ConfigError):
        load_params(REPO / "params.yaml", [bad])


def test_dataset_overrides_replace_only_what_they_name(tmp_path):
    params = load_params(REPO / "params.yaml")
    model, train = params.run_config("synthetic-iemocap")
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    assert model["width"] == shipped["datasets"]["synthetic-iemocap"]["overrides"]["model"]["width"]
    assert train["weight_decay"] == shipped["train"]["weight_decay"]
    model, _ = params.run_config("iemocap")
    assert model == shipped["model"]


def test_paths_outside_the_project_are_refused_unless_allowed(tmp_path):
    entry = {"layout": "conv-emotion-iemocap", "path": "../elsewhere/IEMOCAP_features.pkl"}
    params = load_params(write_params(tmp_path / "p", {"mine": entry}))
    with pytest.raises(ConfigError, match="outside the project"):
        params.resolve(entry["path"], "datasets.mine.path")
    params = load_params(write_params(tmp_path / "q", {"mine": entry}, data={"allow_paths_outside_project": True}))
    assert params.resolve(entry["path"], "datasets.mine.path") == (tmp_path / "elsewhere/IEMOCAP_features.pkl").resolve()


def test_diff_overrides_round_trip():
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    changed = yaml.safe_load((REPO / "params.yaml").read_text())
    changed["train"]["epochs"] = 7
    changed["study"]["seeds"] = [1, 2]
    sets = diff_overrides(base, changed)
    assert sorted(sets) == ["study.seeds=[1, 2]", "train.epochs=7"]
    assert load_params(REPO / "params.yaml", sets).data == changed


def test_command_line_set_wins_over_dataset_overrides():
    params = load_params(REPO / "params.yaml", ["train.epochs=3", "model.width=32"])
    model, train = params.run_config("synthetic-iemocap")
    assert train["epochs"] == 3 and model["width"] == 32


@pytest.mark.parametrize("source", ["file", "--set"])
def test_aliases_are_refused_before_anything_expands_them(tmp_path, source):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"the alias \*a0: aliases .* are not allowed in parameters"):
        if source == "file":
            write_params(tmp_path)
            (tmp_path / "params.yaml").write_text(nested_aliases() + "\n" + (tmp_path / "params.yaml").read_text())
            load_params(tmp_path / "params.yaml")
        else:
            load_params(REPO / "params.yaml", ["study.x={" + nested_aliases().replace("\n", ", ") + "}"])
    assert time.perf_counter() - start < 1


def test_an_anchor_that_nothing_refers_to_is_plain_yaml():
    assert read_yaml("train: &t {epochs: 3}", "x") == {"train": {"epochs": 3}}


def test_every_reading_of_parameters_goes_through_the_one_yaml_reader():
    """Outside read_yaml, nothing in maln/ or workflow/ parses YAML (params files, --set and
    --config values, the schema): so aliases, encodings and depth are checked everywhere. (The
    Snakefile's `configfile:` is Snakemake's own reading; common.smk reads params.yaml again through
    read_params_file before anything uses the configuration.)"""
    offenders = []
    for path in [*(REPO / "maln").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"), REPO / "Snakefile"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"yaml\.(safe_)?load\b|yaml\.load_all|yaml\.full_load", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert len(offenders) == 1 and offenders[0].startswith("maln/config.py:"), offenders
    assert offenders[0].endswith("return yaml.load(text, Loader=_ParamsLoader)"), offenders
