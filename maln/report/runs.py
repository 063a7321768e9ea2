"""Loading the study's runs for the report: metrics, training histories, test predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maln import io, readback
from maln.errors import MalnError
from maln.study import Cell, baseline_path, cells, label, run_path


@dataclass
class Run:
    dataset: str
    variant: str  # the study row's label (full, paper/full)
    seed: int
    path: Path
    metrics: dict
    history: list  # rows of history.csv, numbers as floats
    gold: np.ndarray  # test utterances, class indices, store order
    pred: np.ndarray
    dialogue: np.ndarray  # each test utterance's dialogue id (the bootstrap's clusters)

    def log_probs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(gold, log-probabilities [N, C]) of the test or validation split, from the run's CSV."""
        rows = readback.read_predictions(self.path / ("predictions.csv" if split == "test" else "valid_predictions.csv"),
                                         self.remedy, self.class_names, self.metrics[split]["n"])
        index = {name: i for i, name in enumerate(self.class_names)}
        gold = np.array([index[r["gold"]] for r in rows], dtype=np.int64)
        probs = np.array([[float(r[f"p_{c}"]) for c in self.class_names] for r in rows])
        return gold, np.log(np.clip(probs, 1e-6, 1.0))

    @property
    def class_names(self) -> list[str]:
        return self.metrics["class_names"]

    @property
    def remedy(self) -> str:
        return readback.run_remedy(self.dataset, self.variant, self.seed)


@dataclass
class Baseline:
    """A reference the MALN variants are compared with: one deterministic fit (the regressions and
    the MLP of maln/baselines.py, seed None) or one fit per seed (the late fusion of maln/report/ensemble.py)."""
    dataset: str
    name: str
    label: str  # the name a table shows, with what the validation split chose
    fits: list  # [{"seed": int | None, "valid": metrics, "test": metrics, "pred": test predictions}]
    modalities: tuple = ()

    def scores(self, key: str, split: str = "test") -> list[float]:
        return [100 * f[split][key] for f in self.fits]

    @property
    def seeded(self) -> bool:
        return self.fits[0]["seed"] is not None


def _regression(dataset: str, name: str, r: dict) -> Baseline:
    chosen = next((f"{k}={r[k]:g}" for k in ("C", "alpha") if k in r), r.get("class"))  # what validation chose
    if "decoding" in r:
        chosen += ", chain mix={mix:g} temperature={temperature:g}".format(**r["decoding"])
    fit = {"seed": None, "valid": r["valid"], "test": r["test"], "pred": np.asarray(r["test_predictions"], dtype=np.int64)}
    return Baseline(dataset, name, f"{name} (baseline, {chosen})", [fit], tuple(r.get("modalities", ())))


@dataclass
class Study:
    cells: list  # every dataset x variant, applicable or not
    runs: dict  # (dataset, variant) -> [Run], in seed order
    baselines: dict = field(default_factory=dict)  # dataset -> [Baseline], in maln.baselines order
    oracles: dict = field(default_factory=dict)  # dataset -> its oracle's test scores (maln/report/references.py)

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(c.dataset for c in self.cells))

    def variants(self, dataset: str) -> list[Cell]:
        return [c for c in self.cells if c.dataset == dataset]

    def get(self, dataset: str, variant: str) -> list:
        return self.runs.get((dataset, variant), [])

    def baselines_of(self, dataset: str) -> list:
        return self.baselines.get(dataset, [])


def load_run(path: Path, dataset: str, variant: str, seed: int) -> Run:
    """One run folder, every file the report reads checked (maln/readback.py)."""
    remedy = readback.run_remedy(dataset, variant, seed)
    metrics = readback.read_metrics(path / "metrics.json", remedy)
    recorded = (metrics["dataset"], label(metrics["configuration"], metrics["variant"]), metrics["seed"])
    if recorded != (dataset, variant, seed):
        raise readback.broken(path / "metrics.json", f"records the run {recorded[0]}/{recorded[1]}/seed{recorded[2]}, "
                                                     f"not {dataset}/{variant}/seed{seed}", remedy)
    history = readback.read_history(path / "history.csv", remedy, metrics["epochs_run"])
    names, n = metrics["class_names"], metrics["test"]["n"]
    rows = readback.read_predictions(path / "predictions.csv", remedy, names, n)
    readback.check_features(path / "features.npz", remedy, n, metrics["modalities"], names)
    index = {name: i for i, name in enumerate(names)}
    gold = np.array([index[r["gold"]] for r in rows], dtype=np.int64)
    pred = np.array([index[r["predicted"]] for r in rows], dtype=np.int64)
    return Run(dataset, variant, seed, path, metrics, history, gold, pred, np.array([r["dialogue_id"] for r in rows]))


def _same_store(runs: list, baselines: dict) -> None:
    """The runs of a dataset and its baselines must score one test split: a file left from another
    store (prepared again since) would pair other utterances in the tables."""
    first = {}
    for r in runs:
        key = (r.metrics["store_hash"], tuple(r.class_names), r.metrics["test"]["n"])
        ref = first.setdefault(r.dataset, (key, r))
        if key != ref[0]:
            raise readback.broken(r.path / "metrics.json", f"was trained on another store or classes than "
                                  f"{io.shown(ref[1].path)} (store {key[0][:12]} against {ref[0][0][:12]})", r.remedy)
    for dataset, (path, result) in baselines.items():
        if dataset in first and (tuple(result["class_names"]), next(iter(result["baselines"].values()))["test"]["n"]) \
                != first[dataset][0][1:]:
            raise readback.broken(path, f"scores other classes or test utterances than the runs of {dataset}",
                                  f"compute them again: `maln baseline {dataset}`")


def load_study(root: Path, params_data: dict) -> Study:
    """Every applicable run of the study; a MalnError lists all the runs that are missing."""
    grid = cells(params_data)
    found, missing = {}, []
    for c in grid:
        if not c.applicable:
            continue
        for seed in params_data["study"]["seeds"]:
            path = root / run_path(c.dataset, c.variant, seed)
            if not (path / "metrics.json").is_file():
                missing.append(str(run_path(c.dataset, c.variant, seed)))
                continue
            found.setdefault((c.dataset, c.variant), []).append(load_run(path, c.dataset, c.variant, seed))
    results = {}
    for dataset in params_data["study"]["datasets"]:
        path = root / baseline_path(dataset)
        if not path.is_file():
            missing.append(str(baseline_path(dataset)))
            continue
        results[dataset] = (path, readback.read_baselines(path, f"compute them again: `maln baseline {dataset}`"))
    _same_store([r for runs in found.values() for r in runs], results)
    baselines = {d: [_regression(d, name, r) for name, r in result["baselines"].items()]
                 for d, (_, result) in results.items()}
    if missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise MalnError(f"{len(missing)} run(s) of the study have no results (train them first, e.g. with "
                        f"`snakemake --cores 4 --resources gpu=1`):\n  {shown}")
    return Study(grid, found, baselines)


def load_sweep(root: Path, params_data: dict) -> dict:
    """key -> value -> dataset -> [metrics.json of each seed] for params.yaml `sweep:`; a MalnError
    lists the runs that are missing."""
    from maln.study import SWEEP_VARIANT, sweep_path, sweep_runs

    out, missing = {}, []
    for key, value, dataset, seed in sweep_runs(params_data):
        path = root / sweep_path(key, value, dataset, seed) / "metrics.json"
        if not path.is_file():
            missing.append(str(sweep_path(key, value, dataset, seed)))
            continue
        remedy = readback.run_remedy(dataset, SWEEP_VARIANT, seed, out=sweep_path(key, value, dataset, seed),
                                     sets=[f"{key}={value}"])
        out.setdefault(key, {}).setdefault(value, {}).setdefault(dataset, []).append(readback.read_metrics(path, remedy))
    if missing:
        raise MalnError(f"{len(missing)} sweep run(s) have no results (run the workflow first):\n  " + "\n  ".join(missing[:20]))
    return out
