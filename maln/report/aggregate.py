"""`maln aggregate`: every run of the study -> results/metrics.json (for DVC), tables, figures, DVC
plot data, and the generated results section of the README."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from maln import io
from maln.config import Params
from maln.data import layouts
from maln.report import figures, invariance, references, tables, tsne
from maln.report.sweep import write_sweep
from maln.report.ensemble import late_fusion
from maln.report.published import for_layout
from maln.report.runs import Study, load_study, load_sweep
from maln.report.stats import mean_std
from maln.study import report_outputs as outputs  # noqa: F401 (what it writes, said in maln/study.py)

RESULTS = Path("results")
METRICS = {"acc": "accuracy", "wf1": "weighted_f1", "mf1": "macro_f1"}
README_START, README_END = "<!-- maln:results:start -->", "<!-- maln:results:end -->"


def _rounded(m: float, s: float) -> tuple[float, float]:
    return round(m, 2), round(s, 2) if not np.isnan(s) else 0.0


def summary(study: Study, confidence: float = 0.95) -> dict:
    """dataset -> variant -> {split_metric_mean, ..._std, n} in percent: results/metrics.json, whose
    keys read well in `dvc metrics diff` (synthetic-iemocap.full.test_wf1_mean). Also, where they
    apply: the out-of-sample probes (probe_<key>_mean, linear and _mlp), each head's own scores
    (head_<fusion|modality>_<split>_wf1_mean, _nll_mean), the headroom share
    (headroom_share_mean/_low/_high, a fraction), the gap to the linear floor (linear_floor_gap,
    WF1 points, below_linear_floor), and per dataset its oracle's test scores (oracle)."""
    out = {}
    for dataset in study.datasets():
        out[dataset] = {}
        share, floor = references.shares(study, dataset, confidence), references.floors(study, dataset)
        for c in study.variants(dataset):
            runs = study.get(c.dataset, c.variant)
            if not runs:
                continue
            row = {}
            for split in ("test", "valid"):
                for short, key in METRICS.items():
                    row[f"{split}_{short}_mean"], row[f"{split}_{short}_std"] = _rounded(
                        *mean_std([100 * r.metrics[split][key] for r in runs]))
            row["n"] = len(runs)
            probes = [r.metrics["invariance"] for r in runs if "invariance" in r.metrics]
            for key, _ in invariance.PROBES:  # out of sample (maln/probes.py): linear, and _mlp
                values = [100 * p[key] for p in probes if key in p]
                if values:
                    row[f"probe_{key}_mean"], row[f"probe_{key}_std"] = _rounded(*mean_std(values))
            heads = [r.metrics["heads"] for r in runs if "heads" in r.metrics]
            for head in (heads[0] if heads and len(heads) == len(runs) else {}):
                if head == "prediction":
                    continue
                for split in ("test", "valid"):  # each head's own scores (maln/evaluate.py head_scores)
                    row[f"head_{head}_{split}_wf1_mean"], row[f"head_{head}_{split}_wf1_std"] = _rounded(
                        *mean_std([100 * h[head][split]["weighted_f1"] for h in heads]))
                    row[f"head_{head}_{split}_nll_mean"] = round(float(np.mean([h[head][split]["nll"] for h in heads])), 4)
            out[dataset][c.variant] = {**row, **_references(share.get(c.variant), floor.get(c.variant))}
        for b in study.baselines_of(dataset):
            row = {}
            for split in ("test", "valid"):
                for short, key in METRICS.items():
                    row[f"{split}_{short}_mean"], row[f"{split}_{short}_std"] = _rounded(*mean_std(b.scores(key, split)))
            out[dataset][b.name] = {**row, "n": len(b.fits), **_references(share.get(b.name), None)}
        scores = study.oracles.get(dataset)
        if scores:
            out[dataset]["oracle"] = {
                **{rule: {"test_wf1": round(100 * scores[rule]["weighted_f1"], 2),
                          "test_acc": round(100 * scores[rule]["accuracy"], 2)}
                   for rule in scores if rule != "test_labels"},  # the four rules, then each modality's alone
                "headroom_wf1": round(references.headroom(scores), 2)}
    return out


def _references(share: dict | None, floor: dict | None) -> dict:
    # unrounded: the README's headline prints these at 2 decimals and the main table prints the same float;
    # stored at 3, a share of 1.3553 became 1.355 and '+1.35' there beside the table's '+1.36' (at any
    # precision above the printed one, rounding twice can differ from rounding once)
    out = {k: float(share[k]) for k in references.SHARE_KEYS} if share else {}
    if floor:
        # numbers only, for `dvc metrics diff`; the floor is logreg_all, or logreg_<m> for one modality m
        out.update(linear_floor_gap=round(floor["wf1"] - floor["baseline_wf1"], 2), below_linear_floor=bool(floor["below"]))
    return out


def training_log_prior(root: Path, dataset: str) -> np.ndarray:
    """Log class frequencies of the dataset's training split, read from its store."""
    from maln.data.store import load_store

    prior = load_store(root / "data" / "features" / dataset, verify=False).class_prior
    return np.log(np.maximum(prior, 1e-12))


def data_note(params: Params) -> str:
    """Which data the numbers come from, said plainly: synthetic data is no replication."""
    layouts_ = [layouts.get(params.dataset(d)["layout"]) for d in params.data["study"]["datasets"]]
    if all(l.synthetic for l in layouts_):
        return "synthetic data, not the paper's benchmarks"
    return "; ".join(f"{d}: {'synthetic data' if l.synthetic else l.name + ' features'}"
                     for d, l in zip(params.data["study"]["datasets"], layouts_))


def plot_data(study: Study, root: Path) -> None:
    """Small CSVs DVC renders and diffs across branches (`dvc plots diff main`)."""
    for name in ("curves", "per_class_f1"):
        shutil.rmtree(root / RESULTS / "plots" / name, ignore_errors=True)
    for (dataset, variant), runs in study.runs.items():
        variant = variant.replace("/", "-")  # paper/full: one file, paper-full
        n = min(len(r.history) for r in runs)
        lines = ["epoch,train_cross_entropy,valid_weighted_f1"]
        for e in range(n):
            loss = np.mean([r.history[e]["ce"] for r in runs])
            wf1 = np.mean([100 * r.history[e]["valid_weighted_f1"] for r in runs])
            lines.append(f"{e + 1},{loss:.5f},{wf1:.3f}")
        io.write_text(root / RESULTS / "plots" / "curves" / f"{dataset}--{variant}.csv", "\n".join(lines) + "\n")
        lines = ["emotion,test_f1"] + [
            f"{e},{np.mean([100 * r.metrics['test']['per_class'][e]['f1'] for r in runs]):.3f}" for e in runs[0].class_names]
        io.write_text(root / RESULTS / "plots" / "per_class_f1" / f"{dataset}--{variant}.csv", "\n".join(lines) + "\n")


# The README's headline table: per dataset, these rows of results/metrics.json (those it has).
HEADLINE = ("full", "no_sclm", "no_adversary", "text_only", "paper/full", "late_fusion", "logreg_all", "mlp_all",
            "logreg_all_chain")


def headline(metrics: dict) -> str:
    """The README's results: one row per dataset, test WF1 of the ablations beside the baselines,
    the oracles and the headroom share of `full`; every number from results/metrics.json."""
    columns = [c for c in HEADLINE if any(c in d for d in metrics.values())]
    oracle = any("oracle" in d for d in metrics.values())
    header = ["dataset", *columns] + (["oracle joint / late", "share of full"] if oracle else [])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for dataset, rows in metrics.items():
        cells = [dataset]
        for c in columns:
            r = rows.get(c)
            flag = " †" if r and r.get("below_linear_floor") else ""
            spread = f" ± {r['test_wf1_std']:.2f}" if r and r.get("n", 0) > 1 else ""  # one deterministic fit: none
            cells.append(f"{r['test_wf1_mean']:.2f}{spread}{flag}" if r else "n/a")
        if oracle:
            o, f = rows.get("oracle"), rows.get("full", {})
            cells.append(f"{o['joint_context']['test_wf1']:.2f} / {o['late_context']['test_wf1']:.2f}" if o else "–")
            cells.append(f"{f['headroom_share_mean']:+.2f} [{f['headroom_share_low']:+.2f}, {f['headroom_share_high']:+.2f}]"
                         if "headroom_share_mean" in f else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(readme: Path, root: Path, note: str) -> bool:
    """Replace the README's generated section with the headline table and the ablation figure."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    metrics = json.loads((root / RESULTS / "metrics.json").read_text())
    section = (f"{README_START}\n*Generated by `maln aggregate` from the last study run ({note}); do not edit by "
               f"hand.* Test weighted F1 (%), mean ± std over seeds; the baselines are context-free (logistic "
               f"regression, a one-hidden-layer MLP), the late fusion of the single-modality variants, or the "
               f"regression decoded by the training split's emotion chain (logreg_all_chain); oracle: "
               f"the exact joint and best late-fusion Bayes rules with the dialogue's context; share of full: "
               f"(full - late fusion) / (joint - late oracle), mean [95 % interval over seeds]; † below its "
               f"context-free logistic regression. Every table: [results/tables/](results/tables/main.md).\n\n"
               f"{headline(metrics)}\n\n![Ablations](results/figures/ablation.png)\n\n"
               f"![Decomposition](results/figures/tsne.png)\n{README_END}")
    new = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: section, text, flags=re.S)
    if new != text:
        io.write_text(readme, new)
    return True


def aggregate(params: Params, readme: Path | None = None, threads: int | None = None) -> dict:
    root = params.root
    report = params.data["report"]
    study = load_study(root, params.data)
    for dataset in study.datasets():  # a baseline made from the study's own single-modality runs
        fused = late_fusion(study, dataset, training_log_prior(root, dataset))
        if fused is not None:
            study.baselines.setdefault(dataset, []).append(fused)
    study.oracles = references.load_oracles(params)  # datasets with an exact oracle (synthetic kinds, yours)
    references.check_oracles(study)
    metrics = summary(study, report["confidence"])
    io.write_json(root / RESULTS / "metrics.json", metrics)
    note = data_note(params)
    published = {d: for_layout(params.dataset(d)["layout"]) for d in params.data["study"]["datasets"]}
    tables.write_all(root / RESULTS / "tables", study, report["bootstrap"], report["confidence"], report["seed"],
                     f"Data: {note}.", published)
    for line in references.floor_log(study):  # flagged in the main table too
        print(line, file=sys.stderr)
    fig_dir = root / RESULTS / "figures"
    figures.ablation_bars(study, fig_dir / "ablation.png", note)
    figures.confusion_matrices(study, fig_dir / "confusion.png", note)
    figures.training_curves(study, fig_dir / "curves.png", note)
    figures.per_class_f1(study, fig_dir / "per_class_f1.png", note)
    tsne.tsne_decomposition(study, fig_dir / "tsne.png", note, report["tsne_utterances"], report["seed"], threads)
    plot_data(study, root)
    # DVC versions results/sweeps (dvc.yaml), so it exists after a direct Snakemake run too
    (root / RESULTS / "sweeps").mkdir(parents=True, exist_ok=True)
    if params.data.get("sweep"):
        sweep = load_sweep(root, params.data)
        write_sweep(root / RESULTS / "tables", sweep, params.data, f"Data: {note}.")
        figures.sweep_curves(sweep, fig_dir / "sweep.png", note)
    if readme is not None and not update_readme(readme, root, note):
        print(f"note: {readme} has no {README_START} ... {README_END} section to update", file=sys.stderr)
    return metrics
