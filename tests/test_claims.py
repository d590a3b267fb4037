"""Tests for foodcnn.stats.claims: the reports' claims and the headline findings, on constructed predictions."""

from pathlib import Path

import numpy as np
import pytest

from foodcnn.stats import claims, comparisons as stats
from foodcnn.stats.claims import Claim
from test_stats import N_CLASSES, _fabricated_study, _labels, _predictions, _results


# --------------------------------------------------------------------------- the reports' claims


def test_claims_table_verdicts():
    results, preds = _fabricated_study()
    mine = [
        Claim("fixes", "B", "fixing errors helps", "better", "base", "better"),
        Claim("wrong_way", "B", "breaking things helps", "worse", "base", "better"),
        Claim("too_small", "B", "a tiny change helps", "noisy", "base", "better"),
        Claim("missing", "A", "an unrun change helps", "better", "never_run", "better"),
        Claim("same", "A", "an identical change makes no difference", "same", "base", "no difference"),
        Claim("not_same", "A", "a big change makes no difference", "better", "base", "no difference"),
    ]
    t = claims.claims_table(results, preds, claims=mine).set_index("key")
    assert t["verdict"].to_dict() == {
        "fixes": "supported", "wrong_way": "refuted", "too_small": "cannot tell", "missing": "not run",
        "same": "supported", "not_same": "refuted",
    }
    assert t.loc["fixes", "delta"].startswith("+30.00 pp [")
    assert np.isnan(t.loc["missing", "p_value"])
    assert {"report", "claim", "child", "parent", "delta", "p_value", "verdict"} <= set(t.columns)


def test_claims_table_default_claims_not_run_on_unrelated_study():
    results, preds = _fabricated_study()
    t = claims.claims_table(results, preds)
    assert len(t) == len(claims.CLAIMS) and set(t["verdict"]) == {"not run"}


def test_claims_are_well_formed():
    keys = [c.key for c in claims.CLAIMS]
    assert len(keys) == len(set(keys))
    for c in claims.CLAIMS:
        assert c.report in ("A", "B")
        assert c.expected in ("better", "worse", "no difference")
        prefix = c.report.lower() + "_"
        assert c.child.startswith(prefix) and c.parent.startswith(prefix) and c.child != c.parent
        assert c.text
    assert {("b_custom3", "b_baseline"), ("b_vgg2", "b_vgg1"), ("a_new_ini", "a_baseline")} <= {
        (c.child, c.parent) for c in claims.CLAIMS
    }


def test_claim_ids_are_catalogue_params_files():
    params = Path(__file__).resolve().parents[1] / "params"
    known = {p.stem for p in params.glob("*.yaml")}
    if not known:
        pytest.skip("no experiment params files yet")
    missing = {i for c in claims.CLAIMS for i in (c.child, c.parent)} - known
    assert not missing, f"claims name ids with no params file: {sorted(missing)}"


def test_claims_on_synthetic_data_are_pipeline_checks():
    mine = [Claim("fixes", "B", "fixing errors helps", "better", "base", "better"),
            Claim("wrong_way", "B", "breaking things helps", "worse", "base", "better"),
            Claim("same", "A", "an identical change makes no difference", "same", "base", "no difference"),
            Claim("missing", "A", "an unrun change helps", "better", "never_run", "better")]
    results, preds = _fabricated_study()
    results["data_kind"] = stats.SYNTHETIC
    t = claims.claims_table(results, preds, claims=mine).set_index("key")
    assert t["verdict"].to_dict() == {"fixes": "pipeline check (synthetic)", "wrong_way": "pipeline check (synthetic)",
                                      "same": "pipeline check (synthetic)", "missing": "not run"}
    assert t.loc["fixes", "delta"].startswith("+30.00 pp [") and t.loc["fixes", "p_value"] < 0.01
    real = claims.claims_table(results.assign(data_kind=stats.REAL), preds, claims=mine)
    assert list(real["verdict"]) == ["supported", "refuted", "supported", "not run"]


def test_directional_claims_agree_with_the_reports_own_numbers():
    # A claim says what the report measured: where its words and its numbers disagree (A.lr_down: "did improve",
    # 44.62 % vs 46.22 %; A.resnet_hflip: "did slightly improve", 67.42 % vs ~68 %), the claim follows the numbers.
    from foodcnn.results import tables

    published = tables.load_published(Path(__file__).resolve().parents[1] / "params")["test_acc"]
    for c in claims.CLAIMS:
        if c.expected == "no difference":
            continue
        gap = published[c.child] - published[c.parent]
        assert np.sign(gap) == (1 if c.expected == "better" else -1), f"{c.key}: published {gap:+.2f} pp, coded {c.expected}"
    coded = {c.key: c.expected for c in claims.CLAIMS}
    assert coded["A.lr_down"] == coded["A.resnet_hflip"] == "worse"


def _comparison(estimate_pp: float, se_pp: float) -> stats.Comparison:
    t = stats.Paired(estimate_pp / 100, se_pp / 100, float("inf"), float("nan"), 1, 2000, 0.2, se_pp / 100)
    return stats.Comparison("c", "p", 1, 1, 2000, 0.5 + estimate_pp / 100, 0.5, t, "", "")


@pytest.mark.parametrize("estimate_pp,se_pp,outcome,significant", [
    (0.2, 0.5, "supported", True),    # 90 % interval inside +-2 pp
    (1.5, 0.51, "supported", False),  # [+0.66, +2.34]: inside the margin at its centre, not shown: cannot tell
    (3.5, 0.5, "refuted", True),      # wholly outside
])
def test_no_difference_claims_are_equivalence_tests(estimate_pp, se_pp, outcome, significant):
    claim = Claim("eq", "B", "no difference", "c", "p", "no difference")
    p, said, iv, mde, test = claims.claim_test(claim, _comparison(estimate_pp, se_pp))
    assert said == outcome and (p < 0.05) == significant
    assert iv.high - iv.estimate == pytest.approx(1.644854 * se_pp / 100, rel=1e-5)  # a 90 % interval
    assert test.endswith("TOST ±2 pp") and mde == pytest.approx((1.644854 + 1.281552) * se_pp / 100, rel=1e-5)


def test_holm_runs_over_each_reports_claims():
    results, preds = _fabricated_study()
    mine = [Claim("a1", "A", "", "noisy", "base", "better"), Claim("a2", "A", "", "better", "base", "better"),
            Claim("b1", "B", "", "noisy", "base", "better")]
    t = claims.claims_table(results, preds, claims=mine).set_index("key")
    # report A's two: the smaller p times 2, the larger times 1 but never below the first
    assert t.loc["a2", "p_holm"] == pytest.approx(2 * t.loc["a2", "p_value"])
    assert t.loc["a1", "p_holm"] == pytest.approx(max(t.loc["a1", "p_value"], 2 * t.loc["a2", "p_value"]))
    assert t.loc["b1", "p_holm"] == pytest.approx(t.loc["b1", "p_value"])  # alone in report B's family
    assert t.loc["a2", "unit"] == "recipe over 3 seeds" and t.loc["a2", "mde_pp"] > 0


def test_a_damaged_run_degrades_only_its_own_claims():
    results, preds = _fabricated_study()
    moved = preds[("worse", 1)]
    preds[("worse", 1)] = moved._replace(keys=np.array([f"other/{i}" for i in range(len(moved.keys))]))
    short = preds[("noisy", 0)]  # one image could not be read: it is left out of that comparison, and said so
    preds[("noisy", 0)] = stats.Scored(short.y_true[1:], short.y_pred[1:], short.keys[1:], frozenset({short.keys[0]}))
    del preds[("better", 2)]  # a damaged predictions.npz: the run is in the results, its predictions are not
    mine = [Claim("w", "A", "", "worse", "base", "worse"), Claim("b", "A", "", "better", "base", "better"),
            Claim("n", "A", "", "noisy", "base", "better")]
    t = claims.claims_table(results, preds, claims=mine).set_index("key")
    assert t.loc["w", "verdict"] == "not comparable" and "worse seed 0 and worse seed 1" in t.loc["w", "note"]
    assert t.loc["b", "verdict"] == "supported" and t.loc["b", "unit"] == "recipe over 2 seeds"
    assert t.loc["b", "note"] == "runs without a partner left out: base seed 2; runs without predictions left out: better seed 2"
    assert t.loc["n", "verdict"] == "cannot tell" and "compared on the 999 of 1000" in t.loc["n", "note"]


def test_a_claim_whose_sides_differ_in_design_is_shown_but_not_judged():
    results, preds = _fabricated_study()
    results["image_size"], results["per_class"], results["epochs_max"], results["patience"] = 64, 150, 5, 3
    claim = Claim("X.up", "X", "better is better", "better", "base", "better")
    judged = claims.claims_table(results, preds, claims=[claim]).iloc[0]
    assert judged["verdict"] == "supported"
    results.loc[results["id"] == "better", "epochs_max"] = 2
    row = claims.claims_table(results, preds, claims=[claim]).iloc[0]
    assert row["verdict"] == claims.UNLIKE and "designs differ: epochs 2 vs 5" in row["note"]
    assert row["delta_pp"] == judged["delta_pp"] and np.isnan(row["p_holm"])  # the numbers stay, no verdict
