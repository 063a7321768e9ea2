"""The command line: options before and after the command mean the same (issue 16, point 1)."""

import json

import pytest
import yaml

from conftest import run_maln
from maln.cli import build_parser, merge_common
from maln.errors import ConfigError


def parse(*argv):
    return merge_common(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("argv", [
    ["--set", "train.epochs=2", "--params", "other.yaml", "--debug", "prepare", "d"],
    ["prepare", "d", "--set", "train.epochs=2", "--params", "other.yaml", "--debug"],
    ["--params", "other.yaml", "prepare", "--set", "train.epochs=2", "--debug", "d"],
])
def test_common_options_are_honoured_before_and_after_the_command(argv):
    args = parse(*argv)
    assert (args.params, args.set, args.debug) == ("other.yaml", ["train.epochs=2"], True)


def test_every_set_counts_and_those_after_the_command_come_last():
    args = parse("--set", "a.b=1", "--set", "a.c=2", "prepare", "d", "--set", "a.b=3")
    assert args.set == ["a.b=1", "a.c=2", "a.b=3"]


def test_defaults_when_no_option_is_given():
    args = parse("prepare", "d")
    assert (args.params, args.set, args.debug) == ("params.yaml", [], False)


def test_two_different_params_files_are_refused():
    with pytest.raises(ConfigError, match="--params given twice"):
        parse("--params", "a.yaml", "prepare", "d", "--params", "b.yaml")
    assert parse("--params", "a.yaml", "prepare", "d", "--params", "a.yaml").params == "a.yaml"


@pytest.mark.parametrize("argv, option", [
    (["train", "--dataset", "a", "--variant", "full", "--seed", "0", "--seed", "1"], "--seed"),
    (["train", "--dataset", "a", "--dataset", "b", "--variant", "full", "--seed", "0"], "--dataset"),
    (["prepare", "d", "--params", "a.yaml", "--params", "b.yaml"], "--params"),
    (["--params", "a.yaml", "--params", "b.yaml", "prepare", "d"], "--params"),
])
def test_an_option_given_twice_with_different_values_is_refused_not_overwritten(argv, option, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2 and f"error: {option} given twice" in capsys.readouterr().err
    assert parse("prepare", "d", "--params", "a.yaml", "--params", "a.yaml").params == "a.yaml"


@pytest.mark.parametrize("argv", [
    ["--set", "train.epochs=2", "evaluate", "--checkpoint", "m.pt"],
    ["evaluate", "--checkpoint", "m.pt", "--params", "other.yaml"],
    ["predict", "--checkpoint", "m.pt", "--input", "x.pkl", "--set", "train.epochs=2"],
])
def test_commands_configured_by_their_checkpoint_refuse_params_and_set(argv):
    with pytest.raises(ConfigError, match="reads no parameters"):
        parse(*argv)
    assert "--set" not in build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()


def test_an_empty_params_path_is_refused_not_taken_for_the_default():
    with pytest.raises(ConfigError, match="--params: the path is empty"):
        parse("--params=", "prepare", "d")


def test_help_shows_the_options_before_the_command_and_says_they_may_follow():
    text = build_parser().format_help()
    assert "maln [-h] [--params PATH] [--set KEY=VALUE] [--debug] COMMAND" in text
    assert "may also follow the command" in text


def test_params_and_set_before_or_after_the_command_train_the_same_run(synthetic_project, tmp_path):
    params = yaml.safe_load((synthetic_project / "params.yaml").read_text())
    params["datasets"]["synthetic-meld"].setdefault("overrides", {}).setdefault("train", {})["lr"] = 0.5e-3
    other = synthetic_project / "other-params.yaml"  # beside params.yaml: paths resolve from its folder
    other.write_text(yaml.safe_dump(params))
    common = ["--dataset", "synthetic-meld", "--variant", "text_only", "--seed", "0", "--threads", "1"]
    options = ["--params", other.name, "--set", "train.epochs=2"]
    try:
        run_maln(*options, "train", *common, "--out", tmp_path / "before", cwd=synthetic_project, check=True)
        run_maln("train", *common, *options, "--out", tmp_path / "after", cwd=synthetic_project, check=True)
    finally:
        other.unlink()
    before, after = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("before", "after"))
    assert before["epochs_run"] == 2 and before["config"]["train"]["epochs"] == 2
    assert before["config"]["train"]["lr"] == 0.5e-3
    assert before == after
