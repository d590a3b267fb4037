"""Seed summaries, paired significance tests, the chance test and each row's change against its parent.

What the reports concluded, restated as comparisons and checked with these tests, is in claims.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import synth

Predictions = Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]]

METRICS = ("train_acc", "val_acc", "test_acc", "test_loss")

# What data a run recorded (result.json's "data"), as results' "data_kind" column holds it. Only runs on
# real photos can say anything about CNNs on food: a comparison with a synthetic or unrecorded side gets
# no verdict, it reads as what it is (its statistics are still computed and shown).
REAL, SYNTHETIC, UNKNOWN = "real", "synthetic", "unknown"
NO_VERDICT = {SYNTHETIC: "pipeline check (synthetic)", UNKNOWN: "no verdict (data not recorded)"}


@dataclass(frozen=True)
class McNemarResult:
    b: int  # a right, b wrong
    c: int  # a wrong, b right
    statistic: float  # continuity-corrected chi-square, reported beside the exact p
    p_value: float  # exact two-sided binomial test on the b + c discordant pairs


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    child: str
    parent: str
    n_seeds_child: int
    n_seeds_parent: int
    n_images: int
    child_acc: float  # mean over seeds, fraction
    parent_acc: float
    interval: Interval  # child - parent accuracy, fraction
    mcnemar: McNemarResult
    verdict: str  # "better", "worse" or "no detectable difference"

    @property
    def delta(self) -> float:
        """Return the mean test-accuracy difference child - parent (fraction)."""
        return self.interval.estimate


# --------------------------------------------------------------------------- data provenance


def data_kind(provenance: Mapping | None) -> str:
    """Return "real", "synthetic" or "unknown" for the data provenance one run recorded (Subset.provenance())."""
    if not provenance or "synthetic" not in provenance:
        return UNKNOWN
    if provenance["synthetic"] or synth.names_synthetic(provenance.get("classes") or []):
        return SYNTHETIC
    return REAL


def runs_data_kind(results: pd.DataFrame, ids: tuple[str, ...] | list[str]) -> str:
    """Return REAL only when every run of these ids recorded real data; SYNTHETIC when any used synthetic data."""
    if "data_kind" not in results.columns:
        return UNKNOWN
    kinds = set(results.loc[results["id"].isin(list(ids)), "data_kind"])
    if SYNTHETIC in kinds:
        return SYNTHETIC
    return REAL if kinds == {REAL} else UNKNOWN


# --------------------------------------------------------------------------- significance tests


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Return McNemar's exact test of two classifiers scored on the same images."""
    right_a = np.asarray(correct_a, dtype=bool).ravel()
    right_b = np.asarray(correct_b, dtype=bool).ravel()
    if right_a.shape != right_b.shape:
        raise ValueError(f"correct_a has {right_a.size} images, correct_b {right_b.size}")
    b = int(np.count_nonzero(right_a & ~right_b))
    c = int(np.count_nonzero(~right_a & right_b))
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0)
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    from scipy.stats import binomtest  # here: importing scipy.stats at the top would slow every training notebook's start

    p = binomtest(min(b, c), n, 0.5).pvalue  # exact, two-sided: 2 P(X <= min(b, c)), at most 1
    return McNemarResult(b, c, float(statistic), float(p))


def above_chance_p(correct: int, n: int, num_classes: int) -> float:
    """Return the exact one-sided binomial p of `correct` right out of n when guessing gets 1/num_classes right."""
    if n <= 0 or num_classes < 1:
        return float("nan")
    from scipy.stats import binomtest  # here: importing scipy.stats at the top would slow every training notebook's start

    return float(binomtest(int(correct), int(n), 1.0 / num_classes, alternative="greater").pvalue)


def chance_table(results: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Return per id: chance accuracy (1/classes), the exact binomial p of its mean test accuracy, and at_chance.

    results needs "num_classes" and "n_test" (test images scored) per run. The mean accuracy over seeds is
    tested as one run on the n test images: seeds score the same images, so pooling them would count each
    image several times. at_chance is True when p >= alpha: the accuracy is not distinguishable from guessing.
    """
    rows = []
    for exp_id, g in results.groupby("id", sort=False):
        acc, n, k = g["test_acc"].astype(float).mean(), g["n_test"].min(), g["num_classes"].max()
        if pd.isna(acc) or pd.isna(n) or pd.isna(k) or n <= 0:
            rows.append({"id": exp_id, "chance": np.nan, "chance_p": np.nan, "at_chance": False})
            continue
        p = above_chance_p(round(acc * n), int(n), int(k))
        rows.append({"id": exp_id, "chance": 1.0 / k, "chance_p": p, "at_chance": bool(p >= alpha)})
    return pd.DataFrame(rows, columns=["id", "chance", "chance_p", "at_chance"])


def paired_bootstrap(
    correct_child: np.ndarray,
    correct_parent: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    paired_seeds: bool = False,
) -> Interval:
    """Return the accuracy difference child - parent with a hierarchical paired bootstrap interval.

    Rows are seed-runs, columns the same test images on both sides. Each draw resamples the
    images once (shared by both sides: the pairing) and, per side, as many seed-runs as that
    side has, with replacement; the draw's statistic is the difference of the mean accuracies.
    With paired_seeds (row k of both sides ran with the same seed) the draw picks the same rows
    on both sides, so seed-to-seed variation common to both does not widen the interval.
    With one seed per side this is the ordinary paired bootstrap over images.
    """
    child = np.atleast_2d(np.asarray(correct_child, dtype=bool))
    parent = np.atleast_2d(np.asarray(correct_parent, dtype=bool))
    if child.shape[1] != parent.shape[1]:
        raise ValueError(f"child has {child.shape[1]} images, parent {parent.shape[1]}")
    s_c, n = child.shape
    s_p = parent.shape[0]
    if paired_seeds and s_c != s_p:
        raise ValueError(f"paired_seeds needs as many child runs ({s_c}) as parent runs ({s_p})")
    estimate = float(child.mean() - parent.mean())
    rng = np.random.default_rng(seed)
    scores = np.concatenate([child, parent]).T.astype(np.float32)  # (N, S + S')
    diffs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        # Image counts per draw (a multinomial via bincount), then accuracy of every run.
        idx = rng.integers(0, n, size=(m, n)) + (np.arange(m) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(np.float32)
        acc = counts @ scores / n  # (m, S + S')
        pick_c = rng.integers(0, s_c, size=(m, s_c))
        pick_p = s_c + (pick_c if paired_seeds else rng.integers(0, s_p, size=(m, s_p)))
        child_acc = np.take_along_axis(acc, pick_c, 1).mean(1)
        parent_acc = np.take_along_axis(acc, pick_p, 1).mean(1)
        diffs[start : start + m] = child_acc - parent_acc
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high))


# --------------------------------------------------------------------------- comparisons


def _runs(exp_id: str, predictions: Predictions) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Return the (y_true, y_pred) of every saved run of one experiment id, keyed by seed."""
    return {seed: predictions[(i, seed)] for (i, seed) in sorted(predictions) if i == exp_id}


def _correct(exp_id: str, runs: dict[int, tuple[np.ndarray, np.ndarray]], y_ref: np.ndarray) -> np.ndarray:
    """Return the (seeds, images) correctness matrix, checking every run saw the same test images."""
    rows = []
    for seed, (y_true, y_pred) in runs.items():
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if y_true.shape != y_ref.shape or not np.array_equal(y_true, y_ref):
            raise ValueError(f"run ({exp_id!r}, {seed}) has different test labels from the others")
        if y_pred.shape != y_true.shape:
            raise ValueError(f"run ({exp_id!r}, {seed}): {y_pred.size} predictions for {y_true.size} images")
        rows.append(y_pred == y_true)
    return np.stack(rows)


def verdict(interval: Interval, p_value: float, alpha: float = 0.05) -> str:
    """Return "better"/"worse" when the interval excludes 0 and p < alpha, else "no detectable difference"."""
    if p_value < alpha and interval.low > 0:
        return "better"
    if p_value < alpha and interval.high < 0:
        return "worse"
    return "no detectable difference"


def compare(
    child_id: str,
    parent_id: str,
    predictions: Predictions,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    alpha: float = 0.05,
) -> Comparison:
    """Return child vs parent on the test set: accuracy difference, bootstrap interval, McNemar, verdict.

    McNemar pools seeds by adding up the discordant pairs of seed-k-vs-seed-k runs over the seeds
    both sides share; when they share none, runs are paired in sorted seed order (the extra runs of
    the larger side only enter the bootstrap). Pooling counts each image once per seed pair, so
    its p is optimistic when seeds agree on which images are hard; that is why a call also needs
    the hierarchical bootstrap interval, which resamples images and seeds, to exclude 0. The
    bootstrap resamples seed pairs when both sides ran exactly the same seeds, else each side's
    seeds independently.
    """
    child_runs, parent_runs = _runs(child_id, predictions), _runs(parent_id, predictions)
    for exp_id, runs in ((child_id, child_runs), (parent_id, parent_runs)):
        if not runs:
            raise KeyError(f"no saved predictions for {exp_id!r}")
    y_ref = np.asarray(next(iter(child_runs.values()))[0])
    child = _correct(child_id, child_runs, y_ref)
    parent = _correct(parent_id, parent_runs, y_ref)
    child_seeds, parent_seeds = list(child_runs), list(parent_runs)
    shared = [s for s in child_seeds if s in parent_runs]
    if shared:
        pairs = [(child_seeds.index(s), parent_seeds.index(s)) for s in shared]
    else:
        pairs = list(zip(range(len(child_seeds)), range(len(parent_seeds))))
    ci_idx, pi_idx = (list(t) for t in zip(*pairs))
    # Argument order: b counts images the parent gets right and the child wrong.
    test = mcnemar(parent[pi_idx].ravel(), child[ci_idx].ravel())
    same_seeds = child_seeds == parent_seeds
    interval = paired_bootstrap(child, parent, n_boot=n_boot, seed=seed, ci=ci, paired_seeds=same_seeds)
    return Comparison(
        child=child_id,
        parent=parent_id,
        n_seeds_child=len(child_seeds),
        n_seeds_parent=len(parent_seeds),
        n_images=int(y_ref.size),
        child_acc=float(child.mean()),
        parent_acc=float(parent.mean()),
        interval=interval,
        mcnemar=test,
        verdict=verdict(interval, test.p_value, alpha),
    )


# --------------------------------------------------------------------------- tables


def mean_sd(mean: float, std: float, digits: int = 2) -> str:
    """Return "mean ± sd", the mean alone where sd is NaN (one seed), or "—" where there is no mean."""
    if pd.isna(mean):
        return "—"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Return one row per id: n_seeds, mean and std (ddof=1) of each metric, "mean ± sd" test acc in %."""
    metrics = [m for m in METRICS if m in results.columns]
    groups = results.groupby("id", sort=False)
    out = pd.DataFrame({"n_seeds": groups["seed"].nunique()})
    if "parent" in results.columns:
        out.insert(0, "parent", groups["parent"].first())
    for m in metrics:
        out[f"{m}_mean"] = groups[m].mean()
        out[f"{m}_std"] = groups[m].std(ddof=1)  # NaN for a single seed
    if "test_acc" in metrics:
        out["test_acc_pm"] = [mean_sd(100 * m, 100 * s) for m, s in zip(out["test_acc_mean"], out["test_acc_std"])]
    return out.reset_index()


def has_predictions(exp_id: str, predictions: Predictions) -> bool:
    """Return whether any run of exp_id saved its test predictions."""
    return any(i == exp_id for i, _ in predictions)


def ablation_table(results: pd.DataFrame, predictions: Predictions, **kwargs) -> pd.DataFrame:
    """Return child vs parent (delta, CI in pp, McNemar p, verdict) for every id whose parent was run.

    Rows whose runs saved no predictions keep the delta of the mean test accuracies from `results`
    and get verdict "no predictions". A comparison not made on real data on both sides (runs_data_kind)
    reads NO_VERDICT instead of better/worse. kwargs go to compare().
    """
    summary = seed_summary(results).set_index("id")
    rows = []
    for exp_id, row in summary.iterrows():
        parent = row.get("parent")
        if not isinstance(parent, str) or parent not in summary.index:
            continue
        kind = runs_data_kind(results, (exp_id, parent))
        base = {"id": exp_id, "parent": parent, "n_seeds": int(row["n_seeds"]),
                "parent_n_seeds": int(summary.loc[parent, "n_seeds"]), "data": kind}
        if has_predictions(exp_id, predictions) and has_predictions(parent, predictions):
            c = compare(exp_id, parent, predictions, **kwargs)
            base |= {"delta_pp": 100 * c.delta, "ci_low_pp": 100 * c.interval.low,
                     "ci_high_pp": 100 * c.interval.high, "p_value": c.mcnemar.p_value,
                     "verdict": c.verdict if kind == REAL else NO_VERDICT[kind]}
        else:
            delta = row["test_acc_mean"] - summary.loc[parent, "test_acc_mean"]
            base |= {"delta_pp": 100 * delta, "ci_low_pp": np.nan, "ci_high_pp": np.nan,
                     "p_value": np.nan, "verdict": "no predictions"}
        rows.append(base)
    columns = ["id", "parent", "n_seeds", "parent_n_seeds", "data", "delta_pp", "ci_low_pp", "ci_high_pp",
               "p_value", "verdict"]
    return pd.DataFrame(rows, columns=columns)
