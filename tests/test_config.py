import re
import time

import pytest
import yaml

from builders import REPO, nested_aliases, write_params
from maln.config import diff_overrides, effective_config, load_params, read_yaml
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
        ("study.rows={nope: [full]}", "study.rows: unknown dataset 'nope'"),
        ("study.rows={synthetic-meld: [full, paper/everything]}", "study.rows.synthetic-meld: 'paper/everything' is not a row"),
        ("study.rows={synthetic-meld: [papers/full]}", "study.rows.synthetic-meld: 'papers/full' is not a row"),
        ("study.rows={synthetic-meld: []}", "study.rows.synthetic-meld: [] should be non-empty"),
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
    assert model["width"] == shipped["budgets"]["synthetic"]["model"]["width"]  # its budget
    assert train["weight_decay"] == shipped["train"]["weight_decay"]
    assert train["batch_dialogues"] == shipped["budgets"]["synthetic"]["train"]["batch_dialogues"] == 8
    # the entry's own overrides win over its budget: synthetic-meld's batch of 32
    assert params.run_config("synthetic-meld")[1]["batch_dialogues"] == 32
    assert params.run_config("synthetic-meld")[1]["epochs"] == shipped["budgets"]["synthetic"]["train"]["epochs"]
    model, _ = params.run_config("iemocap")
    assert model == shipped["model"]


def test_one_key_selects_the_papers_configuration_above_the_budget_and_below_the_entry():
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    paper = shipped["configurations"]["paper"]
    recommended = load_params(REPO / "params.yaml")
    chosen = load_params(REPO / "params.yaml", ["configuration=paper"])
    model, train = chosen.run_config("synthetic-meld")
    for key, value in paper["model"].items():
        assert model[key] == (value if not isinstance(value, dict) else {**model[key], **value}), key
    assert train["grad_clip"] == paper["train"]["grad_clip"] == 0
    # the budget's input L2 is this project's; the paper's configuration sets it back to none (authors': 3e-5 everywhere)
    assert recommended.run_config("synthetic-meld")[1]["input_weight_decay"] == 1e-2
    assert train["input_weight_decay"] is None and train["branch_weight_decay"] == train["weight_decay"] == 3e-5
    # so is the budget's label smoothing (the authors train on the plain labels)
    assert recommended.run_config("synthetic-meld")[1]["label_smoothing"] == 0.1 and train["label_smoothing"] == 0
    # the budget's sizes stay; the configuration's dropout wins over the budget's; the entry's batch wins
    assert model["width"] == shipped["budgets"]["synthetic"]["model"]["width"]
    assert model["context"]["dropout"] == 0.5 != shipped["budgets"]["synthetic"]["model"]["context"]["dropout"]
    assert train["batch_dialogues"] == 32
    # the same by name, whatever `configuration:` says; and the recommended one is the model: section as it stands
    assert recommended.run_config("synthetic-meld", "paper") == (model, train)
    assert recommended.run_config("iemocap")[0] == shipped["model"]
    # on an entry without a budget the paper's configuration trains at the authors' rate (its defaults:)
    assert chosen.run_config("iemocap")[1]["lr"] == paper["defaults"]["train"]["lr"] == 4e-4 != shipped["train"]["lr"]
    assert effective_config(chosen, "synthetic-meld", "full", 0)["configuration"] == "paper"
    with pytest.raises(ConfigError, match="configuration: unknown configuration 'papers'"):
        load_params(REPO / "params.yaml", ["configuration=papers"])
    with pytest.raises(ConfigError, match="study.configurations: unknown configuration 'nope'"):
        load_params(REPO / "params.yaml", ["study.configurations=[recommended, nope]"])


def test_a_configurations_defaults_sit_under_the_budget():
    """`defaults:` of a configuration: what it uses where a dataset's budget says nothing (the paper's
    optimisation on real data), while a budget's value (the synthetic study's rate) still wins."""
    sets = ["configurations.paper.defaults={train: {lr: 1.0e-4, epochs: 9}, model: {width: 20}}",
            "configurations.paper.train.grad_clip=0.5"]
    params = load_params(REPO / "params.yaml", sets)
    budget = params.data["budgets"]["synthetic"]
    model, train = params.run_config("iemocap", "paper")  # no budget: the defaults
    assert (train["lr"], train["epochs"], model["width"], train["grad_clip"]) == (1e-4, 9, 20, 0.5)
    model, train = params.run_config("synthetic-iemocap", "paper")  # the budget's values win over them
    assert (train["lr"], train["epochs"], model["width"]) == (
        budget["train"]["lr"], budget["train"]["epochs"], budget["model"]["width"])
    assert train["grad_clip"] == 0.5  # the configuration's own values still win over the budget
    assert params.run_config("iemocap", "recommended")[1]["lr"] == params.data["train"]["lr"]  # not another's
    with pytest.raises(ConfigError, match="defaults: unknown key 'epochs'"):
        load_params(REPO / "params.yaml", ["configurations.paper.defaults={epochs: 9}"])


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
def test_alias_bombs_are_refused_before_anything_expands_them(tmp_path, source):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"the alias \*a3 expands the parameters beyond 10000 values"):
        if source == "file":
            write_params(tmp_path)
            (tmp_path / "params.yaml").write_text(nested_aliases() + "\n" + (tmp_path / "params.yaml").read_text())
            load_params(tmp_path / "params.yaml")
        else:
            load_params(REPO / "params.yaml", ["study.x={" + nested_aliases().replace("\n", ", ") + "}"])
    assert time.perf_counter() - start < 1


def test_an_anchor_that_nothing_refers_to_is_plain_yaml():
    assert read_yaml("train: &t {epochs: 3}", "x") == {"train": {"epochs": 3}}


def test_a_params_file_that_safe_dump_wrote_with_aliases_loads(tmp_path):
    """PyYAML's own safe_dump writes an anchor and aliases wherever one object is repeated (a script
    that builds two dataset entries from one dict); such a file expands to a few lines and loads,
    and the repeated values are independent afterwards (a --set of one leaves the other alone)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    shared = {"model": {"width": 32}, "train": {"epochs": 3}}
    for name in ("synthetic-iemocap", "synthetic-meld"):
        params["datasets"][name]["overrides"] = shared
    text = yaml.safe_dump(params, sort_keys=False)
    assert "&id001" in text and "*id001" in text
    (tmp_path / "params.yaml").write_text(text)
    loaded = load_params(tmp_path / "params.yaml", ["datasets.synthetic-meld.overrides.train.epochs=5"])
    assert loaded.run_config("synthetic-iemocap")[1]["epochs"] == 3
    assert loaded.run_config("synthetic-meld")[1]["epochs"] == 5
    assert loaded.data["datasets"]["synthetic-iemocap"]["overrides"] == shared


@pytest.mark.parametrize("text, message", [
    ("x: &x [1, *x]", "the alias *x lies inside the value it names (a cycle)"),
    ("base: &b {epochs: 2}\nmore:\n  <<: *b", "line 3, column 3: a merge key `<<`"),
    ("more:\n  <<: {epochs: 2}", "a merge key `<<`"),
    ("x: &x " + "[" * 20 + "1" + "]" * 20 + "\ny: " + "[" * 20 + "*x" + "]" * 20, "nests the parameters more than 32 levels"),
    ("x: &x [" + ", ".join(["1"] * 4000) + "]\ny: [*x, *x]", "the alias *x expands the parameters beyond 10000 values"),
    ("x: 0x" + "f" * 5000, "an integer of more than 100 digits"),
    ("x: " + "9" * 5000, "an integer of more than 100 digits"),
])
def test_yaml_that_would_expand_or_change_keys_is_refused_fast(text, message):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        read_yaml(text, "p.yaml")
    assert message in str(e.value) and str(e.value).startswith("p.yaml: ")
    assert time.perf_counter() - start < 1


def test_repeated_small_aliases_within_the_bound_load():
    text = "a: &a {k: [1, 2, 3]}\n" + "\n".join(f"b{i}: *a" for i in range(100))
    data = read_yaml(text, "x")
    assert len(data) == 101 and all(v == {"k": [1, 2, 3]} for v in data.values())
    assert len({id(v) for v in data.values()}) == 101  # independent copies, not one shared object


@pytest.mark.parametrize("override, message", [
    ("train.lr=.nan", "train.lr: nan is not a finite number (allowed: a number, 0 < value <= 10)"),
    ("train.lr=-.inf", "train.lr: -inf is not a finite number"),
    ("train.grad_clip=.inf", "train.grad_clip: inf is not a finite number (allowed: a number, 0 <= value <= 1000000.0)"),
    ("model.dropout=.nan", "model.dropout: nan is not a finite number (allowed: a number, 0 <= value <= 0.95)"),
    ("study.seeds=[10000000000000000000000]", "study.seeds.0: 10000000000000000000000 is greater than the maximum of "
                                              "4294967295 (allowed: an integer, 0 <= value <= 4294967295)"),
    ("report.seed=4294967296", "report.seed: 4294967296 is greater than the maximum of 4294967295"),
    ("datasets.synthetic-meld.synthetic.seed=-1", "datasets.synthetic-meld.synthetic.seed: -1 is less than the minimum of 0"),
    ("datasets.synthetic-meld.overrides.train.lr=.nan", "datasets.synthetic-meld.overrides.train.lr: nan is not a finite"),
    ("train.epochs=1.0e+300", "train.epochs: 1e+300 is not of type 'integer'"),
    ("train.batch_dialogues=8.0", "train.batch_dialogues: 8.0 is not of type 'integer'"),
    ("model.width=" + "9" * 99, "model.width: a 99-digit number is greater than the maximum of 65536"),
    ("baselines.logreg_C=[.nan]", "baselines.logreg_C.0: nan is not a finite number"),
    ("sweep={train.lr: [.inf]}", "sweep.train.lr.0: inf is not a finite number"),
    ("sweep={train.lr: [1000.0]}", "sweep: train.lr=1000.0: train.lr: 1000.0 is greater than the maximum of 10"),
    ("study.seeds=[1, 1.0]", "study.seeds: 1.0 appears more than once"),
])
def test_numbers_outside_their_finite_range_name_the_key_and_the_range(override, message):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        load_params(REPO / "params.yaml", [override])
    assert message in str(e.value)
    assert time.perf_counter() - start < 2


def _numeric_schemas(node, path=""):
    """(path, schema) of every number or integer the params schema declares."""
    if isinstance(node, dict):
        types = node.get("type")
        if types in ("number", "integer"):
            yield path, node
        for k, v in node.items():
            yield from _numeric_schemas(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numeric_schemas(v, f"{path}[{i}]")


def test_every_number_in_the_schema_states_a_finite_range():
    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    found = list(_numeric_schemas(schema))
    assert len(found) > 40
    for path, s in found:
        assert {"minimum", "exclusiveMinimum"} & set(s) and {"maximum", "exclusiveMaximum"} & set(s), path


def test_seeds_in_the_schema_and_on_the_command_line_have_one_range():
    from maln.config import SEED_MAX, seed_option

    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.yaml").read_text())
    assert schema["$defs"]["seed"]["maximum"] == SEED_MAX == 2**32 - 1
    assert seed_option(str(SEED_MAX)) == SEED_MAX
    for bad in (str(SEED_MAX + 1), "-1", str(10**22), "9" * 5000, "x", "1e3"):
        with pytest.raises(Exception, match="outside 0 <= seed <= 4294967295|is not an integer"):
            seed_option(bad)


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
    assert len(offenders) == 1 and offenders[0].startswith("maln/yaml_reader.py:"), offenders
    assert offenders[0].endswith("return _tree(yaml.load(text, Loader=_ParamsLoader))"), offenders


def test_study_rows_narrow_a_dataset_to_the_rows_it_names():
    from maln.study import cells, runs

    params = load_params(REPO / "params.yaml", [
        "study.datasets=[synthetic-iemocap, synthetic-meld]", "study.seeds=[0]",
        "study.rows={synthetic-meld: [recommended/full, text_only, paper/full, paper/visual_only]}"]).data
    rows = {d: [c.variant for c in cells(params) if c.dataset == d] for d in params["study"]["datasets"]}
    assert len(rows["synthetic-iemocap"]) == len(params["study"]["configurations"]) * len(params["study"]["variants"])
    assert rows["synthetic-meld"] == ["full", "text_only", "paper/full", "paper/visual_only"]  # in the study's order
    assert [c.applicable for c in cells(params) if c.dataset == "synthetic-meld"] == [True, True, True, False]
    assert [v for d, v, _ in runs(params) if d == "synthetic-meld"] == ["full", "text_only", "paper/full"]


def test_study_rows_that_leave_a_dataset_nothing_to_train_are_refused_and_null_means_every_row():
    from maln.study import cells, dataset_labels

    narrow = load_params(REPO / "params.yaml", ["study.configurations=[recommended]",
                                                "study.rows={synthetic-meld: [paper/full]}"]).data
    with pytest.raises(ConfigError, match="study.rows.synthetic-meld: none of its rows .* would train nothing"):
        cells(narrow)
    params = load_params(REPO / "params.yaml", ["study.rows={synthetic-meld: null}"]).data
    assert len(dataset_labels(params, "synthetic-meld")) == len(params["study"]["configurations"]) * len(params["study"]["variants"])


def test_a_runs_identity_holds_the_teachers_grid_when_it_has_teachers():
    """train.distill reads baselines.logreg_C (maln/teacher.py): a run with teachers changes when that
    grid does (its config hash reruns the job); one without does not."""
    shipped = REPO / "params.yaml"
    taught = effective_config(load_params(shipped), "synthetic-meld", "full", 0)
    assert taught["train"]["distill"] == 1.0 and taught["teacher_C"] == load_params(shipped).data["baselines"]["logreg_C"]
    other = effective_config(load_params(shipped, ["baselines.logreg_C=[0.1, 1.0]"]), "synthetic-meld", "full", 0)
    assert other["teacher_C"] == [0.1, 1.0]
    assert "teacher_C" not in effective_config(load_params(shipped), "synthetic-meld", "full", 0, "paper")
