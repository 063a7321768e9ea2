"""The tables a reader checks against the papers, as numbers (CSV) and formatted (Markdown, LaTeX).
All scores are percentages of the test split, mean and sample std over seeds."""

from __future__ import annotations

import math

import numpy as np

from maln.model.variants import VARIANTS
from maln.report import invariance, references
from maln.report.formats import NA, fmt as _fmt, write
from maln.report.runs import Study
from maln.report.stats import bootstrap_delta_wf1, mean_std, paired_t_test
from maln.study import label

SCORES = {"acc": "accuracy", "wf1": "weighted_f1", "mf1": "macro_f1"}


def _pct(runs, key, split="test"):
    return [100 * r.metrics[split][key] for r in runs]


def main_table(study: Study, published: dict | None = None, confidence: float = 0.95) -> list[dict]:
    """Every variant of every dataset, then its baselines (deterministic: n = 1), its oracle rows
    (synthetic datasets with an oracle), then the published numbers for its benchmark (`published`:
    dataset -> [Published]), labelled; each model's headroom share and linear floor (report.references)."""
    rows = []
    for dataset in study.datasets():
        share, floor = references.shares(study, dataset, confidence), references.floors(study, dataset)
        for c in study.variants(dataset):
            runs = study.get(c.dataset, c.variant)
            row = {"dataset": c.dataset, "variant": c.variant, "kind": "MALN", "n": len(runs),
                   "note": "" if c.applicable else f"n/a: {c.reason}"}
            for short, key in SCORES.items():
                m, s = mean_std(_pct(runs, key)) if runs else (math.nan, math.nan)
                row[f"test_{short}_mean"], row[f"test_{short}_std"] = m, s
            rows.append({**row, **references.row_extras(share.get(c.variant), floor.get(c.variant))})
        for b in study.baselines_of(dataset):
            row = {"dataset": dataset, "variant": b.label, "kind": "baseline", "n": len(b.fits), "note": ""}
            for short, key in SCORES.items():
                row[f"test_{short}_mean"], row[f"test_{short}_std"] = mean_std(b.scores(key))
            rows.append({**row, **references.row_extras(share.get(b.name))})
        rows += references.oracle_rows(study, dataset)
        for p in (published or {}).get(dataset, []):
            rows.append({"dataset": dataset, "variant": f"published: {p.method} ({p.text_features}; {p.selection})",
                         "kind": "published", "n": 0, "note": "reported by its authors; not our run",
                         "test_acc_mean": math.nan, "test_acc_std": math.nan, "test_wf1_mean": p.weighted_f1,
                         "test_wf1_std": math.nan, "test_mf1_mean": math.nan, "test_mf1_std": math.nan,
                         **references.row_extras(None)})
    return rows


PER_CLASS_BASELINES = ("logreg_all", "mlp_all")  # the context-free models on every modality, beside full


def per_class_table(study: Study, variant: str = "full", baselines=PER_CLASS_BASELINES) -> list[dict]:
    """The papers' layout: per emotion, accuracy (recall) and F1; then WAA and WF1; beside them the
    F1 of the context-free baselines on the concatenated features (`<name>_f1`)."""
    rows = []
    for dataset in study.datasets():
        runs = study.get(dataset, variant)
        if not runs:
            continue
        fits = {b.name: b.fits[0]["test"] for b in study.baselines_of(dataset) if b.name in baselines}

        def beside(score):  # each baseline's F1 of one emotion, or its weighted F1
            return {f"{n}_f1": 100 * score(fits[n]) if n in fits else math.nan for n in baselines}

        for name in runs[0].class_names:
            acc = mean_std([100 * r.metrics["test"]["per_class"][name]["recall"] for r in runs])
            f1 = mean_std([100 * r.metrics["test"]["per_class"][name]["f1"] for r in runs])
            support = runs[0].metrics["test"]["per_class"][name]["support"]
            rows.append({"dataset": dataset, "emotion": name, "support": support, "acc_mean": acc[0], "acc_std": acc[1],
                         "f1_mean": f1[0], "f1_std": f1[1], **beside(lambda t: t["per_class"][name]["f1"])})
        waa, wf1 = mean_std(_pct(runs, "waa")), mean_std(_pct(runs, "weighted_f1"))
        rows.append({"dataset": dataset, "emotion": "Average(w)", "support": runs[0].metrics["test"]["n"],
                     "acc_mean": waa[0], "acc_std": waa[1], "f1_mean": wf1[0], "f1_std": wf1[1],
                     **beside(lambda t: t["weighted_f1"])})
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
            # an ablation against the full model of its configuration; another configuration's full
            # model against the recommended one
            reference = "full" if c.model_variant == "full" else label(c.configuration, "full")
            row = {"dataset": dataset, "variant": c.variant, "reference": reference}
            runs = {r.seed: r for r in study.get(dataset, c.variant)}
            ref = {r.seed: r for r in study.get(dataset, reference)}
            seeds = sorted(set(ref) & set(runs))
            if not c.applicable or not seeds:
                row.update(n=0, note=f"n/a: {c.reason}" if not c.applicable else f"n/a: no {reference} in the study")
                rows.append(row)
                continue
            a = [100 * runs[s].metrics["test"]["weighted_f1"] for s in seeds]
            b = [100 * ref[s].metrics["test"]["weighted_f1"] for s in seeds]
            t, p = paired_t_test(a, b)
            gold = ref[seeds[0]].gold
            for s in seeds:
                if not np.array_equal(runs[s].gold, gold) or not np.array_equal(ref[s].gold, gold):
                    raise ValueError(f"{dataset}: runs disagree on the test utterances; were they trained on one store?")
            delta, lo, hi = bootstrap_delta_wf1(gold, [runs[s].pred for s in seeds], [ref[s].pred for s in seeds],
                                                len(ref[seeds[0]].class_names), n_boot, confidence, seed,
                                                ref[seeds[0]].dialogue)
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
            rows.append({"dataset": dataset, "variant": base.label, "reference": "full", "n": len(seeds),
                         "wf1_mean": float(np.mean(a)),
                         "full_wf1_mean": float(np.mean(b)), "delta_wf1_mean": d_mean, "delta_wf1_std": d_std,
                         "ci_low": 100 * lo, "ci_high": 100 * hi, "paired_t": t, "paired_p": p, "note": ""})
    return rows


MODALITY_ROWS = (("T", "text_only"), ("A", "audio_only"), ("V", "visual_only"), ("all", "full"))
BASELINE_ROWS = (("T, logistic regression", "logreg_text"), ("A, logistic regression", "logreg_audio"),
                 ("V, logistic regression", "logreg_visual"), ("all, logistic regression", "logreg_all"),
                 ("all, MLP", "mlp_all"),
                 ("all, late fusion of the single-modality variants", "late_fusion"), ("majority class", "majority"))


def _untrained(study: Study, dataset: str, variant: str) -> str:
    """Why a dataset has no row `variant` that study.rows left out: its modality, or study.rows."""
    full, spec = study.get(dataset, "full"), VARIANTS[variant]
    if full and not spec.applicable(full[0].metrics["modalities"]):  # maln.study.cells' own test
        return f"n/a: no {spec.modality} modality"
    return "n/a: not trained (study.rows)"


def modality_table(study: Study) -> list[dict]:
    """Text, audio, visual alone and all together (the full model), per dataset (WAA = accuracy); then
    the same for the logistic regressions, the majority class, and the exact Bayes rules (an oracle's)."""
    in_study = {c.variant for c in study.cells}
    rows = []
    for label, variant in MODALITY_ROWS:
        if variant not in in_study:
            continue
        row = {"modality": label, "variant": variant}
        for dataset in study.datasets():
            runs = study.get(dataset, variant)
            cell = next((c for c in study.variants(dataset) if c.variant == variant), None)  # None: not in study.rows
            row[f"{dataset}_modalities"] = "+".join(m[0].upper() for m in runs[0].metrics["modalities"]) if runs else ""
            for short, key in (("waa", "waa"), ("wf1", "weighted_f1")):
                m, s = mean_std(_pct(runs, key)) if runs else (math.nan, math.nan)
                row[f"{dataset}_{short}_mean"], row[f"{dataset}_{short}_std"] = m, s
            row[f"{dataset}_note"] = ("" if cell and cell.applicable else f"n/a: {cell.reason}" if cell
                                      else _untrained(study, dataset, variant))
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
    return rows + references.modality_oracle_rows(study)


def protocol_table(study: Study) -> list[dict]:
    """Per dataset and variant, the test WF1 of picking the epoch by validation WF1 (ours), by test WF1 (the
    field's common protocol) and the last epoch; inflation = best-test - validation-selected (>= 0 for a
    model kept at one epoch), mean ± std over seeds. Needs train.record_test_curve."""
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


def write_main(out, study: Study, confidence: float, source: str, published: dict | None = None) -> list[dict]:
    """The main table (main_table) in every format; its caption says what each kind of row is."""
    rows = main_table(study, published, confidence)
    header, body, notes = references.main_layout(rows, _fmt, dict(zip(SCORES, ("Accuracy", "Weighted F1", "Macro F1"))),
                                                 confidence)
    caption = (f"Test scores (%), mean ± std over seeds; n = seeds. Baselines (maln/baselines.py) are one deterministic "
               f"fit on the same splits, each utterance's features alone (no context): logistic regression per "
               f"modality and on the concatenated modalities (C chosen by validation WF1), a one-hidden-layer MLP on "
               f"the concatenated modalities (mlp_all, L2 alpha chosen by validation WF1), the majority class; but "
               f"logreg_all_chain, logreg_all decoded by the training split's emotion chain (maln/chain.py), reads the "
               f"dialogue. {source}{notes}")
    if any(r["kind"] == "published" for r in rows):
        caption += (" Rows 'published:' are the weighted F1 their authors report, with their text features and how "
                    "they chose the epoch (most chose it on the test split; see the protocol table); they are not "
                    "our runs and enter none of our statistics.")
    write(out, "main", rows, header, body, caption)
    return rows


def write_all(out_dir, study: Study, n_boot: int, confidence: float, seed: int, source: str,
              published: dict | None = None) -> dict:
    """Write every table as CSV, Markdown and LaTeX; return the rows for the figures and README."""
    from pathlib import Path

    out, tables = Path(out_dir), {}
    tables["main"] = write_main(out, study, confidence, source, published)

    rows = tables["per_class"] = per_class_table(study)
    body = [[r["dataset"], r["emotion"], str(r["support"]), _fmt(r["acc_mean"], r["acc_std"]), _fmt(r["f1_mean"], r["f1_std"]),
             *(_fmt(r[f"{n}_f1"], None) for n in PER_CLASS_BASELINES)] for r in rows]
    write(out, "per_class", rows, ["Dataset", "Emotion", "Test utterances", "Acc.", "F1",
                                   *(f"F1, {n}" for n in PER_CLASS_BASELINES)], body,
          "Full model, per emotion: accuracy (recall) and F1 on the test split (%), mean ± std over seeds; "
          "Average(w) is WAA and weighted F1. Last columns: the logistic regression and the MLP on the concatenated "
          f"features, without context (baselines). {source}")

    rows = tables["ablation"] = ablation_table(study, n_boot, confidence, seed)
    pct = round(100 * confidence)
    body = []
    for r in rows:
        if not r["n"]:
            body.append([r["dataset"], r["variant"], NA, r["reference"], NA, NA, NA, "–"])
            continue
        p = r["paired_p"]
        body.append([r["dataset"], r["variant"], f"{r['wf1_mean']:.2f}", r["reference"],
                     _fmt(r["delta_wf1_mean"], r["delta_wf1_std"]),
                     f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]", NA if math.isnan(p) else f"{p:.3f}", str(r["n"])])
    write(out, "ablation", rows, ["Dataset", "Variant", "WF1", "Against", "Δ WF1", f"{pct}% CI (bootstrap)", "paired t p",
                                  "n"],
           body, f"Ablations and baselines: test weighted F1 (%) and its change against the full model of the same "
                 f"configuration (another configuration's full model: against the recommended full), paired by seed "
                 f"(mean ± std of the per-seed differences; a baseline is one fit, compared with every seed); {pct}% "
                 f"percentile bootstrap interval resampling test dialogues, not utterances ({n_boot} resamples); "
                 f"two-sided paired t-test across seeds. {source}")

    rows = tables["protocol"] = protocol_table(study)
    body = [[r["dataset"], r["variant"], NA, NA, NA, NA, NA, "–"] if "validation_mean" not in r else
            [r["dataset"], r["variant"], _fmt(r["validation_mean"], r["validation_std"]),
             _fmt(r["best_test_mean"], r["best_test_std"]), _fmt(r["last_mean"], r["last_std"]),
             _fmt(r["inflation_mean"], r["inflation_std"]),
             f"{r['selected_epoch_mean']:.1f} / {r['best_test_epoch_mean']:.1f}", str(r["n"])] for r in rows]
    write(out, "protocol", rows, ["Dataset", "Variant", "test WF1, epoch chosen on validation (ours)",
                                   "test WF1, best test epoch (common protocol)", "test WF1, last epoch",
                                   "inflation", "epoch: chosen / best test", "n"], body,
           "Model selection protocols: test weighted F1 (%) of the epoch chosen by validation WF1 (this project's "
           "number, in every other table), of the epoch with the best test WF1 (what most papers of the field "
           "report) and of the last epoch; inflation = best-test minus validation-chosen, mean ± std over seeds. A "
           "branchwise model keeps each network at its own best validation epoch (maln/selection.py; chosen: the latest), "
           "so its prediction is no single epoch's and its inflation can be negative. "
           f"The per-epoch test scores are recorded for this table only; selection never reads them. {source}")

    tables["invariance"] = invariance.write_table(out, study, source)

    rows = tables["modality"] = modality_table(study)
    header = ["Modality"] + [f"{d} {k}" for d in study.datasets() for k in ("WAA", "WF1")]
    body = []
    for r in rows:
        cells_ = [r["modality"] if r["variant"] != "full" else "all (full model: " + ", ".join(
            r[f"{d}_modalities"] for d in study.datasets()) + ")"]
        for d in study.datasets():
            for k in ("waa", "wf1"):
                cells_.append(_fmt(r[f"{d}_{k}_mean"], r[f"{d}_{k}_std"]))
        body.append(cells_)
    write(out, "modality", rows, header, body, "Each modality alone and all together: the networks (mean ± std over "
          "seeds), then the logistic regressions on the same features without context, the majority class, and where the "
          "data has an exact oracle its Bayes rules with the dialogue's context (each modality's alone: the best accuracy its "
          f"variant can expect; a bound on WAA, not on WF1): test WAA and weighted F1 (%). {source}")
    return tables
