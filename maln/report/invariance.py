"""The invariance table: what fresh probes read from each multimodal run's decomposed features,
out of sample (maln/probes.py: fitted and scored on disjoint test dialogues)."""

from __future__ import annotations

import math

from maln.probes import FOLDS
from maln.report.formats import fmt, write
from maln.report.runs import Study
from maln.report.stats import mean_std

# metrics.json key (the linear probe's; `_mlp` the MLP's) -> column title
PROBES = tuple((f"{key}{suffix}", f"{text}, {kind}") for key, text in (
    ("common_modality_accuracy", "modality from common"), ("specific_modality_accuracy", "modality from specific"),
    ("common_emotion_accuracy", "emotion from common")) for suffix, kind in (("", "linear"), ("_mlp", "MLP")))


def invariance_table(study: Study) -> list[dict]:
    """Per dataset and multimodal variant: accuracy (%) of fresh linear and MLP probes on the test
    split's decomposed features, cross-validated over its dialogues, mean ± std over seeds (n/a for
    a probe a run did not record); chance = 100 / M."""
    rows = []
    for c in study.cells:
        runs = [r for r in study.get(c.dataset, c.variant) if "invariance" in r.metrics]
        if not runs:
            continue
        row = {"dataset": c.dataset, "variant": c.variant, "n": len(runs),
               "chance": 100 * runs[0].metrics["invariance"]["chance"]}
        for key, _ in PROBES:
            values = [100 * r.metrics["invariance"][key] for r in runs if key in r.metrics["invariance"]]
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values) if values else (math.nan, math.nan)
        rows.append(row)
    return rows


def write_table(out, study: Study, source: str) -> list[dict]:
    rows = invariance_table(study)
    body = [[r["dataset"], r["variant"], f"{r['chance']:.1f}",
             *(fmt(r[f"{k}_mean"], r[f"{k}_std"]) for k, _ in PROBES), str(r["n"])] for r in rows]
    write(out, "invariance", rows, ["Dataset", "Variant", "chance", *(t for _, t in PROBES), "n"], body,
          f"Is the common space modality-invariant? Accuracy (%) of fresh probes on the test split's features, "
          f"fitted and scored on disjoint test dialogues (grouped {FOLDS}-fold cross-validation, fewer folds when "
          f"there are fewer dialogues; the eraser, normaliser and adversary were fitted on the training split, so "
          f"none saw these dialogues): a standardised logistic regression (linear) and a one-hidden-layer MLP, "
          f"reading the modality from the common and from the specific features (invariant: chance = 100/M) and "
          f"the emotion from the common features (invariance must not empty them); mean ± std over seeds. {source}")
    return rows
