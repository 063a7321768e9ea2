"""The sensitivity sweep's table (params.yaml `sweep:`): the full model's WF1 at each value."""

from __future__ import annotations

from pathlib import Path

from maln.report.formats import fmt, write
from maln.report.stats import mean_std


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
    from maln.study import SWEEP_VARIANT

    rows = sweep_table(sweep)
    body = [[r["key"], r["value"], r["dataset"], fmt(r["valid_wf1_mean"], r["valid_wf1_std"]),
             fmt(r["test_wf1_mean"], r["test_wf1_std"]), str(r["n"])] for r in rows]
    spec = "; ".join(f"{k}: {v}" for k, v in params_data["sweep"].items())
    write(Path(out_dir), "sweep", rows, ["Key", "Value", "Dataset", "valid WF1", "test WF1", "n"], body,
          f"Sensitivity sweep ({spec}): weighted F1 (%) of the {SWEEP_VARIANT} model with the key set to each "
          f"value (its job's --set, which wins over the dataset's overrides), validation-selected epoch, mean ± std "
          f"over seeds; choose by the validation column. {source}")
    return rows
