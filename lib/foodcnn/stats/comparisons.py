"""Seed summaries, each row's change against its parent on the same test images, and the chance test.

The statistics themselves are in inference.py, the lining up of two rows' test images in pairing.py; what the reports
concluded, restated as comparisons and checked with these tests, is in claims.py and findings.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import synth
from .inference import ALPHA, POWER, Interval, McNemarResult, Paired, above_chance_p, holm, mcnemar, paired
from .pairing import PairingError, Predictions, Scored, align, has_predictions

__all__ = ["ALPHA", "POWER", "Interval", "McNemarResult", "Paired", "PairingError", "Predictions", "Scored",
           "above_chance_p", "has_predictions", "mcnemar"]  # re-exported: one door to the statistics

METRICS = ("train_acc", "val_acc", "test_acc", "test_loss")

# What data a run recorded (result.json's "data"), as results' "data_kind" column holds it. Only runs on
# real photos can say anything about CNNs on food: a comparison with a synthetic or unrecorded side gets
# no verdict, it reads as what it is (its statistics are still computed and shown).
REAL, SYNTHETIC, UNKNOWN = "real", "synthetic", "unknown"
NO_VERDICT = {SYNTHETIC: "pipeline check (synthetic)", UNKNOWN: "no verdict (data not recorded)"}


@dataclass(frozen=True)
class Comparison:
    """Child vs parent on the same test images: both accuracies, the paired test and its call at alpha (uncorrected)."""

    child: str
    parent: str
    n_seeds_child: int  # runs with predictions
    n_seeds_parent: int
    n_images: int
    child_acc: float  # mean over the paired runs, fraction
    parent_acc: float
    test: Paired
    note: str  # "" or what was left out (pairing.align)
    verdict: str  # "better", "worse" or "no detectable difference", at alpha before any correction

    @property
    def delta(self) -> float:
        """Return the mean test-accuracy difference child - parent (fraction)."""
        return self.test.estimate

    @property
    def interval(self) -> Interval:
        """Return the 95 % confidence interval of the difference (fraction)."""
        return self.test.interval(0.95)

    @property
    def p_value(self) -> float:
        """Return the two-sided p of "no difference"."""
        return self.test.p_value


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


# --------------------------------------------------------------------------- the chance test


# What must be equal on both sides of a comparison for its difference to mean the change the child row made: the
# input size, the training images a class, the epoch budget and early-stopping rule, and the seeds. (Both sides'
# test images are checked image by image when they are paired: pairing.py.)
DESIGN = {"image_size": "input px", "per_class": "images a class", "epochs_max": "epochs", "patience": "patience",
          "seeds": "seeds"}


def design_gap(results: pd.DataFrame, a: str, b: str) -> list[str]:
    """Return how the designs of rows `a` and `b` differ ("input px 103 vs 64", ...); empty when like with like."""
    gaps = []
    ga, gb = results[results["id"] == a], results[results["id"] == b]
    for col, words in DESIGN.items():
        if col == "seeds":
            va, vb = sorted(ga["seed"].tolist()), sorted(gb["seed"].tolist())
        elif col in results:
            va, vb = sorted(set(ga[col].dropna().tolist())), sorted(set(gb[col].dropna().tolist()))
        else:
            continue
        if va != vb:
            show = lambda v: ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "?"  # noqa: E731
            gaps.append(f"{words} {show(va)} vs {show(vb)}")
    return gaps


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


# --------------------------------------------------------------------------- comparisons


def call(estimate: float, p_value: float, alpha: float = ALPHA) -> str:
    """Return "better"/"worse" when p < alpha (the sign of the estimate says which), else "no detectable difference"."""
    if not p_value < alpha:
        return "no detectable difference"
    return "better" if estimate > 0 else "worse" if estimate < 0 else "no detectable difference"


def compare(child_id: str, parent_id: str, predictions: Predictions, alpha: float = ALPHA) -> Comparison:
    """Return child vs parent on the same test images: accuracies, the paired test (inference.paired), the call.

    Runs are lined up by image key and paired by seed (pairing.align: PairingError where two runs were tested on
    different images). One run a side: McNemar's exact test, about these two networks. Several: the t-test over
    seeds and images, about the recipe.
    """
    a = align(child_id, parent_id, predictions)
    test = paired(a.child, a.parent)
    return Comparison(child=child_id, parent=parent_id, n_seeds_child=a.n_seeds_child,
                      n_seeds_parent=a.n_seeds_parent, n_images=int(a.child.shape[1]),
                      child_acc=float(a.child.mean()), parent_acc=float(a.parent.mean()), test=test, note=a.note,
                      verdict=call(test.estimate, test.p_value, alpha))


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


def report_families(results: pd.DataFrame, ids: pd.Series, kinds: pd.Series) -> pd.Series:
    """Return the multiplicity family of each comparison: its report (A, B, X) and whether it ran on real photos.

    Holm's correction runs within a family: the claims or changes of one report judged together. Comparisons
    without a verdict (synthetic or unrecorded data) form families of their own, so they never weaken real ones.
    """
    report = results.groupby("id")["report"].first() if "report" in results.columns else pd.Series(dtype=object)
    return pd.Series([f"{report.get(i, '')}|{k == REAL}" for i, k in zip(ids, kinds)], index=ids.index)


def holm_by(p_values: pd.Series, families: pd.Series) -> pd.Series:
    """Return Holm-adjusted p-values (inference.holm) within each family; NaN stays NaN."""
    out = pd.Series(np.nan, index=p_values.index, dtype=float)
    for _, idx in families.groupby(families).groups.items():
        out.loc[idx] = holm(p_values.loc[idx].to_numpy(dtype=float))
    return out


def without_predictions(results: pd.DataFrame, ids: tuple[str, ...], predictions: Predictions) -> str:
    """Return a note naming the finished runs of these ids whose predictions are missing or damaged ("" when none)."""
    lost = [f"{i} seed {s}" for i, s in zip(results["id"], results["seed"]) if i in ids and (i, s) not in predictions]
    return f"runs without predictions left out: {', '.join(lost)}" if lost else ""


def joined(*notes: str) -> str:
    """Return the non-empty notes joined by "; "."""
    return "; ".join(n for n in notes if n)


def ablation_table(results: pd.DataFrame, predictions: Predictions, alpha: float = ALPHA) -> pd.DataFrame:
    """Return child vs parent for every id whose parent was run: delta, 95 % CI (pp), raw and Holm p, MDE, verdict.

    The verdict is better/worse when the Holm-adjusted p (within each report's changes, report_families) is below
    alpha. Rows whose runs saved no predictions keep the delta of the mean test accuracies from `results` and read
    "no predictions"; rows whose runs were tested on different images read "not comparable" (the note says why). A
    comparison not made on real data on both sides (runs_data_kind) reads NO_VERDICT instead of better/worse.
    """
    summary = seed_summary(results).set_index("id")
    rows = []
    for exp_id, row in summary.iterrows():
        parent = row.get("parent")
        if not isinstance(parent, str) or parent not in summary.index:
            continue
        kind = runs_data_kind(results, (exp_id, parent))
        base = {"id": exp_id, "parent": parent, "n_seeds": int(row["n_seeds"]),
                "parent_n_seeds": int(summary.loc[parent, "n_seeds"]), "data": kind,
                "delta_pp": 100 * (row["test_acc_mean"] - summary.loc[parent, "test_acc_mean"]),
                "ci_low_pp": np.nan, "ci_high_pp": np.nan, "p_value": np.nan, "mde_pp": np.nan, "unit": "",
                "note": "", "verdict": "no predictions"}
        if has_predictions(exp_id, predictions) and has_predictions(parent, predictions):
            try:
                c = compare(exp_id, parent, predictions, alpha)
            except PairingError as e:
                base |= {"note": str(e), "verdict": "not comparable"}
            else:
                iv = c.interval
                base |= {"delta_pp": 100 * c.delta, "ci_low_pp": 100 * iv.low, "ci_high_pp": 100 * iv.high,
                         "p_value": c.p_value, "mde_pp": 100 * c.test.mde(alpha), "unit": c.test.unit,
                         "note": joined(c.note, without_predictions(results, (exp_id, parent), predictions)),
                         "verdict": ""}
        rows.append(base)
    columns = ["id", "parent", "n_seeds", "parent_n_seeds", "data", "delta_pp", "ci_low_pp", "ci_high_pp",
               "p_value", "p_holm", "mde_pp", "unit", "note", "verdict"]
    t = pd.DataFrame(rows, columns=columns)
    if not len(t):
        return t
    t["p_holm"] = holm_by(t["p_value"], report_families(results, t["id"], t["data"]))
    tested = t["verdict"] == ""
    t.loc[tested, "verdict"] = [call(d, p, alpha) if k == REAL else NO_VERDICT[k]
                                for d, p, k in zip(t.loc[tested, "delta_pp"], t.loc[tested, "p_holm"],
                                                   t.loc[tested, "data"])]
    return t
