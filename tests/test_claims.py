"""Tests for foodcnn.results.claims: the reports' claims and the headline findings, on constructed predictions."""

from pathlib import Path

import numpy as np
import pytest

from foodcnn.results import claims, stats
from foodcnn.results.claims import Claim
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
    t = claims.claims_table(results, preds, claims=mine, n_boot=500).set_index("key")
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
    t = claims.claims_table(results, preds, claims=mine, n_boot=200).set_index("key")
    assert t["verdict"].to_dict() == {"fixes": "pipeline check (synthetic)", "wrong_way": "pipeline check (synthetic)",
                                      "same": "pipeline check (synthetic)", "missing": "not run"}
    assert t.loc["fixes", "delta"].startswith("+30.00 pp [") and t.loc["fixes", "p_value"] < 1e-6
    real = claims.claims_table(results.assign(data_kind=stats.REAL), preds, claims=mine, n_boot=200)
    assert list(real["verdict"]) == ["supported", "refuted", "supported", "not run"]


# --------------------------------------------------------------------------- headline findings


def _findings_study(effnet_ft_acc: float, custom_fixes: int, weakest_acc: float, data_kind: str = stats.REAL):
    """A study with the ids the findings read: three from-scratch rows, two EfficientNet rows, one VGG row."""
    n, rng = 2000, np.random.default_rng(1)
    y = _labels(n)
    base = rng.random(n) < 0.22
    custom = base.copy()
    custom[rng.choice(np.flatnonzero(~base), custom_fixes, replace=False)] = True
    runs = {"a_baseline": base, "a_custom": custom, "b_baseline": rng.random(n) < weakest_acc,
            "x_effnet_stock": rng.random(n) < 0.45, "x_effnet_ft": rng.random(n) < effnet_ft_acc,
            "b_vgg1": rng.random(n) < 0.05}  # random-init VGG: not a from-scratch CNN of the reports
    models = {"a_baseline": "baseline", "a_custom": "custom_a", "b_baseline": "baseline",
              "x_effnet_stock": "efficientnet_lite0", "x_effnet_ft": "efficientnet_lite0", "b_vgg1": "vgg16_bn"}
    results = _results([(i, 0, 0.5, 0.5, c.mean(), 1.0, None) for i, c in runs.items()], data_kind)
    results["model"], results["n_test"], results["num_classes"] = results["id"].map(models), n, N_CLASSES
    return results, _predictions({(i, 0): c for i, c in runs.items()}, y)


def test_findings_on_real_data_name_the_deciding_comparison():
    results, preds = _findings_study(effnet_ft_acc=0.55, custom_fixes=200, weakest_acc=0.15)
    t = claims.findings_table(results, preds, n_boot=200).set_index("key")
    assert t["verdict"].to_dict() == {"pretrained_beats_scratch": "supported", "finetune_not_worse": "supported",
                                      "custom_beats_baseline": "supported", "scratch_above_chance": "supported"}
    assert t.loc["custom_beats_baseline", "evidence"].startswith("best of 1: a_custom")
    assert "b_baseline" in t.loc["scratch_above_chance", "evidence"]  # the weakest from-scratch row
    assert "b_vgg1" not in t.loc["scratch_above_chance", "evidence"]


def test_findings_refuted_when_fine_tuning_loses_and_a_scratch_row_guesses():
    n_classes_chance = 1 / N_CLASSES
    results, preds = _findings_study(effnet_ft_acc=0.28, custom_fixes=0, weakest_acc=n_classes_chance)
    t = claims.findings_table(results, preds, n_boot=200).set_index("key")
    assert t.loc["finetune_not_worse", "verdict"] == "refuted"
    assert t.loc["custom_beats_baseline", "verdict"] == "cannot tell"  # identical predictions: no difference
    assert t.loc["scratch_above_chance", "verdict"] == "refuted"


def test_findings_on_synthetic_data_are_pipeline_checks():
    results, preds = _findings_study(effnet_ft_acc=0.46, custom_fixes=200, weakest_acc=0.15,
                                     data_kind=stats.SYNTHETIC)
    t = claims.findings_table(results, preds, n_boot=200)
    assert set(t["verdict"]) == {"pipeline check (synthetic)"}
    assert t["p_value"].notna().all()  # the statistics are still computed
    empty = claims.findings_table(results[results["id"] == "b_vgg1"], preds, n_boot=200)
    assert set(empty["verdict"]) == {"not run"}
