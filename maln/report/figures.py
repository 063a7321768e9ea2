"""The figures a reader of the paper expects, in one style: Okabe-Ito colours (safe for colour-blind
readers), labelled axes with units, one panel per dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maln import io
from maln.model.variants import VARIANTS
from maln.report.runs import Study
from maln.study import RECOMMENDED, parse_label

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
VARIANT_COLOURS = dict(zip(VARIANTS, OKABE_ITO))
MODALITY_COLOURS = {"text": "#0072B2", "audio": "#E69F00", "visual": "#009E73"}


def _colour(label: str) -> str:
    """A row's colour is its variant's, in every configuration; other configurations than the
    recommended one are drawn hatched (bars) or dashed (lines)."""
    return VARIANT_COLOURS[parse_label(label)[1]]


def _recommended(label: str) -> bool:
    return parse_label(label)[0] == RECOMMENDED


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "legend.frameon": False, "savefig.bbox": "tight",
    })
    return plt


def _save(fig, path: Path) -> None:
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)


def _panels(plt, n, width=5.2, height=3.6, rows=1):
    fig, axes = plt.subplots(rows, n, figsize=(width * n, height * rows), squeeze=False)
    return fig, axes


def _variant_legend(fig, study: Study, below: float = -0.06) -> None:
    """One legend for the whole figure, with every variant that has runs in any panel."""
    from matplotlib.patches import Patch

    labels = list(dict.fromkeys(c.variant for c in study.cells if study.get(c.dataset, c.variant)))
    shown = [v for v in VARIANTS if any(parse_label(x)[1] == v for x in labels)]
    others = sorted({parse_label(x)[0] for x in labels} - {RECOMMENDED})
    handles = [Patch(color=VARIANT_COLOURS[v], label=v) for v in shown] + [
        Patch(facecolor="white", edgecolor="0.3", hatch="..", label=f"{c}/… (hatched, dashed)") for c in others]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, below), fontsize=9)


def ablation_bars(study: Study, path: Path, note: str) -> None:
    """Test WF1 per variant: bar = mean over seeds, error bar = std, dots = individual seeds; then the
    baselines (hatched)."""
    plt = _plt()
    datasets = study.datasets()
    # each panel as wide as its bars (synthetic-iemocap has 20, -nuisance 11), tick labels upright:
    # slanted, the long ones (paper/no_adversary, logreg_all_chain) ran into each other
    bars = [max(1, len(study.variants(d)) + len(study.baselines_of(d))) for d in datasets]
    fig, axes = plt.subplots(1, len(datasets), figsize=(0.34 * sum(bars) + 1.0 * len(datasets), 4.0), squeeze=False,
                             gridspec_kw={"width_ratios": bars})
    rng = np.random.default_rng(0)
    for ax, dataset in zip(axes[0], datasets):
        cells = study.variants(dataset)
        for i, c in enumerate(cells):
            runs = study.get(dataset, c.variant)
            if not runs:
                ax.text(i, 4, "n/a", ha="center", va="bottom", color="0.35", fontsize=10)
                continue
            values = np.array([100 * r.metrics["test"]["weighted_f1"] for r in runs])
            colour, plain = _colour(c.variant), _recommended(c.variant)
            ax.bar(i, values.mean(), color=colour if plain else "white", alpha=0.75 if plain else 1.0, width=0.7,
                   edgecolor=colour, hatch=None if plain else "..",
                   yerr=values.std(ddof=1) if len(values) > 1 else None, capsize=4, ecolor="0.2")
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=14, color="black", zorder=3,
                       label="one seed" if i == 0 else None)
        # the baselines beside the variants: one deterministic fit each, hatched; the concatenated
        # regression also as a line across the panel, so "does MALN beat a linear model" reads at a glance
        baselines = study.baselines_of(dataset)
        for k, b in enumerate(baselines):
            scores = np.array(b.scores("weighted_f1"))
            value = scores.mean()
            ax.bar(len(cells) + 0.5 + k, value, color="0.82", edgecolor="0.35", hatch="///", width=0.7,
                   yerr=scores.std(ddof=1) if len(scores) > 1 else None, capsize=4, ecolor="0.2",
                   label="baseline" if k == 0 else None)
            if len(scores) > 1:
                ax.scatter(len(cells) + 0.5 + k + rng.uniform(-0.15, 0.15, len(scores)), scores, s=14, color="black",
                           zorder=3)
            if b.name == "logreg_all":
                ax.axhline(value, color="0.35", ls="--", lw=1, zorder=0, label="logreg_all")
        ticks = list(range(len(cells))) + [len(cells) + 0.5 + k for k in range(len(baselines))]
        ax.set_xticks(ticks, [c.variant for c in cells] + [b.name for b in baselines], rotation=90)
        ax.set_xlim(-0.6, len(ticks) + (0.1 if baselines else -0.4))
        ax.set_ylabel("test weighted F1 (%)")
        ax.set_title(dataset)
        ax.set_ylim(0, 100)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.canvas.draw()  # the legend goes just below the lowest tick label, wherever the labels end
    bottom = min(ax.get_tightbbox().transformed(fig.transFigure.inverted()).y0 for ax in axes[0])
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, bottom - 0.01), fontsize=9)
    fig.suptitle(f"Ablations: mean ± std over seeds, dots = seeds ({note})", fontsize=10)
    _save(fig, path)


def confusion_matrices(study: Study, path: Path, note: str, variant: str = "full") -> None:
    """The full model's confusion matrix per dataset, summed over seeds, rows normalised to 100 %."""
    plt = _plt()
    datasets = [d for d in study.datasets() if study.get(d, variant)]
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.0 * max(1, len(datasets)) + 1, 4.6),
                             squeeze=False, layout="constrained")
    im = None
    for ax, dataset in zip(axes[0], datasets):
        runs = study.get(dataset, variant)
        names = runs[0].class_names
        cm = np.sum([np.array(r.metrics["test"]["confusion"]) for r in runs], axis=0).astype(float)
        norm = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
        im = ax.imshow(norm, cmap="cividis", vmin=0, vmax=100)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{norm[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="black" if norm[i, j] > 55 else "white")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted emotion")
        ax.set_ylabel("gold emotion")
        ax.set_title(f"{dataset} ({len(runs)} seeds)")
        ax.grid(False)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.02, label="share of the gold emotion (%)")
    fig.suptitle(f"Full model, normalised confusion matrices ({note})", fontsize=10)
    _save(fig, path)


def training_curves(study: Study, path: Path, note: str) -> None:
    """Training cross-entropy of the emotion classifier (comparable across variants, unlike the
    total loss) and validation WF1 per epoch: mean over seeds, band = min..max over seeds."""
    plt = _plt()
    datasets = study.datasets()
    fig, axes = _panels(plt, len(datasets), height=3.2, rows=2)
    for col, dataset in enumerate(datasets):
        for c in study.variants(dataset):
            runs = study.get(dataset, c.variant)
            if not runs:
                continue
            n = min(len(r.history) for r in runs)
            epochs = np.arange(1, n + 1)
            for row, (key, scale) in enumerate((("ce", 1.0), ("valid_weighted_f1", 100.0))):
                values = scale * np.array([[h[key] for h in r.history[:n]] for r in runs])
                colour = _colour(c.variant)
                axes[row][col].plot(epochs, values.mean(0), color=colour, label=c.variant, lw=1.6,
                                    ls="-" if _recommended(c.variant) else "--")
                axes[row][col].fill_between(epochs, values.min(0), values.max(0), color=colour, alpha=0.15, lw=0)
        axes[0][col].set_title(dataset)
        axes[0][col].set_ylabel("training cross-entropy")
        axes[1][col].set_ylabel("validation weighted F1 (%)")
        axes[1][col].set_xlabel("epoch")
    _variant_legend(fig, study)
    fig.suptitle(f"Training curves: mean over seeds, band = min..max ({note})", fontsize=10)
    _save(fig, path)


def per_class_f1(study: Study, path: Path, note: str) -> None:
    """Per-emotion test F1 of every variant of the recommended configuration and of every other
    configuration's full model (mean over seeds)."""
    plt = _plt()
    datasets = study.datasets()
    fig, axes = _panels(plt, len(datasets), width=6.0)
    for ax, dataset in zip(axes[0], datasets):
        present = [c for c in study.variants(dataset) if study.get(dataset, c.variant)
                   and (_recommended(c.variant) or c.model_variant == "full")]
        if not present:
            continue
        names = study.get(dataset, present[0].variant)[0].class_names
        width = 0.8 / len(present)
        for k, c in enumerate(present):
            runs = study.get(dataset, c.variant)
            f1 = [np.mean([100 * r.metrics["test"]["per_class"][e]["f1"] for r in runs]) for e in names]
            colour, plain = _colour(c.variant), _recommended(c.variant)
            ax.bar(np.arange(len(names)) + (k - (len(present) - 1) / 2) * width, f1, width,
                   color=colour if plain else "white", edgecolor=colour, hatch=None if plain else "..", label=c.variant)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel("test F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(dataset)
    _variant_legend(fig, study, below=-0.16)
    fig.suptitle(f"Per-emotion F1 by variant, mean over seeds ({note})", fontsize=10)
    _save(fig, path)


def sweep_curves(sweep: dict, path: Path, note: str) -> None:
    """One panel per swept key: validation (dashed) and test (solid) WF1 against the value, mean ±
    std over seeds, one colour per dataset; values are evenly spaced, in the order given."""
    plt = _plt()
    keys = list(sweep)
    fig, axes = _panels(plt, len(keys), width=5.6)
    for ax, key in zip(axes[0], keys):
        values = list(sweep[key])
        datasets = list(dict.fromkeys(d for v in values for d in sweep[key][v]))
        for i, dataset in enumerate(datasets):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            for split, style in (("valid", "--"), ("test", "-")):
                stats = [np.array([100 * r[split]["weighted_f1"] for r in sweep[key][v].get(dataset, [])]) for v in values]
                mean = [s.mean() if len(s) else np.nan for s in stats]
                std = [s.std(ddof=1) if len(s) > 1 else 0.0 for s in stats]
                ax.errorbar(range(len(values)), mean, yerr=std, color=colour, ls=style, marker="o", ms=4, capsize=3,
                            label=f"{dataset} {'validation' if split == 'valid' else 'test'}")
        ax.set_xticks(range(len(values)), values)
        ax.set_xlabel(key)
        ax.set_ylabel("weighted F1 (%)")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.suptitle(f"Sensitivity: full model, mean ± std over seeds; dashed = validation, solid = test ({note})",
                 fontsize=10)
    _save(fig, path)
