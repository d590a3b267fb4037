"""The summary's significance tables of a Study: seeds, each change against its parent, the claims, the findings.

stats.py and claims.py compute them; this module formats them for reading, verdicts coloured, each row's scale
beside it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import claims, formats, stats
from .tables import SCALE_NOTE, Study, scales

VERDICT_COLOURS = {"supported": "#d9f2d9", "refuted": "#f9d6d5", "cannot tell": "#f2f2f2", "not run": "#ffffff",
                   "better": "#d9f2d9", "worse": "#f9d6d5", "no detectable difference": "#f2f2f2",
                   **{v: "#e6eef7" for v in stats.NO_VERDICT.values()}}


def _verdict_style(v: Any) -> str:
    colour = VERDICT_COLOURS.get(str(v))
    return f"background-color: {colour}" if colour else ""


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
    """Return each row's change against its parent with a 95 % interval, McNemar p and a verdict (real data only)."""
    if not len(study.results):
        return pd.DataFrame()
    t = stats.ablation_table(study.results, study.predictions)
    if not len(t):
        return t
    t = t.merge(study.results.groupby("id")["change"].first(), left_on="id", right_index=True, how="left")
    scale = scales(study)
    t["scale"] = [pair_scale(scale, c, p) for c, p in zip(t["id"], t["parent"])]
    t = t[["id", "parent", "change", "n_seeds", "delta_pp", "ci_low_pp", "ci_high_pp", "p_value", "verdict", "scale"]]
    t = t.rename(columns={"n_seeds": "seeds", "delta_pp": "Δ test (pp)", "ci_low_pp": "95% CI low",
                          "ci_high_pp": "95% CI high", "p_value": "McNemar p"})
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
    t = t[["report", "claim", "child", "parent", "expected", "delta", "p_value", "verdict", "scale"]].rename(
        columns={"delta": "Δ test (pp) [95% CI]", "p_value": "McNemar p", "expected": "the report says"})
    return (formats.readable(t)
            .map(_verdict_style, subset=["verdict"]).set_caption(SCALE_NOTE)
            .set_properties(subset=["claim"], **{"text-align": "left", "max-width": "28em"}))


def findings_table(study: Study) -> "pd.io.formats.style.Styler | pd.DataFrame":
    """Return the study's headline findings (claims.FINDINGS) with their deciding comparison and verdict."""
    t = claims.findings_table(study.results, study.predictions) if len(study.results) else pd.DataFrame()
    if not len(t):
        return t
    t = t[["finding", "evidence", "p_value", "verdict"]].rename(columns={"p_value": "McNemar / binomial p"})
    return (formats.readable(t)
            .map(_verdict_style, subset=["verdict"])
            .set_properties(subset=["finding", "evidence"], **{"text-align": "left"}))


def claims_overview(study: Study) -> str:
    """Return a Markdown count of the claims' verdicts, and why there are none where runs used synthetic data."""
    if not len(study.results):
        return ""
    t = claims.claims_table(study.results, study.predictions)
    counts = t["verdict"].value_counts()
    order = ["supported", "refuted", "cannot tell", *stats.NO_VERDICT.values(), "not run"]
    parts = [f"**{counts[v]}** {v}" for v in order if counts.get(v, 0)]
    line = "Claims: " + ", ".join(parts) + "."
    if (t["data"] == stats.SYNTHETIC).any():
        line += (" A claim about CNNs on food can only be judged on food photos: where a side ran on the "
                 "synthetic dataset, the comparison below is a pipeline check (its statistics show that it is "
                 "computed end to end) and gets no verdict.")
    return line
