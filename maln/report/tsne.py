"""The t-SNE figure of the decomposition (results/figures/tsne.png): each dataset's test-set common
and specific features, by modality and by emotion, titled with the run's out-of-sample probes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maln.report.figures import MODALITY_COLOURS, OKABE_ITO, _plt, _recommended, _save
from maln.report.runs import Study


def _pair(p: dict, key: str) -> str:
    """A probe's accuracy, linear / MLP (the MLP's only when the run recorded one)."""
    mlp = p.get(f"{key}_mlp")
    return f"{100 * p[key]:.0f}" + ("" if mlp is None else f" / {100 * mlp:.0f}") + "%"


def _probe_title(run) -> str:
    p = run.metrics.get("invariance")
    if not p:
        return ""
    return (f"modality probe on held-out test dialogues, linear / MLP:\ncommon "
            f"{_pair(p, 'common_modality_accuracy')}, specific {_pair(p, 'specific_modality_accuracy')} "
            f"(chance {100 * p['chance']:.0f}%)")


# 250 of them with early exaggeration, then 250 more: the layout of a few thousand points has
# settled; scikit-learn's 1000 took 42 of the aggregate's 60 s for the default study.
TSNE_ITERATIONS = 500


def _embed(points: np.ndarray, seed: int) -> np.ndarray:
    """One t-SNE layout, on one thread (OpenMP and BLAS): scikit-learn's Barnes-Hut gradient sums in
    as many threads as the machine has cores, so the layout would depend on the machine."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=30, max_iter=TSNE_ITERATIONS,
                    random_state=seed).fit_transform(points)


def _embed_all(point_sets: dict, seed: int, workers: int | None = None) -> dict:
    """The layouts of every point set, in `workers` processes (default: one per CPU this process may
    use): each is single-threaded, so running them side by side changes no layout (the aggregate's
    slowest part: 20 of its 31 s on 2 CPUs)."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(point_sets), workers or cpus)
    if workers < 2:
        return {k: _embed(v, seed) for k, v in point_sets.items()}
    with ProcessPoolExecutor(workers) as pool:
        futures = {k: pool.submit(_embed, v, seed) for k, v in point_sets.items()}
        return {k: f.result() for k, f in futures.items()}


def _points(features: dict, pick) -> tuple:
    """The picked utterances' test features as t-SNE points (specific, then common), with each point's
    kind, modality and emotion."""
    specific, common, gold, modalities = features["specific"], features["common"], features["gold"], features["modalities"]
    m = len(modalities)
    points = np.concatenate([specific[pick].reshape(-1, specific.shape[-1]), common[pick].reshape(-1, common.shape[-1])])
    kind = np.repeat(["specific", "common"], len(pick) * m)
    modality = np.tile(np.tile(modalities, len(pick)), 2)
    emotion = np.tile(np.repeat(gold[pick], m), 2)
    return points, kind, modality, emotion, modalities


def _features(run) -> dict:
    with np.load(run.path / "features.npz", allow_pickle=False) as f:
        return {"specific": f["specific"].astype(np.float32), "common": f["common"].astype(np.float32),
                "gold": f["gold"], "modalities": [str(m) for m in f["modalities"]]}


def tsne_decomposition(study: Study, path: Path, note: str, n_utterances: int, seed: int,
                       workers: int | None = None) -> None:
    """t-SNE of the test-set common and specific features (first seed), per dataset: the full model
    by modality (filled = specific, hollow = common), the same for no_adversary when the study has
    it (what the adversary changes), and the full model by emotion. Invariant common features of
    different modalities mingle; each panel's title gives that run's probe accuracies, linear and
    MLP, fitted and scored on disjoint test dialogues (maln/probes.py). Other configurations' full
    models (paper/full) get a by-modality panel of their own. `workers`: processes for the layouts."""
    plt = _plt()
    datasets = [d for d in study.datasets() if study.get(d, "full")]
    # by modality: the full model, no_adversary (what the adversary changes), other configurations' full model
    by_modality = ["full", "no_adversary"] + list(dict.fromkeys(
        c.variant for c in study.cells if c.model_variant == "full" and not _recommended(c.variant)))
    columns = 1 + max([sum(bool(study.get(d, v)) for v in by_modality) for d in datasets], default=1)
    fig, axes = plt.subplots(max(1, len(datasets)), columns, figsize=(5.4 * columns, 5.6 * max(1, len(datasets))),
                             squeeze=False)
    rng = np.random.default_rng(seed)
    points = {}  # (dataset, variant) -> _points(); the full model's layout serves both of its panels
    for dataset in datasets:
        pick = None  # the same utterances in each of the dataset's panels
        for variant in [v for v in by_modality if study.get(dataset, v)]:
            features = _features(study.get(dataset, variant)[0])
            if pick is None:
                n = len(features["gold"])
                pick = rng.choice(n, size=min(n_utterances, n), replace=False)
            points[dataset, variant] = _points(features, pick)
    layouts = _embed_all({k: v[0] for k, v in points.items()}, seed, workers)
    for row, dataset in enumerate(datasets):
        panels = [(v, "by modality") for v in by_modality if study.get(dataset, v)]
        for col, (variant, _) in enumerate(panels + [("full", "by emotion")]):
            run = study.get(dataset, variant)[0]
            _, kind, modality, emotion, modalities = points[dataset, variant]
            xy = layouts[dataset, variant]
            ax = axes[row][col]
            if col < len(panels):
                for name in modalities:
                    for k, hollow in (("specific", False), ("common", True)):
                        sel = (modality == name) & (kind == k)
                        colour = MODALITY_COLOURS.get(name, "0.3")
                        ax.scatter(*xy[sel].T, s=9, linewidths=0.8, label=f"{name} {k}",
                                   facecolors="none" if hollow else colour, edgecolors=colour, alpha=0.8)
                ax.set_title(f"{dataset}, {variant}: by modality\n{_probe_title(run)}", fontsize=9)
            else:
                for e, name in enumerate(run.class_names):
                    sel = emotion == e
                    ax.scatter(*xy[sel].T, s=8, color=OKABE_ITO[e % len(OKABE_ITO)], label=name, alpha=0.8)
                p = run.metrics.get("invariance")
                extra = f"\nemotion probe on common (linear / MLP): {_pair(p, 'common_emotion_accuracy')}" if p else ""
                ax.set_title(f"{dataset}, full: by emotion{extra}", fontsize=9)
            # below the panel, not over its points
            ax.legend(fontsize=7, markerscale=1.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.17),
                      frameon=False)
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
        for col in range(len(panels) + 1, columns):
            axes[row][col].set_visible(False)
    # in inches from the top, whatever the figure's height (the default margins are fractions of it):
    # the title in the first 0.4, the first row's three-line panel titles below it
    height = fig.get_figheight()
    fig.subplots_adjust(hspace=0.7, wspace=0.22, top=1 - 1.4 / height)
    first = study.get(datasets[0], "full")[0].seed if datasets else "-"
    fig.suptitle(f"Decomposition of the test features, seed {first} ({n_utterances} utterances per dataset; "
                 f"filled = specific, hollow = common; {note})", fontsize=10, y=1 - 0.2 / height, va="top")
    _save(fig, path)
