"""The `maln` command. Every subcommand that reads parameters takes --params PATH and --set KEY=VALUE,
so any job the workflow runs can be rerun by hand with the command shown in its log."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from maln.errors import ConfigError, MalnError


def _params(args):
    from maln.config import load_params

    return load_params(args.params, args.set or ())


def cmd_fetch(args) -> int:
    from maln.data.fetch import fetch

    params = _params(args)
    for name in args.datasets:
        fetch(params, name, progress=None)
    return 0


def cmd_synth(args) -> int:
    from maln.data import layouts, synthetic
    from maln.data.fetch import raw_files

    params = _params(args)
    registry = params.data["datasets"]
    names = args.datasets or [d for d in params.data["study"]["datasets"] if layouts.get(registry[d]["layout"]).synthetic]
    if not names:
        print("maln synth: the study has no synthetic dataset; name one (e.g. maln synth synthetic-iemocap)", file=sys.stderr)
        return 0
    for name in names:
        entry = params.dataset(name)
        if not layouts.get(entry["layout"]).synthetic:
            raise MalnError(f"{name} is not synthetic (layout {entry['layout']}); use `maln fetch {name}`")
        path = raw_files(params, name)[0].path
        synthetic.write(path, entry["layout"], entry["synthetic"])
        also = ""
        if synthetic.has_oracle(entry["synthetic"]):
            from maln.data.oracle import oracle_path

            also = f" and its exact Bayes oracle {oracle_path(path).relative_to(params.root)}"
        print(f"{name}: wrote {path.relative_to(params.root)}{also}", file=sys.stderr)
    return 0


def cmd_prepare(args) -> int:
    from maln.data.prepare import prepare

    params = _params(args)
    for name in args.datasets:
        meta = prepare(params, name)
        splits = ", ".join(f"{s} {n}" for s, n in meta["splits"].items())
        dims = ", ".join(f"{m} {d}" for m, d in meta["modalities"].items())
        print(f"{name}: {meta['n_dialogues']} dialogues ({splits}), {meta['n_utterances']} utterances, "
              f"{len(meta['class_names'])} classes, up to {meta['n_parties']} parties, dims {dims} "
              f"-> data/features/{name}/ (store {meta['store_hash'][:12]})", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    params = _params(args)  # first: a bad parameter is refused before torch's import (2-3 s)
    from maln.train import train

    train(params, args.dataset, args.variant, args.seed, args.out, args.threads, args.force)
    return 0


def cmd_baseline(args) -> int:
    from maln.baselines import run_baselines
    from maln.data.prepare import store_dir
    from maln.data.store import load_store
    from maln.study import baseline_path

    params = _params(args)
    for name in args.datasets:
        params.dataset(name)
        store = load_store(store_dir(params, name))
        grids = params.data["baselines"]
        run_baselines(store, name, grids["logreg_C"], params.root / baseline_path(name), grids["mlp_alpha"])
    return 0


def cmd_evaluate(args) -> int:
    import json

    from maln.evaluate import evaluate_checkpoint

    result, stored, note = evaluate_checkpoint(args.checkpoint, args.store)
    keys = ("accuracy", "weighted_f1", "macro_f1", "waa")
    print(json.dumps({k: result[k] for k in keys} | {"per_class": result["per_class"]}, indent=2))
    if stored is None:
        return 0
    if stored == result:
        print(f"equal to {Path(args.checkpoint).with_name('metrics.json')} (test split)", file=sys.stderr)
        return 0
    diff = {k: (stored.get(k), result.get(k)) for k in keys if stored.get(k) != result.get(k)}
    raise MalnError(f"test metrics differ from {Path(args.checkpoint).with_name('metrics.json')}: {diff or 'per-class values'}"
                    + (f" ({note})" if note else ""))


def cmd_predict(args) -> int:
    from maln.evaluate import predict_file

    out = predict_file(args.checkpoint, args.input, args.layout, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_aggregate(args) -> int:
    from maln.report.aggregate import aggregate

    params = _params(args)
    metrics = aggregate(params, args.readme, args.threads)
    n = sum(len(v) for v in metrics.values())
    print(f"aggregated {n} dataset x variant cells -> results/metrics.json, results/tables/, results/figures/"
          + (f", {args.readme}" if args.readme else ""), file=sys.stderr)
    return 0


class _Once(argparse.Action):
    """argparse's plain `store`, except that an option given again with another value is refused
    where argparse would keep the last silently (`--seed 0 --seed 1` would train seed 1 only)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault(GIVEN, {})
        if self.dest in given and given[self.dest] != values:
            parser.error(f"{option_string} given twice ({given[self.dest]!r} and {values!r}); give it once"
                         + (", with every value after it" if self.nargs == "+" else ""))
        given[self.dest] = values
        setattr(namespace, self.dest, values)


class _Parser(argparse.ArgumentParser):
    """Every plain option of every command is a `_Once`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)


# The options every command takes. They may stand before the command (`maln --set K=V train ...`)
# or after it (`maln train --set K=V ...`), and both mean the same. argparse would let the
# subcommand's defaults overwrite what was given before it, so the two positions are parsed into
# separate names and merged once, in `merge_common` (the one place options are resolved).
def _add_common(parser, prefix: str, shown: bool = True) -> None:
    def help_(text):
        return text if shown else argparse.SUPPRESS

    parser.add_argument("--params", dest=f"{prefix}params", default=None, metavar="PATH",
                        help=help_("parameter file (default: ./params.yaml)"))
    parser.add_argument("--set", dest=f"{prefix}set", action="append", default=[], metavar="KEY=VALUE",
                        help=help_("override one parameter, e.g. --set train.epochs=3 (repeatable; value read as YAML)"))
    parser.add_argument("--debug", dest=f"{prefix}debug", action="store_true",
                        help="show the traceback of expected errors too")


GLOBAL = "global_"
GIVEN = "_given_once"


def build_parser() -> argparse.ArgumentParser:
    from maln.config import seed_option, threads_option  # integers within what numpy and torch take

    common = _Parser(add_help=False)
    _add_common(common, "")
    # evaluate and predict take their configuration from the checkpoint: they accept --params and
    # --set only to refuse them (in merge_common), never to ignore them
    from_checkpoint = _Parser(add_help=False)
    _add_common(from_checkpoint, "", shown=False)

    parser = _Parser(prog="maln", description=__doc__.split("\n\n")[0],
                     epilog="--params, --set and --debug may also follow the command.")
    _add_common(parser, GLOBAL)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch", parents=[common], help="download a dataset's raw files and verify their hashes")
    p.add_argument("datasets", nargs="+", metavar="DATASET")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("synth", parents=[common], help="write the synthetic datasets' raw files (the embedded default)")
    p.add_argument("datasets", nargs="*", metavar="DATASET", help="default: the study's synthetic datasets")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", parents=[common], help="validate raw files and write the canonical store")
    p.add_argument("datasets", nargs="+", metavar="DATASET")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", parents=[common], help="train one dataset x variant for one or more seeds")
    p.add_argument("--dataset", required=True)
    p.add_argument("--variant", required=True, help="full | no_sclm | no_adversary | text_only | audio_only | visual_only")
    p.add_argument("--seed", type=seed_option, nargs="+", required=True, metavar="S",
                   help="one seed, or several trained one after another in this process")
    p.add_argument("--out", type=Path, help="run folder (default results/runs/DATASET/VARIANT/seedS, or "
                   ".../DATASET/paper/VARIANT/seedS under configuration: paper; with several seeds, OUT/seedS)")
    p.add_argument("--threads", type=threads_option, help="CPU threads for torch and for numpy's BLAS (default: their choice)")
    p.add_argument("--force", action="store_true", help="retrain even if the run folder holds a finished run of this configuration")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("baseline", parents=[common],
                       help="majority class and logistic regressions on a prepared dataset (results/baselines/)")
    p.add_argument("datasets", nargs="+", metavar="DATASET")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("evaluate", parents=[from_checkpoint], help="recompute a checkpoint's test metrics from the store")
    p.add_argument("--checkpoint", required=True, type=Path, help="a run's model.pt")
    p.add_argument("--store", type=Path, help="store folder (default data/features/DATASET)")
    p.set_defaults(func=cmd_evaluate, reads_params=False)

    p = sub.add_parser("predict", parents=[from_checkpoint], help="label the dialogues of a feature file with a trained model")
    p.add_argument("--checkpoint", required=True, type=Path, help="a run's model.pt")
    p.add_argument("--input", required=True, type=Path, help="a feature file of a supported layout")
    p.add_argument("--layout", help="the input's layout (default: that of the model's training data)")
    p.add_argument("--output", type=Path, help="CSV to write (default: predictions-INPUT.csv beside the input)")
    p.set_defaults(func=cmd_predict, reads_params=False)

    p = sub.add_parser("aggregate", parents=[common], help="turn the study's runs into tables, figures and results/metrics.json")
    p.add_argument("--readme", type=Path, help="also refresh this README's generated results section")
    p.add_argument("--threads", type=threads_option, help="processes for the t-SNE layouts, one each (default: a CPU each)")
    p.set_defaults(func=cmd_aggregate)
    return parser


def merge_common(args: argparse.Namespace) -> argparse.Namespace:
    """Merge the options given before the command with those after it: every --set counts (those
    after the command last, so they win), --params may be given once, --debug in either place.
    Options that the command would not use are refused, never dropped."""
    before, after = getattr(args, f"{GLOBAL}params"), args.params
    args.set = getattr(args, f"{GLOBAL}set") + args.set
    args.debug = getattr(args, f"{GLOBAL}debug") or args.debug
    args.params = next((p for p in (after, before) if p is not None), "params.yaml")
    for name in ("params", "set", "debug"):
        delattr(args, GLOBAL + name)
    args.__dict__.pop(GIVEN, None)
    if before is not None and after is not None and before != after:
        raise ConfigError(f"--params given twice, {before!r} before the command and {after!r} after it; give it once")
    if not args.params.strip():
        raise ConfigError("--params: the path is empty")
    if not getattr(args, "reads_params", True) and (args.set or before is not None or after is not None):
        given = " ".join([f"--params {p}" for p in (before, after) if p is not None] + [f"--set {s}" for s in args.set])
        raise ConfigError(f"{given}: maln {args.command} reads no parameters (the model's configuration comes "
                          "from its checkpoint), so this would be ignored; leave it out")
    return args


def main(argv=None) -> int:
    from maln import io

    args = build_parser().parse_args(argv)
    try:
        return merge_common(args).func(args)
    except MalnError as e:
        if args.debug:
            traceback.print_exc()
        print(f"maln {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # a fault of the file system that no writer or reader put in words (a folder that cannot
        # be made, a file that cannot be read): still one line naming the path; others are bugs
        problem = io.problem(e)
        if problem is None or e.filename is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"maln {args.command}: error: {io.shown(e.filename)}: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"maln {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
