"""The study grid: which (dataset, variant, seed) runs a params.yaml asks for, and which variants do
not apply to a dataset. The Snakefile and `maln aggregate` both ask this module, so the workflow
and the tables can never disagree about what should exist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maln.config import sweep_value
from maln.errors import ConfigError
from maln.data import layouts
from maln.data.shapes import has_oracle
from maln.model.variants import VARIANTS


RECOMMENDED = "recommended"  # the configuration whose rows and run folders carry no prefix


def label(configuration: str, variant: str) -> str:
    """A study row's name, and its run folder below the dataset: the variant, after its configuration
    unless that is the recommended one (`full`, `paper/full`)."""
    return variant if configuration == RECOMMENDED else f"{configuration}/{variant}"


def parse_label(text: str) -> tuple[str, str]:
    """label()'s inverse: (configuration, variant)."""
    configuration, _, variant = text.rpartition("/")
    return configuration or RECOMMENDED, variant


@dataclass(frozen=True)
class Cell:
    dataset: str
    variant: str  # the row's label: the variant, after its configuration (label())
    applicable: bool
    reason: str = ""  # why not, when not applicable

    @property
    def configuration(self) -> str:
        return parse_label(self.variant)[0]

    @property
    def model_variant(self) -> str:
        return parse_label(self.variant)[1]


def modalities(params_data: dict, dataset: str) -> tuple[str, ...]:
    return layouts.get(params_data["datasets"][dataset]["layout"]).modalities


def labels(params_data: dict) -> list[str]:
    """Every row label of the study: each configuration x variant."""
    study = params_data["study"]
    return [label(c, v) for c in study["configurations"] for v in study["variants"]]


def dataset_labels(params_data: dict, dataset: str) -> list[str]:
    """The rows a dataset trains: every configuration x variant, or those study.rows names for it."""
    every = labels(params_data)
    chosen = (params_data["study"].get("rows") or {}).get(dataset)
    if chosen is None:
        return every
    chosen = {label(*parse_label(r)) for r in chosen}  # `recommended/full` is the row `full`
    if not chosen & set(every):
        raise ConfigError(f"study.rows.{dataset}: none of its rows is a configuration x variant of the study "
                          f"(study.configurations, study.variants), so {dataset} would train nothing")
    return [r for r in every if r in chosen]


def cells(params_data: dict) -> list[Cell]:
    """Every dataset x row of the study (dataset_labels), applicable or not."""
    out = []
    for d in params_data["study"]["datasets"]:
        mods = modalities(params_data, d)
        for name in dataset_labels(params_data, d):
            variant = VARIANTS[parse_label(name)[1]]
            if variant.applicable(mods):
                out.append(Cell(d, name, True))
            else:
                need = f"no {variant.modality} modality" if variant.modality else "fewer than two modalities"
                out.append(Cell(d, name, False, need))
    return out


def runs(params_data: dict) -> list[tuple[str, str, int]]:
    """(dataset, row label, seed) of every run the study trains."""
    return [(c.dataset, c.variant, s) for c in cells(params_data) if c.applicable for s in params_data["study"]["seeds"]]


def seed_chunks(params_data: dict) -> list[tuple[int, ...]]:
    """The study's seeds cut into groups trained by one process each (study.seeds_per_job)."""
    seeds, n = params_data["study"]["seeds"], params_data["study"]["seeds_per_job"]
    return [tuple(seeds[i:i + n]) for i in range(0, len(seeds), n)]


# What a finished run leaves in its folder (maln/runs.py writes them); metrics.json is written last
# and marks completion.
RUN_FILES = ("predictions.csv", "valid_predictions.csv", "history.csv", "features.npz", "model.pt", "metrics.json")


def run_path(dataset: str, variant: str, seed: int) -> Path:
    """A run's folder; `variant` is the row label (`full`, `paper/full`)."""
    return Path("results") / "runs" / dataset / variant / f"seed{seed}"


def oracle_file(params_data: dict, dataset: str) -> str | None:
    """Where a dataset's exact Bayes oracle lies (maln/data/oracle.py has the format), as written in
    the registry, or None: your own file (`oracle: {path: ...}` on any registry entry), or the one
    `maln synth` writes beside a synthetic kind that has one (data/raw/NAME.oracle.npz)."""
    entry = params_data["datasets"][dataset]
    if "oracle" in entry:
        return entry["oracle"]["path"]
    if "synthetic" in entry and has_oracle(entry["synthetic"]):
        return f"data/raw/{dataset}.oracle.npz"
    return None


def baseline_path(dataset: str) -> Path:
    return Path("results") / "baselines" / f"{dataset}.json"


SWEEP_VARIANT = "full"  # what a sweep trains: the full model, on every study dataset, for every study seed


def sweep_runs(params_data: dict) -> list[tuple[str, str, str, int]]:
    """(key, value, dataset, seed) of every sweep job: params.yaml `sweep:` (key -> values)."""
    study = params_data["study"]
    return [(key, sweep_value(v), d, s) for key, values in (params_data.get("sweep") or {}).items()
            for v in values for d in study["datasets"]
            if VARIANTS[SWEEP_VARIANT].applicable(modalities(params_data, d)) for s in study["seeds"]]


def sweep_path(key: str, value: str, dataset: str, seed: int) -> Path:
    return Path("results") / "sweeps" / key / value / dataset / f"seed{seed}"


# What `maln aggregate` writes (the Snakefile declares these as the aggregate rule's outputs).
TABLES = ("main", "per_class", "ablation", "protocol", "invariance", "modality")
FIGURES = ("ablation", "confusion", "curves", "tsne", "per_class_f1")
TABLE_FORMATS = ("csv", "md", "tex", "html")


def report_outputs(params_data: dict | None = None) -> list[str]:
    """Every file `maln aggregate` writes; the sweep's only when the parameters ask for a sweep."""
    sweep = bool((params_data or {}).get("sweep"))
    return (["results/metrics.json"]
            + [f"results/tables/{t}.{ext}" for t in TABLES + (("sweep",) if sweep else ()) for ext in TABLE_FORMATS]
            + [f"results/figures/{f}.png" for f in FIGURES + (("sweep",) if sweep else ())])
