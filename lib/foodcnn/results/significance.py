"""The summary's significance tables of a Study: seeds, each change against its parent, the claims, the findings.

stats.py, claims.py and findings.py compute them; this module formats them for reading, verdicts coloured, each row's
scale beside it, and says in plain words how they were tested (methods).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import formats
from ..stats import claims, findings, comparisons as stats
from .tables import SCALE_NOTE, Study, scales

VERDICT_COLOURS = {"supported": "#d9f2d9", "refuted": "#f9d6d5", "cannot tell": "#f2f2f2", "not run": "#ffffff",
                   "better": "#d9f2d9", "worse": "#f9d6d5", "no detectable difference": "#f2f2f2",
                   "not comparable": "#fff3cd", claims.UNLIKE: "#fff3cd", findings.SMALLER: "#fce8cf",
                   **{v: "#e6eef7" for v in stats.NO_VERDICT.values()}}
UNDECIDED = ("cannot tell", "no detectable difference")  # the verdicts that say what the data could have shown


def _verdict_style(v: Any) -> str:
    colour = VERDICT_COLOURS.get(str(v).split(" (")[0])
    return f"background-color: {colour}" if colour else ""


def verdict_text(verdict: str, mde_pp: float) -> str:
    """Return a verdict as the tables print it: an undecided one with its power figure, "cannot tell (MDE 3.1 pp)"."""
    if verdict in UNDECIDED and not pd.isna(mde_pp):
        return f"{verdict} (MDE {mde_pp:.1f} pp)"
    return verdict


def _interval(low: float, high: float, level: float = 0.95) -> str:
    if pd.isna(low):
        return "—"
    return f"[{low:+.2f}, {high:+.2f}]" + ("" if pd.isna(level) or round(100 * level) == 95 else f" {100 * level:.0f} %")


def _notes(t: pd.DataFrame) -> pd.DataFrame:
    """Return t without its note column when no row has a note (most studies): the table stays narrow."""
    return t if (t["note"].fillna("") != "").any() else t.drop(columns="note")




def seed_table(study: Study) -> "pd.io.formats.style.Styler | pd.DataFrame":
    """Return mean ± sd over seeds of train/val/test accuracy (%) and test loss, per row."""
    if not len(study.results):
        return pd.DataFrame()
    s = stats.seed_summary(study.results)
    out = pd.DataFrame({"id": s["id"], "seeds": s["n_seeds"]})
    for m, label in (("train_acc", "train %"), ("val_acc", "val %"), ("test_acc", "test %")):
        out[label] = [stats.mean_sd(100 * a, 100 * b) for a, b in zip(s[f"{m}_mean"], s[f"{m}_std"])]
    out["test loss"] = [stats.mean_sd(a, b, 3) for a, b in zip(s["test_loss_mean"], s["test_loss_std"])]
    out["scale"] = out["id"].map(scales(study))
    return formats.readable(out).set_caption(SCALE_NOTE)


def pair_scale(scale: dict[str, str], child: str, parent: str) -> str:
    """Return the scale of a comparison: one scale_text when both rows ran alike, else "child; parent"."""
    a, b = scale.get(child, "?"), scale.get(parent, "?")
    return a if a == b else f"{a}; {b}"


def ablation_table(study: Study) -> "pd.io.formats.style.Styler | pd.DataFrame":
    """Return each row's change against its parent: 95 % interval, raw and Holm p, MDE, verdict (real data only)."""
    if not len(study.results):
        return pd.DataFrame()
    t = stats.ablation_table(study.results, study.predictions)
    if not len(t):
        return t
    t = t.merge(study.results.groupby("id")["change"].first(), left_on="id", right_index=True, how="left")
    scale = scales(study)
    t["scale"] = [pair_scale(scale, c, p) for c, p in zip(t["id"], t["parent"])]
    t["95% CI"] = [_interval(lo, hi) for lo, hi in zip(t["ci_low_pp"], t["ci_high_pp"])]
    t["verdict"] = [verdict_text(v, m) for v, m in zip(t["verdict"], t["mde_pp"])]
    t = t[["id", "parent", "change", "n_seeds", "delta_pp", "95% CI", "p_value", "p_holm", "mde_pp", "verdict",
           "scale", "note"]]
    t = _notes(t.rename(columns={"n_seeds": "seeds", "delta_pp": "Δ test (pp)", "p_value": "p", "p_holm": "Holm p",
                                 "mde_pp": "MDE (pp)"}))
    return (formats.readable(t)
            .map(_verdict_style, subset=["verdict"]).set_caption(SCALE_NOTE))


def claims_table(study: Study) -> "pd.io.formats.style.Styler | pd.DataFrame":
    """Return the reports' conclusions and whether our runs (real data only) support them, refute them or cannot tell."""
    t = claims.claims_table(study.results, study.predictions) if len(study.results) else pd.DataFrame()
    if not len(t):
        return t
    scale = scales(study)
    t["scale"] = [pair_scale(scale, c, p) if v != "not run" else ""
                  for c, p, v in zip(t["child"], t["parent"], t["verdict"])]
    t["verdict"] = [verdict_text(v, m) for v, m in zip(t["verdict"], t["mde_pp"])]
    t = t[["report", "claim", "child", "parent", "expected", "delta", "p_value", "p_holm", "mde_pp", "verdict", "unit", "scale",
           "note"]]
    t = _notes(t.rename(columns={"delta": "Δ test (pp) [95% CI]", "p_value": "p", "p_holm": "Holm p",
                                 "mde_pp": "MDE (pp)", "expected": "the report says"}))
    return (formats.readable(t)
            .map(_verdict_style, subset=["verdict"]).set_caption(SCALE_NOTE)
            .set_properties(subset=["claim"], **{"text-align": "left", "max-width": "28em"}))


def findings_table(study: Study) -> "pd.io.formats.style.Styler | pd.DataFrame":
    """Return the study's headline findings (findings.FINDINGS): estimate, interval, raw and Holm p, MDE, verdict, unit."""
    t = (findings.findings_table(study.results, study.predictions, published=study.published) if len(study.results)
         else pd.DataFrame())
    if not len(t):
        return t
    t["interval"] = [_interval(lo, hi, lv) for lo, hi, lv in zip(t["ci_low_pp"], t["ci_high_pp"], t["ci_level"])]
    t["verdict"] = [verdict_text(v, m) + (f" ({pub:+.1f} pp)" if v == findings.SMALLER else "")
                    for v, m, pub in zip(t["verdict"], t["mde_pp"], t["published_pp"])]
    t = t[["finding", "evidence", "estimate_pp", "interval", "p_value", "p_holm", "mde_pp", "published_pp", "verdict",
           "unit", "note"]]
    t = _notes(t.rename(columns={"estimate_pp": "estimate (pp)", "p_value": "p", "p_holm": "Holm p",
                                 "mde_pp": "MDE (pp)", "published_pp": "published (pp)"}))
    return (formats.readable(t)
            .map(_verdict_style, subset=["verdict"])
            .set_properties(subset=["finding", "evidence"], **{"text-align": "left"}))


def claims_overview(study: Study) -> str:
    """Return a Markdown count of the claims' verdicts, and why there are none where runs used synthetic data."""
    if not len(study.results):
        return ""
    t = claims.claims_table(study.results, study.predictions)
    counts = t["verdict"].value_counts()
    order = ["supported", "refuted", "cannot tell", "not comparable", *stats.NO_VERDICT.values(), "not run"]
    parts = [f"**{counts[v]}** {v}" for v in order if counts.get(v, 0)]
    line = "Claims: " + ", ".join(parts) + "."
    if (t["data"] == stats.SYNTHETIC).any():
        line += (" A claim about CNNs on food can only be judged on food photos: where a side ran on the "
                 "synthetic dataset, the comparison below is a pipeline check (its statistics show that it is "
                 "computed end to end) and gets no verdict.")
    elif counts.get("cannot tell", 0):
        mde = t.loc[t["verdict"] == "cannot tell", "mde_pp"]
        line += (" Where we cannot tell, a true difference smaller than the MDE could easily have been missed: "
                 f"median MDE {mde.median():.1f} pp ({mde.min():.1f}–{mde.max():.1f} pp).")
    return line


def methods(study: Study) -> str:
    """Return the report's method section in Markdown: each test, the unit of replication, the correction, the power."""
    r = study.results
    seeds = sorted(set(r["seed"])) if len(r) else []
    n = int(r["n_test"].median()) if len(r) and r["n_test"].notna().any() else None
    runs_a_row = set(r.groupby("id")["seed"].nunique()) if len(r) else set()
    scale = (f"In this study the rows ran with seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} and "
             f"were tested on {n:,} images. " if seeds and n else "")
    if runs_a_row == {1}:
        unit = ("With one run a row, **every verdict below is about two trained networks, not about the recipes** "
                "that made them: another seed could come out differently.")
    elif runs_a_row and 1 not in runs_a_row:
        unit = "Every row ran several seeds, so the verdicts below are about the recipes."
    else:
        unit = ("Some rows ran one seed, some several: a comparison with one run on a side is **about two trained "
                "networks, not about the recipes**; the *unit* column says which each verdict is about.")
    z = 1.959964 + 0.841621
    example = f" On {n:,} images with ψ = 0.25 that is {100 * z * np.sqrt(0.25 / n):.1f} pp." if n else ""
    margin = claims.EQUIVALENCE_MARGIN_PP
    return f"""### How each comparison is tested

{scale}{unit}

**The same test images on both sides.** Every row with the same data, classes, test cap (`max_test_per_class`) and
`split_seed` is tested on the same images, whatever its training subsample. Each comparison lines the two rows up by
image name (the keys saved with the predictions); rows tested on different images read *not comparable* and say why.
Where a run skipped an unreadable image, the comparison uses the images both sides scored and its note says so.

**One run a side: these two networks.** The two networks are compared image by image with McNemar's exact test: of
the images exactly one of them gets right, does one network win clearly more than half? The test's unit is the test
image, so its verdict generalises over food photos but not over training runs (McNemar 1947; Dietterich 1998).

**Several seeds a side: the recipe.** A claim such as "lr 5e-4 beats lr 1e-3" is about a training recipe, and the
unit of replication is the training run. Each seed gives one accuracy difference, on the same images; their mean is
tested with a t-test whose standard error has two parts: how much the difference varies from seed to seed, and how
much it would vary with another sample of test images (both estimated from the seeds × images table; Satterthwaite's
degrees of freedom). With few seeds the t-distribution is wide, so few seeds can only show large effects. Adding up
the disagreements of all seeds into one McNemar test instead would count each image once per seed and call
run-to-run noise an effect (Bouthillier et al. 2021, "Accounting for variance in machine learning benchmarks").

**What supports or refutes a claim.** A claimed improvement (or loss) is *supported* when the difference is
significant in the claimed direction, *refuted* when it is significant the other way, and otherwise *cannot tell*.
A claim of "no difference" is tested for equivalence (TOST, two one-sided tests): *supported* when the 90 % interval
of the difference lies inside ±{margin:g} pp, *refuted* only when it lies wholly outside, *cannot tell* otherwise (a
significant difference inside the margin refutes nothing). "At least as good" is the one-sided version: supported
when the 90 % interval stays above −{margin:g} pp, refuted only when it lies wholly below. "Above chance" is the exact
binomial test of each row; a row not significantly above chance makes the finding *cannot tell*, not refuted:
absence of evidence is not evidence of guessing. Intervals are 95 % (90 % for the margin tests, marked).

**Many claims at once.** Testing 34 claims at 5 % each would make about one or two false calls even if every
claim were empty. The *Holm p* column corrects for this (Holm 1979): the smallest p of a family is multiplied by the
number of tests in it, the next by one fewer, and so on (never decreasing); a verdict needs Holm p < 0.05. The
families are each report's claims, each report's changes in the table above, and the four headline findings. A
finding that takes the best of several comparisons ("a custom CNN beats its baseline") is corrected within itself
too; one that needs all of them ("beats every from-scratch CNN") needs each to be significant on its own.

**Power: what the data could have shown.** *MDE* is the minimum detectable effect: the smallest true difference
that this comparison would find 4 times in 5 (80 % power) at the 5 % level, before the correction (which raises it).
For two networks it is (1.96 + 0.84) × √(ψ / n), ψ the share of the n test images where exactly one of them is
right.{example} For the recipe it is (two t quantiles) × the standard error over seeds. For a "no difference" claim
it is the narrowest margin the design could establish, and for "at least as good" the same one-sided. A *cannot
tell* with an MDE of 3 pp says that a true difference of 2 pp could easily have been missed.

**Like with like.** A difference means the change a row made only when everything else is equal: both sides at the
same input size, on the same number of training images a class, with the same epoch budget and early-stopping rule,
and over the same seeds. A claim whose sides differ in any of these reads *not like with like*: its numbers are
shown, the note names the difference, and it gets no verdict (nor a place in Holm's family). A headline finding
leaves such a comparison out and says so.

**Smaller than the reports found.** A directional finding that cannot be decided, but whose design was powered for
the reports' own effect (its MDE is below the published difference) and whose interval lies wholly below that
difference, reads *smaller than published*: whatever the true effect is at this scale, it is not the one the report
saw. The published difference is in its own column.

References: McNemar (1947) Psychometrika 12; Dietterich (1998) Neural Computation 10(7); Bouthillier et al. (2021)
MLSys; Satterthwaite (1946) Biometrics Bulletin 2; Schuirmann (1987) J. Pharmacokinetics and Biopharmaceutics 15;
Berger (1982) Technometrics 24; Holm (1979) Scandinavian Journal of Statistics 6.
"""
