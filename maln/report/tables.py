"""The tables a reader checks against the papers, as numbers (CSV) and formatted (Markdown, LaTeX).
All scores are percentages of the test split, mean and sample std over seeds."""

from __future__ import annotations

import math

import numpy as np

from maln import io
from maln.report.runs import Study
from maln.report.stats import bootstrap_delta_wf1, mean_std, paired_t_test

SCORES = {"acc": "accuracy", "wf1": "weighted_f1", "mf1": "macro_f1"}
NA = "n/a"


def _pct(runs, key, split="test"):
    return [100 * r.metrics[split][key] for r in runs]


def _fmt(mean, std, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return NA
    return f"{mean:.{digits}f}" if std is None or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def main_table(study: Study, published: dict | None = None) -> list[dict]:
    """Every variant of every dataset, then the dataset's baselines (deterministic: n = 1), then
    the published numbers for its benchmark (`published`: dataset -> [Published]), labelled."""
    rows = []
    for dataset in study.datasets():
        for c in study.variants(dataset):
            runs = study.get(c.dataset, c.variant)
            row = {"dataset": c.dataset, "variant": c.variant, "kind": "MALN", "n": len(runs),
                   "note": "" if c.applicable else f"n/a: {c.reason}"}
            for short, key in SCORES.items():
                m, s = mean_std(_pct(runs, key)) if runs else (math.nan, math.nan)
                row[f"test_{short}_mean"], row[f"test_{short}_std"] = m, s
            rows.append(row)
        for b in study.baselines_of(dataset):
            row = {"dataset": dataset, "variant": b.label, "kind": "baseline", "n": len(b.fits), "note": ""}
            for short, key in SCORES.items():
                row[f"test_{short}_mean"], row[f"test_{short}_std"] = mean_std(b.scores(key))
            rows.append(row)
        for p in (published or {}).get(dataset, []):
            rows.append({"dataset": dataset, "variant": f"published: {p.method} ({p.text_features}; {p.selection})",
                         "kind": "published", "n": 0, "note": "reported by its authors; not our run",
                         "test_acc_mean": math.nan, "test_acc_std": math.nan, "test_wf1_mean": p.weighted_f1,
                         "test_wf1_std": math.nan, "test_mf1_mean": math.nan, "test_mf1_std": math.nan})
    return rows


def per_class_table(study: Study, variant: str = "full", baseline: str = "logreg_all") -> list[dict]:
    """The papers' layout: per emotion, accuracy (recall) and F1; then WAA and WF1; beside them the
    F1 of the logistic regression on the concatenated features."""
    rows = []
    for dataset in study.datasets():
        runs = study.get(dataset, variant)
        if not runs:
            continue
        lr = next((b.fits[0]["test"] for b in study.baselines_of(dataset) if b.name == baseline), None)
        for name in runs[0].class_names:
            acc = mean_std([100 * r.metrics["test"]["per_class"][name]["recall"] for r in runs])
            f1 = mean_std([100 * r.metrics["test"]["per_class"][name]["f1"] for r in runs])
            support = runs[0].metrics["test"]["per_class"][name]["support"]
            rows.append({"dataset": dataset, "emotion": name, "support": support, "acc_mean": acc[0], "acc_std": acc[1],
                         "f1_mean": f1[0], "f1_std": f1[1],
                         "baseline_f1": 100 * lr["per_class"][name]["f1"] if lr else math.nan})
        waa, wf1 = mean_std(_pct(runs, "waa")), mean_std(_pct(runs, "weighted_f1"))
        rows.append({"dataset": dataset, "emotion": "Average(w)", "support": runs[0].metrics["test"]["n"],
                     "acc_mean": waa[0], "acc_std": waa[1], "f1_mean": wf1[0], "f1_std": wf1[1],
                     "baseline_f1": 100 * lr["weighted_f1"] if lr else math.nan})
    return rows


def ablation_table(study: Study, n_boot: int, confidence: float, seed: int) -> list[dict]:
    """Each variant (and each baseline) against `full`: delta WF1 paired by seed, a paired t-test
    across seeds, and a bootstrap interval that resamples test dialogues."""
    rows = []
    for dataset in study.datasets():
        full = {r.seed: r for r in study.get(dataset, "full")}
        for c in study.variants(dataset):
            if c.variant == "full":
                continue
            row = {"dataset": dataset, "variant": c.variant}
            runs = {r.seed: r for r in study.get(dataset, c.variant)}
            seeds = sorted(set(full) & set(runs))
            if not c.applicable or not seeds:
                row.update(n=0, note=f"n/a: {c.reason}" if not c.applicable else "n/a: no full model in the study")
                rows.append(row)
                continue
            a = [100 * runs[s].metrics["test"]["weighted_f1"] for s in seeds]
            b = [100 * full[s].metrics["test"]["weighted_f1"] for s in seeds]
            t, p = paired_t_test(a, b)
            gold = full[seeds[0]].gold
            for s in seeds:
                if not np.array_equal(runs[s].gold, gold) or not np.array_equal(full[s].gold, gold):
                    raise ValueError(f"{dataset}: runs disagree on the test utterances; were they trained on one store?")
            delta, lo, hi = bootstrap_delta_wf1(gold, [runs[s].pred for s in seeds], [full[s].pred for s in seeds],
                                                len(full[seeds[0]].class_names), n_boot, confidence, seed,
                                                full[seeds[0]].dialogue)
            d_mean, d_std = mean_std(np.subtract(a, b))
            row.update(n=len(seeds), wf1_mean=float(np.mean(a)), full_wf1_mean=float(np.mean(b)), delta_wf1_mean=d_mean,
                       delta_wf1_std=d_std, ci_low=100 * lo, ci_high=100 * hi, paired_t=t, paired_p=p, note="")
            rows.append(row)
        for base in study.baselines_of(dataset) if full else []:
            # a fit per seed is paired with that seed of full; one deterministic fit with every seed
            # of full (the t-test is then one-sample)
            fits = {f["seed"]: f for f in base.fits}
            seeds = sorted(set(full) & set(fits)) if base.seeded else sorted(full)
            pick = (lambda s: fits[s]) if base.seeded else (lambda s: base.fits[0])
            a = [100 * pick(s)["test"]["weighted_f1"] for s in seeds]
            b = [100 * full[s].metrics["test"]["weighted_f1"] for s in seeds]
            t, p = paired_t_test(a, b)
            preds = [pick(s)["pred"] for s in seeds] if base.seeded else [base.fits[0]["pred"]]
            delta, lo, hi = bootstrap_delta_wf1(full[seeds[0]].gold, preds, [full[s].pred for s in seeds],
                                                len(full[seeds[0]].class_names), n_boot, confidence, seed,
                                                full[seeds[0]].dialogue)
            d_mean, d_std = mean_std(np.subtract(a, b))
            rows.append({"dataset": dataset, "variant": base.label, "n": len(seeds), "wf1_mean": float(np.mean(a)),
                         "full_wf1_mean": float(np.mean(b)), "delta_wf1_mean": d_mean, "delta_wf1_std": d_std,
                         "ci_low": 100 * lo, "ci_high": 100 * hi, "paired_t": t, "paired_p": p, "note": ""})
    return rows


MODALITY_ROWS = (("T", "text_only"), ("A", "audio_only"), ("V", "visual_only"), ("all", "full"))
BASELINE_ROWS = (("T, logistic regression", "logreg_text"), ("A, logistic regression", "logreg_audio"),
                 ("V, logistic regression", "logreg_visual"), ("all, logistic regression", "logreg_all"),
                 ("all, late fusion of the single-modality networks", "late_fusion"), ("majority class", "majority"))


def modality_table(study: Study) -> list[dict]:
    """Text, audio, visual alone and all together (the full model), per dataset (WAA = accuracy);
    then the same for the logistic regressions, and the majority class."""
    in_study = {c.variant for c in study.cells}
    rows = []
    for label, variant in MODALITY_ROWS:
        if variant not in in_study:
            continue
        row = {"modality": label, "variant": variant}
        for dataset in study.datasets():
            runs = study.get(dataset, variant)
            cell = next(c for c in study.variants(dataset) if c.variant == variant)
            row[f"{dataset}_modalities"] = "+".join(m[0].upper() for m in runs[0].metrics["modalities"]) if runs else ""
            for short, key in (("waa", "waa"), ("wf1", "weighted_f1")):
                m, s = mean_std(_pct(runs, key)) if runs else (math.nan, math.nan)
                row[f"{dataset}_{short}_mean"], row[f"{dataset}_{short}_std"] = m, s
            row[f"{dataset}_note"] = "" if cell.applicable else f"n/a: {cell.reason}"
        rows.append(row)
    for label, name in BASELINE_ROWS:
        row = {"modality": label, "variant": name}
        for dataset in study.datasets():
            b = next((b for b in study.baselines_of(dataset) if b.name == name), None)
            row[f"{dataset}_modalities"] = "+".join(m[0].upper() for m in b.modalities) if b else ""
            for short, key in (("waa", "waa"), ("wf1", "weighted_f1")):
                m, s = mean_std(b.scores(key)) if b else (math.nan, math.nan)
                row[f"{dataset}_{short}_mean"], row[f"{dataset}_{short}_std"] = m, s
            row[f"{dataset}_note"] = "" if b else "n/a"
        rows.append(row)
    return rows


PROBES = (("common_modality_accuracy", "modality from common"), ("specific_modality_accuracy", "modality from specific"),
          ("common_emotion_accuracy", "emotion from common"))


def invariance_table(study: Study) -> list[dict]:
    """Per dataset and multimodal variant: held-out accuracy (%) of fresh linear probes on the test
    split's decomposed features (maln/probes.py), mean ± std over seeds; chance = 100 / M."""
    rows = []
    for c in study.cells:
        runs = [r for r in study.get(c.dataset, c.variant) if "invariance" in r.metrics]
        if not runs:
            continue
        row = {"dataset": c.dataset, "variant": c.variant, "n": len(runs),
               "chance": 100 * runs[0].metrics["invariance"]["chance"]}
        for key, _ in PROBES:
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([100 * r.metrics["invariance"][key] for r in runs])
        rows.append(row)
    return rows


def protocol_table(study: Study) -> list[dict]:
    """Per dataset and variant, the test WF1 of three ways of picking the epoch: by validation WF1
    (this project's number), by test WF1 (the common protocol of the field: the best test epoch)
    and the last epoch; inflation = best-test - validation-selected (>= 0 by construction), mean
    ± std over seeds. Needs the per-epoch test scores (train.record_test_curve)."""
    rows = []
    for c in study.cells:
        runs = study.get(c.dataset, c.variant)
        row = {"dataset": c.dataset, "variant": c.variant, "n": len(runs)}
        curves = [[h.get("test_weighted_f1") for h in r.history] for r in runs]
        if not runs or any(v is None for curve in curves for v in curve):
            row["note"] = f"n/a: {c.reason}" if not c.applicable else "n/a: no per-epoch test scores (train.record_test_curve)"
            rows.append(row)
            continue
        picks = {
            "validation": [100 * r.metrics["test"]["weighted_f1"] for r in runs],
            "best_test": [100 * max(curve) for curve in curves],
            "last": [100 * curve[-1] for curve in curves],
        }
        picks["inflation"] = list(np.subtract(picks["best_test"], picks["validation"]))
        for k, v in picks.items():
            row[f"{k}_mean"], row[f"{k}_std"] = mean_std(v)
        row["best_test_epoch_mean"] = float(np.mean([int(np.argmax(curve)) + 1 for curve in curves]))
        row["selected_epoch_mean"] = float(np.mean([r.metrics["best_epoch"] for r in runs]))
        row["note"] = ""
        rows.append(row)
    return rows


# -- writing ------------------------------------------------------------------------------------

def _csv(rows: list[dict]) -> str:
    import csv
    import io as _io

    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else ("" if isinstance(v, float) else v))
                    for k, v in r.items()})
    return buf.getvalue()


def _markdown(header: list[str], body: list[list[str]], align=None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _latex(header: list[str], body: list[list[str]], caption: str) -> str:
    def esc(s):
        return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
                .replace("±", "$\\pm$").replace("Δ", "$\\Delta$"))

    cols = "l" * 2 + "r" * (len(header) - 2)
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(caption)}}}", f"\\begin{{tabular}}{{{cols}}}",
             "\\toprule", " & ".join(map(esc, header)) + " \\\\", "\\midrule"]
    lines += [" & ".join(map(esc, row)) + " \\\\" for row in body]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_all(out_dir, study: Study, n_boot: int, confidence: float, seed: int, source: str,
              published: dict | None = None) -> dict:
    """Write every table as CSV, Markdown and LaTeX; return the rows for the figures and README."""
    from pathlib import Path

    out = Path(out_dir)
    tables = {}
    rows = main_table(study, published)
    tables["main"] = rows
    body = [[r["dataset"], r["variant"], str(r["n"]) if r["n"] else "–",
             *(_fmt(r[f"test_{s}_mean"], r[f"test_{s}_std"]) for s in SCORES)] for r in rows]
    header = ["Dataset", "Variant", "n", "Accuracy", "Weighted F1", "Macro F1"]
    caption = (f"Test scores (%), mean ± std over seeds; n = seeds. Baselines (maln/baselines.py) are one deterministic "
               f"fit on the same splits: logistic regression on each utterance's features alone (no context), C chosen "
               f"by validation WF1, and the majority class. {source}")
    if any(r["kind"] == "published" for r in rows):
        caption += (" Rows 'published:' are the weighted F1 their authors report, with their text features and how "
                    "they chose the epoch (most chose it on the test split; see the protocol table); they are not "
                    "our runs and enter none of our statistics.")
    _write(out, "main", rows, header, body, caption)

    rows = per_class_table(study)
    tables["per_class"] = rows
    body = [[r["dataset"], r["emotion"], str(r["support"]), _fmt(r["acc_mean"], r["acc_std"]), _fmt(r["f1_mean"], r["f1_std"]),
             _fmt(r["baseline_f1"], None)] for r in rows]
    _write(out, "per_class", rows, ["Dataset", "Emotion", "Test utterances", "Acc.", "F1", "F1, logreg_all"], body,
           "Full model, per emotion: accuracy (recall) and F1 on the test split (%), mean ± std over seeds; "
           "Average(w) is WAA and weighted F1. Last column: the logistic regression on the concatenated features "
           f"(baseline). {source}")

    rows = ablation_table(study, n_boot, confidence, seed)
    tables["ablation"] = rows
    pct = round(100 * confidence)
    body = []
    for r in rows:
        if not r["n"]:
            body.append([r["dataset"], r["variant"], NA, NA, NA, NA, "–"])
            continue
        p = r["paired_p"]
        body.append([r["dataset"], r["variant"], f"{r['wf1_mean']:.2f}", _fmt(r["delta_wf1_mean"], r["delta_wf1_std"]),
                     f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]", NA if math.isnan(p) else f"{p:.3f}", str(r["n"])])
    _write(out, "ablation", rows, ["Dataset", "Variant", "WF1", "Δ WF1 vs full", f"{pct}% CI (bootstrap)", "paired t p", "n"],
           body, f"Ablations and baselines: test weighted F1 (%) and its change against the full model, paired by seed "
                 f"(mean ± std of the per-seed differences; a baseline is one fit, compared with every seed); {pct}% "
                 f"percentile bootstrap interval resampling test dialogues, not utterances ({n_boot} resamples); "
                 f"two-sided paired t-test across seeds. {source}")

    rows = protocol_table(study)
    tables["protocol"] = rows
    body = [[r["dataset"], r["variant"], NA, NA, NA, NA, NA, "–"] if "validation_mean" not in r else
            [r["dataset"], r["variant"], _fmt(r["validation_mean"], r["validation_std"]),
             _fmt(r["best_test_mean"], r["best_test_std"]), _fmt(r["last_mean"], r["last_std"]),
             _fmt(r["inflation_mean"], r["inflation_std"]),
             f"{r['selected_epoch_mean']:.1f} / {r['best_test_epoch_mean']:.1f}", str(r["n"])] for r in rows]
    _write(out, "protocol", rows, ["Dataset", "Variant", "test WF1, epoch chosen on validation (ours)",
                                   "test WF1, best test epoch (common protocol)", "test WF1, last epoch",
                                   "inflation", "epoch: chosen / best test", "n"], body,
           "Model selection protocols: test weighted F1 (%) of the epoch chosen by validation WF1 (this project's "
           "number, in every other table), of the epoch with the best test WF1 (what most papers of the field "
           "report) and of the last epoch; inflation = best-test minus validation-chosen, mean ± std over seeds. "
           f"The per-epoch test scores are recorded for this table only; selection never reads them. {source}")

    rows = invariance_table(study)
    tables["invariance"] = rows
    body = [[r["dataset"], r["variant"], f"{r['chance']:.1f}",
             *(_fmt(r[f"{k}_mean"], r[f"{k}_std"]) for k, _ in PROBES), str(r["n"])] for r in rows]
    _write(out, "invariance", rows, ["Dataset", "Variant", "chance", *(f"{t} (probe acc.)" for _, t in PROBES), "n"],
           body, "Is the common space modality-invariant? Held-out accuracy (%) of fresh linear probes (logistic "
                 "regression fitted on the training split's features, scored on the test split's): the modality "
                 "from the common and from the specific features (invariant: chance = 100/M), and the emotion from "
                 f"the common features (invariance must not empty them); mean ± std over seeds. {source}")

    rows = modality_table(study)
    tables["modality"] = rows
    header = ["Modality"] + [f"{d} {k}" for d in study.datasets() for k in ("WAA", "WF1")]
    body = []
    for r in rows:
        cells_ = [r["modality"] if r["variant"] != "full" else "all (full model: " + ", ".join(
            r[f"{d}_modalities"] for d in study.datasets()) + ")"]
        for d in study.datasets():
            for k in ("waa", "wf1"):
                cells_.append(_fmt(r[f"{d}_{k}_mean"], r[f"{d}_{k}_std"]))
        body.append(cells_)
    _write(out, "modality", rows, header, body,
           f"Each modality alone and all together: the networks (mean ± std over seeds), then the logistic "
           f"regressions on the same features without context, and the majority class: test WAA and weighted F1 (%). "
           f"{source}")
    return tables


def _html(header: list[str], body: list[list[str]], caption: str) -> str:
    """A standalone page, for `snakemake --report` (which shows HTML inline, CSV only as a download)."""
    from html import escape

    rows = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body {{ font-family: sans-serif; font-size: 14px; margin: 1em; }}
table {{ border-collapse: collapse; }} caption {{ text-align: left; margin-bottom: .6em; max-width: 60em; }}
th, td {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:nth-child(-n+2), td:nth-child(-n+2) {{ text-align: left; }} th {{ border-bottom: 2px solid #333; }}
</style></head><body><table>
<caption>{escape(caption)}</caption>
<tr>{"".join(f"<th>{escape(h)}</th>" for h in header)}</tr>
{rows}
</table></body></html>
"""


FORMATS = ("csv", "md", "tex", "html")


def _write(out, name, rows, header, body, caption):
    io.write_text(out / f"{name}.csv", _csv(rows))
    io.write_text(out / f"{name}.md", f"{caption}\n\n" + _markdown(header, body))
    io.write_text(out / f"{name}.tex", _latex(header, body, caption))
    io.write_text(out / f"{name}.html", _html(header, body, caption))


def sweep_table(sweep: dict) -> list[dict]:
    """key, value, dataset: validation and test WF1 (%) of the full model, mean ± std over seeds."""
    rows = []
    for key, by_value in sweep.items():
        for value, by_dataset in by_value.items():
            for dataset, runs in by_dataset.items():
                row = {"key": key, "value": value, "dataset": dataset, "n": len(runs)}
                for split in ("valid", "test"):
                    row[f"{split}_wf1_mean"], row[f"{split}_wf1_std"] = mean_std(
                        [100 * r[split]["weighted_f1"] for r in runs])
                rows.append(row)
    return rows


def write_sweep(out_dir, sweep: dict, params_data: dict, source: str) -> list[dict]:
    from pathlib import Path

    from maln.study import SWEEP_VARIANT

    rows = sweep_table(sweep)
    body = [[r["key"], r["value"], r["dataset"], _fmt(r["valid_wf1_mean"], r["valid_wf1_std"]),
             _fmt(r["test_wf1_mean"], r["test_wf1_std"]), str(r["n"])] for r in rows]
    spec = "; ".join(f"{k}: {v}" for k, v in params_data["sweep"].items())
    _write(Path(out_dir), "sweep", rows, ["Key", "Value", "Dataset", "valid WF1", "test WF1", "n"], body,
           f"Sensitivity sweep ({spec}): weighted F1 (%) of the {SWEEP_VARIANT} model with the key set to each "
           f"value (its job's --set, which wins over the dataset's overrides), validation-selected epoch, mean ± std "
           f"over seeds; choose by the validation column. {source}")
    return rows
