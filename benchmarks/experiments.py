"""Controlled experiments: named configurations (a variant plus `--set` overrides) trained over
several seeds on each of the experiment's datasets, side by side, printed as one table per dataset
(and written as Markdown, benchmarks/results/experiments-<file stem>-<dataset>.md).

    python benchmarks/experiments.py benchmarks/experiments/rootcause.yaml
    python benchmarks/experiments.py FILE --only baseline standardise --datasets synthetic-meld --jobs 2

FILE (YAML):
    datasets: [synthetic-iemocap, synthetic-meld]   # registry entries of params.yaml (prepared afresh)
    seeds: [0, 1, 2]
    sets: [train.epochs=20]             # optional, applied to every configuration first
    configs:
      full: {variant: full}
      text_only: {variant: text_only}
      no aux: {variant: full, set: [train.loss_weights.unimodal=0]}
      constant audio+visual: {variant: full, zero: [audio, visual]}   # those inputs replaced by zeros
      visual_only: {variant: visual_only, datasets: [synthetic-iemocap]}  # on these datasets only

Runs land in results/experiments/<file stem>/<dataset>/<config>/seed<k>/ (ignored by git) and are reused
when their configuration has not changed, so adding a configuration trains only that one (the
code is not part of that key: remove the folder after changing the model). Each
run is the real training loop (validation selection, test once), one CPU thread per job.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")


def _ensure_store(params, dataset: str) -> None:
    from maln.data import layouts, synthetic
    from maln.data.fetch import raw_files
    from maln.data.prepare import prepare

    # prepared afresh on every invocation (seconds), never reused: a store left from an earlier
    # params.yaml (another valid_fraction) once gave an experiment another split than the study's,
    # and a run's reuse key holds the store's hash, so runs on the stale split are trained again
    entry = params.dataset(dataset)
    if layouts.get(entry["layout"]).synthetic:
        synthetic.write(raw_files(params, dataset)[0].path, entry["layout"], entry["synthetic"])
    prepare(params, dataset)


def _train(job: tuple) -> dict:
    dataset, variant, sets, seed, out, zero = job
    import torch

    from maln.config import load_params
    from maln.inference import metrics_of, predict
    from maln.train import Run

    torch.set_num_threads(1)
    params = load_params(REPO / "params.yaml", sets)
    run = Run(params, dataset, variant, threads=1)
    for m in zero:  # a diagnostic: the modality is constant, so it carries nothing, not even noise
        run.data.features[m].zero_()
    metrics = run.train_seed(seed, Path(out), progress=False)
    history = [line.split(",") for line in (Path(out) / "history.csv").read_text().splitlines()]
    ce = history[0].index("ce")
    # Diagnostics of the selected model: how well it fits its training split (memorisation), and
    # its test score when every modality but text is replaced by zeros (what it owes to text alone).
    model = run.build_model(seed)
    model.load_state_dict(torch.load(Path(out) / "model.pt", weights_only=True)["model"])
    names, bs = run.store.class_names, run.train_cfg.batch_dialogues
    train_wf1 = metrics_of(predict(model, run.data, run.splits["train"], bs), names)["weighted_f1"]
    text_input = float("nan")
    if len(model.modalities) > 1 and "text" in model.modalities:
        for m in model.modalities:
            if m != "text":
                run.data.features[m] = torch.zeros_like(run.data.features[m])
        text_input = metrics_of(predict(model, run.data, run.splits["test"], bs), names)["weighted_f1"]
    probes = metrics.get("invariance", {})
    return {"valid": metrics["valid"]["weighted_f1"], "test": metrics["test"]["weighted_f1"],
            "probe_common": probes.get("common_modality_accuracy", float("nan")),
            "probe_specific": probes.get("specific_modality_accuracy", float("nan")),
            "probe_emotion": probes.get("common_emotion_accuracy", float("nan")),
            "train": train_wf1, "test_text_input": text_input,
            "best_epoch": metrics["best_epoch"], "final_train_ce": float(history[-1][ce]),
            "parameters": metrics["parameters"],
            "fusion_weight": metrics.get("combination", {}).get("fusion", float("nan")),
            "fusion_head_test": metrics.get("heads", {}).get("fusion", {}).get("test", {}).get("weighted_f1", float("nan"))}


def _fmt(values) -> str:
    v = 100 * np.asarray(values)
    if np.isnan(v).all():
        return "–"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--only", nargs="+", help="run these configurations only")
    ap.add_argument("--jobs", type=int, default=2, help="training processes at once (one CPU thread each)")
    ap.add_argument("--out", type=Path, help="Markdown table (default benchmarks/results/experiments-<stem>-<dataset>.md)")
    ap.add_argument("--datasets", nargs="+", help="run on these of the file's datasets only")
    args = ap.parse_args()
    spec = yaml.safe_load(args.file.read_text())
    datasets = [d for d in spec["datasets"] if not args.datasets or d in args.datasets]
    for dataset in datasets:
        configs = {k: v for k, v in spec["configs"].items()
                   if (not args.only or k in args.only) and dataset in v.get("datasets", spec["datasets"])}
        run_experiment(args, spec, dataset, configs)
    return 0


def run_experiment(args, spec: dict, dataset: str, configs: dict) -> None:
    """The file's configurations on one dataset: train what is missing, print and write the table."""
    from maln.config import load_params

    seeds, common = spec["seeds"], list(spec.get("sets", []))
    _ensure_store(load_params(REPO / "params.yaml", common), dataset)
    base = REPO / "results" / "experiments" / args.file.stem / dataset
    jobs = {(name, seed): (dataset, c.get("variant", "full"), common + list(c.get("set", [])), seed,
                           str(base / _slug(name) / f"seed{seed}"), tuple(c.get("zero", ())))
            for name, c in configs.items() for seed in seeds}
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(_train, jobs.values())))
    lines = [f"Controlled experiments on {dataset} ({args.file}), seeds {seeds}; weighted F1 (%), mean ± std "
             f"over seeds; validation-selected epoch. Common overrides: {common or 'none'}.", "",
             "| configuration | variant | overrides | valid WF1 | test WF1 | train WF1 (selected) | test WF1, text input only "
             "| best epoch | final train CE | modality probe, common | modality probe, specific | emotion probe, common "
             "| fusion head test WF1 | fusion weight | parameters |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    summary = {}
    for name, c in configs.items():
        rs = [results[(name, s)] for s in seeds]
        summary[name] = {k: [r[k] for r in rs] for k in rs[0]}
        changes = list(c.get("set", [])) + [f"{m} input zeroed" for m in c.get("zero", ())]
        lines.append(f"| {name} | {c.get('variant', 'full')} | {', '.join(changes) or '–'} | "
                     f"{_fmt([r['valid'] for r in rs])} | {_fmt([r['test'] for r in rs])} | "
                     f"{_fmt([r['train'] for r in rs])} | {_fmt([r['test_text_input'] for r in rs])} | "
                     f"{np.mean([r['best_epoch'] for r in rs]):.1f} | {np.mean([r['final_train_ce'] for r in rs]):.3f} | "
                     f"{_fmt([r['probe_common'] for r in rs])} | {_fmt([r['probe_specific'] for r in rs])} | "
                     f"{_fmt([r['probe_emotion'] for r in rs])} | {_fmt([r['fusion_head_test'] for r in rs])} | "
                     f"{np.mean([r['fusion_weight'] for r in rs]):.2f} | {rs[0]['parameters']:,} |")
    lines += ["", f"{len(jobs)} runs in {time.time() - t0:.0f} s; command: "
              f"`python benchmarks/experiments.py {args.file} --datasets {dataset}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or REPO / "benchmarks" / "results" / f"experiments-{args.file.stem}-{dataset}.md"
    if not args.only:
        out.write_text(text)
        (base / "summary.json").write_text(json.dumps(summary, indent=1))

if __name__ == "__main__":
    raise SystemExit(main())
