"""What each row of the main table is read against (issue 21).

- Oracle rows: on a synthetic dataset whose generator knows its own law (maln/data/fusion.py), the
  exact Bayes rules' test scores (maln/data/oracle.py): the joint rule (all modalities read
  together) and the best late fusion (the product of each modality's exact likelihood), each with
  the dialogue's context and without it. No model can beat the joint rule with context.
- Headroom share: how much of the fusion headroom a model captures, per seed,
  (model - trained late fusion) / (joint_context oracle - late_context oracle) in test WF1, where
  the trained late fusion is the study's own baseline of that seed (maln/report/ensemble.py). 0: no
  better than late-fusing the single-modality variants; 1: as far above them as the exact joint
  rule is above the exact late fusion. Mean and a Student-t interval over seeds.
- Linear floor: a network below the context-free logistic regression on the same inputs (its
  modality alone, or all concatenated for a multimodal variant) by mean test WF1 is flagged.
"""

from __future__ import annotations

import math

import numpy as np

from maln.data.oracle import MODALITY_RULE, oracle_scores, read_oracle
from maln.errors import MalnError
from maln.model.variants import MODALITY_ORDER
from maln.report.runs import Study

RULES = (("joint_context", "joint Bayes rule, with context"), ("joint_utterance", "joint Bayes rule, without context"),
         ("late_context", "best late fusion, with context"), ("late_utterance", "best late fusion, without context"))
SHARE_REFERENCE = "late_fusion"  # the trained late fusion the share counts from
# Below one WF1 point of headroom (a control dataset, where the exact late fusion is the joint
# rule) the share divides noise by almost nothing: n/a.
MIN_HEADROOM = 1.0
FLOOR_MARK = "†"
SHARE_KEYS = ("headroom_share_mean", "headroom_share_low", "headroom_share_high")


# -- the oracle files -----------------------------------------------------------------------------

def oracle_files(params) -> dict:
    """dataset -> its oracle file (maln.study.oracle_file, resolved under the project's path rules),
    for the study's datasets that have one: the aggregate rule's inputs."""
    from maln.study import oracle_file

    out = {}
    for d in params.data["study"]["datasets"]:
        path = oracle_file(params.data, d)
        if path is not None:
            out[d] = params.resolve(path, f"datasets.{d}.oracle.path")
    return out


def load_oracles(params) -> dict:
    """dataset -> {rule: {"weighted_f1", "accuracy"}, "test_labels": [count per class]} on the test
    split. Each oracle is checked against the dataset's store: the same classes and, utterance by
    utterance, the same test dialogues and emotions (an oracle of another draw or another split would
    score other utterances). A MalnError names the oracle files that are missing or do not fit."""
    from maln import io
    from maln.data.store import load_store

    files = oracle_files(params)
    missing = [f"{io.shown(p)} ({'`maln synth ' + d + '` writes it' if 'synthetic' in params.dataset(d) else 'datasets.' + d + '.oracle.path'})"
               for d, p in files.items() if not p.is_file()]
    if missing:
        raise MalnError("missing oracle file(s):\n  " + "\n  ".join(missing))
    out = {}
    for d, p in files.items():
        pin = params.dataset(d).get("oracle", {}).get("sha1")
        if pin and (got := io.file_hashes(p)["sha1"]) != pin:
            raise MalnError(f"{d}: {io.shown(p)} is not the pinned oracle: git blob SHA-1 {got}, expected {pin} "
                            f"(datasets.{d}.oracle.sha1)")
        z = read_oracle(p)
        check_oracle_split(d, z, load_store(params.root / "data" / "features" / d, verify=False))
        counts = np.bincount(z["label"][z["split"] == "test"], minlength=len(z["class_names"]))
        out[d] = {**oracle_scores(p, split="test"), "test_labels": counts.tolist()}
    return out


def check_oracle_split(dataset: str, oracle: dict, store) -> None:
    """The oracle's test rows must be the store's test utterances: the same class names, the same
    test dialogues, and in each the same emotions in order (rows sorted by `position`)."""
    names = [str(c) for c in oracle["class_names"]]
    if names != list(store.class_names):
        raise MalnError(f"{dataset}: its oracle's classes {names} are not its store's {list(store.class_names)}")
    if "dialogue" not in oracle or "position" not in oracle:
        raise MalnError(f"{dataset}: its oracle has no `dialogue` / `position` arrays, so its utterances cannot be "
                        "matched to the store's (maln/data/oracle.py gives the format)")
    labels, offsets = np.asarray(store.labels), np.asarray(store.offsets)
    want = {store.dialogue_ids[i]: labels[offsets[i]:offsets[i + 1]] for i in store.dialogues("test")}
    test = oracle["split"] == "test"
    dialogue, position, label = oracle["dialogue"][test].astype(str), oracle["position"][test], oracle["label"][test]
    got = {}
    for vid in np.unique(dialogue):
        rows = np.flatnonzero(dialogue == vid)
        got[str(vid)] = label[rows[np.argsort(position[rows], kind="stable")]]
    if set(got) != set(want):
        extra, absent = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        raise MalnError(f"{dataset}: its oracle's test dialogues are not its store's test split ("
                        f"{len(extra)} only in the oracle, e.g. {extra[:3]}; {len(absent)} only in the store, "
                        f"e.g. {absent[:3]})")
    differ = [vid for vid in want if not np.array_equal(got[vid], want[vid])]
    if differ:
        raise MalnError(f"{dataset}: its oracle's emotions differ from the store's in {len(differ)} test "
                        f"dialogue(s), e.g. {differ[:3]}; an oracle of another draw or file")


def check_oracles(study: Study) -> None:
    """Each oracle must score the runs' test utterances (the same emotions, as many of each): a raw
    file synthesised again with other settings after the runs would pair them with another draw."""
    for dataset, scores in study.oracles.items():
        run = next((r for c in study.variants(dataset) for r in study.get(dataset, c.variant)), None)
        counts = scores["test_labels"]
        if run is not None and np.bincount(run.gold, minlength=len(counts)).tolist() != counts:
            raise MalnError(f"{dataset}: its oracle's test split is not its runs' (emotion counts {counts} against "
                            f"{np.bincount(run.gold).tolist()}); synthesise, prepare and train it again")


# -- the headroom share -----------------------------------------------------------------------------

def headroom(scores: dict) -> float:
    """joint_context - late_context oracle, test WF1 points."""
    return 100 * (scores["joint_context"]["weighted_f1"] - scores["late_context"]["weighted_f1"])


def interval(values, confidence: float) -> dict:
    """Mean and Student-t interval of the mean over seeds (low = high = mean for one seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    half = 0.0 if len(v) < 2 else float(stats.t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"headroom_share_mean": mean, "headroom_share_low": mean - half, "headroom_share_high": mean + half,
            "headroom_share_n": len(v)}


def shares(study: Study, dataset: str, confidence: float) -> dict:
    """name (variant or baseline) -> interval() of its per-seed headroom share; empty when the
    dataset has no oracle, no trained late fusion, or no headroom."""
    scores = study.oracles.get(dataset)
    ref = next((b for b in study.baselines_of(dataset) if b.name == SHARE_REFERENCE), None)
    if scores is None or ref is None or headroom(scores) < MIN_HEADROOM:
        return {}
    gap = headroom(scores)
    late = {f["seed"]: 100 * f["test"]["weighted_f1"] for f in ref.fits}
    models = {c.variant: {r.seed: 100 * r.metrics["test"]["weighted_f1"] for r in study.get(dataset, c.variant)}
              for c in study.variants(dataset)}
    for b in study.baselines_of(dataset):
        # a deterministic fit is compared with every seed of the late fusion
        models[b.name] = ({f["seed"]: 100 * f["test"]["weighted_f1"] for f in b.fits} if b.seeded
                          else {s: 100 * b.fits[0]["test"]["weighted_f1"] for s in late})
    out = {}
    for name, by_seed in models.items():
        seeds = sorted(set(by_seed) & set(late))
        if seeds:
            out[name] = interval([(by_seed[s] - late[s]) / gap for s in seeds], confidence)
    return out


# -- the linear floor -----------------------------------------------------------------------------

def floors(study: Study, dataset: str) -> dict:
    """variant -> {"baseline", "baseline_wf1", "wf1", "below"}: each network's mean test WF1 against
    its context-free logistic regression on the same inputs (logreg_<m> for a single modality m,
    logreg_all for several)."""
    linear = {b.name: b for b in study.baselines_of(dataset) if b.name.startswith("logreg_")}
    out = {}
    for c in study.variants(dataset):
        runs = study.get(dataset, c.variant)
        if not runs:
            continue
        modalities = runs[0].metrics["modalities"]
        base = linear.get("logreg_all" if len(modalities) > 1 else f"logreg_{modalities[0]}")
        if base is None:
            continue
        wf1 = float(np.mean([100 * r.metrics["test"]["weighted_f1"] for r in runs]))
        ref = float(np.mean(base.scores("weighted_f1")))
        out[c.variant] = {"baseline": base.name, "baseline_wf1": ref, "wf1": wf1, "below": wf1 < ref}
    return out


def floor_log(study: Study) -> list[str]:
    """One line per network below its linear floor (for `maln aggregate`'s log)."""
    return [f"floor: {d}/{v} test WF1 {f['wf1']:.2f} is below {f['baseline']} ({f['baseline_wf1']:.2f}), "
            f"its context-free linear baseline on the same inputs" for d in study.datasets()
            for v, f in floors(study, d).items() if f["below"]]


# -- the main table ---------------------------------------------------------------------------------

def row_extras(share: dict | None, floor: dict | None = None) -> dict:
    """The columns a main-table row gains: its headroom share (nan: n/a) and its linear floor."""
    out = {k: (share or {}).get(k, math.nan) for k in SHARE_KEYS}
    out["below_linear_baseline"] = floor["baseline"] if floor and floor["below"] else ""
    return out


def oracle_rows(study: Study, dataset: str) -> list[dict]:
    scores = study.oracles.get(dataset)
    rows = []
    for rule, text in RULES if scores else ():
        rows.append({"dataset": dataset, "variant": f"oracle: {text}", "kind": "oracle", "n": 0,
                     "note": "exact Bayes rule of the generator", "test_acc_mean": 100 * scores[rule]["accuracy"],
                     "test_acc_std": math.nan, "test_wf1_mean": 100 * scores[rule]["weighted_f1"],
                     "test_wf1_std": math.nan, "test_mf1_mean": math.nan, "test_mf1_std": math.nan,
                     **row_extras(None)})
    return rows


def modality_oracle_rows(study: Study) -> list[dict]:
    """The modality table's oracle rows, where a dataset has an oracle: each modality's exact rule alone
    (the best expected accuracy of any model of that modality: a bound on WAA, not on WF1, which
    another decision rule can raise at accuracy's cost), the joint rule and the best late fusion, all
    with the dialogue's context."""
    rules = [(MODALITY_RULE.format(m), f"{m[0].upper()}, exact Bayes rule alone, with context (oracle)")
             for m in MODALITY_ORDER] + [(r, f"all, {t} (oracle)") for r, t in RULES if r.endswith("_context")]
    rows = []
    for rule, text in rules if study.oracles else ():
        row = {"modality": text, "variant": f"oracle_{rule}"}
        for d in study.datasets():
            s = study.oracles.get(d, {}).get(rule)
            row[f"{d}_modalities"] = ""
            row[f"{d}_waa_mean"], row[f"{d}_wf1_mean"] = (100 * s["accuracy"], 100 * s["weighted_f1"]) if s else (math.nan,) * 2
            row[f"{d}_waa_std"] = row[f"{d}_wf1_std"] = math.nan
            row[f"{d}_note"] = "" if s else "n/a"
        rows.append(row)
    return rows


def _share(r: dict) -> str:
    m = r.get("headroom_share_mean", math.nan)
    if m is None or math.isnan(m):
        return "n/a"
    lo, hi = r["headroom_share_low"], r["headroom_share_high"]
    return f"{m:+.2f}" if math.isclose(lo, hi, abs_tol=1e-9) else f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def main_layout(rows: list[dict], fmt, scores: dict, confidence: float) -> tuple[list, list, str]:
    """Header, body and the caption's added sentences of the main table; `fmt(mean, std)` formats
    a score; `scores`: short name -> column title. The share column appears when some dataset has
    a share."""
    with_share = any(not math.isnan(r.get("headroom_share_mean", math.nan)) for r in rows)
    header = ["Dataset", "Variant", "n", *scores.values()] + (["Headroom share"] if with_share else [])
    body = []
    for r in rows:
        cells = [fmt(r[f"test_{s}_mean"], r[f"test_{s}_std"]) for s in scores]
        if r.get("below_linear_baseline"):
            cells[list(scores).index("wf1")] += f" {FLOOR_MARK}"
        body.append([r["dataset"], r["variant"], str(r["n"]) if r["n"] else "–", *cells]
                    + ([_share(r)] if with_share else []))
    notes = ""
    if any(r["kind"] == "oracle" for r in rows):
        notes += (" Rows 'oracle:' are the exact Bayes rules of the synthetic generator on the same test split "
                  "(maln/data/oracle.py): all modalities read jointly, or the best late fusion (the product of "
                  "each modality's exact likelihood), with the dialogue's context or without.")
    if with_share:
        notes += (f" Headroom share: (model - trained late fusion) / (joint-with-context oracle - late-fusion-with-"
                  f"context oracle) in test WF1, per seed (the trained late fusion of the same seed), mean "
                  f"[{round(100 * confidence)}% Student-t interval over seeds]; 0 = no better than late-fusing the "
                  f"single-modality variants, 1 = all of the headroom; n/a without an oracle or with under "
                  f"{MIN_HEADROOM:g} WF1 point of headroom.")
    flagged = [f"{r['dataset']}/{r['variant']} (below {r['below_linear_baseline']})" for r in rows
               if r.get("below_linear_baseline")]
    if flagged:
        notes += (f" {FLOOR_MARK} below its context-free logistic regression on the same inputs (logreg_text, _audio "
                  f"or _visual for one modality, logreg_all for several) by mean test WF1: {', '.join(flagged)}.")
    return header, body, notes
