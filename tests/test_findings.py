"""Tests for foodcnn.stats.findings: the headline findings, each decided from several comparisons, on constructed runs."""

from pathlib import Path

import numpy as np
import pytest

from foodcnn.stats import findings, inference, comparisons as stats
from test_stats import N_CLASSES, _labels, _predictions, _results

MODELS = {"a_baseline": "baseline", "a_custom": "custom_a", "b_baseline": "baseline", "b_custom5": "custom_b",
          "b_custom6": "custom_b", "x_effnet_stock": "efficientnet_lite0", "x_effnet_ft": "efficientnet_lite0",
          "b_vgg1": "vgg16_bn"}


def _study(runs: dict[str, np.ndarray], data_kind: str = stats.REAL):
    """Results and predictions of one seed per id, each right where its boolean vector says."""
    n = len(next(iter(runs.values())))
    results = _results([(i, 0, 0.5, 0.5, c.mean(), 1.0, None) for i, c in runs.items()], data_kind)
    results["model"], results["n_test"], results["num_classes"] = results["id"].map(MODELS), n, N_CLASSES
    return results, _predictions({(i, 0): c for i, c in runs.items()}, _labels(n))


def _changed(base: np.ndarray, fixed: int, broken: int, seed: int = 0) -> np.ndarray:
    """base with `fixed` of its errors made right and `broken` of its successes made wrong."""
    rng = np.random.default_rng(seed)
    out = base.copy()
    out[rng.choice(np.flatnonzero(~base), fixed, replace=False)] = True
    out[rng.choice(np.flatnonzero(base), broken, replace=False)] = False
    return out


def _findings_study(effnet_ft_acc: float, custom_fixes: int, weakest_acc: float, data_kind: str = stats.REAL):
    """A study with the ids the findings read: three from-scratch rows, two EfficientNet rows, one VGG row."""
    n, rng = 2000, np.random.default_rng(1)
    base = rng.random(n) < 0.22
    return _study({"a_baseline": base, "a_custom": _changed(base, custom_fixes, 0), "b_baseline": rng.random(n) < weakest_acc,
                   "x_effnet_stock": rng.random(n) < 0.45, "x_effnet_ft": rng.random(n) < effnet_ft_acc,
                   "b_vgg1": rng.random(n) < 0.05},  # random-init VGG: not a from-scratch CNN of the reports
                  data_kind)


def test_findings_on_real_data_name_the_deciding_comparison():
    results, preds = _findings_study(effnet_ft_acc=0.55, custom_fixes=200, weakest_acc=0.15)
    t = findings.findings_table(results, preds).set_index("key")
    assert t["verdict"].to_dict() == {"pretrained_beats_scratch": "supported", "finetune_not_worse": "supported",
                                      "custom_beats_baseline": "supported", "scratch_above_chance": "supported"}
    assert t.loc["custom_beats_baseline", "evidence"].startswith("best of 1: a_custom")
    assert "b_baseline" in t.loc["scratch_above_chance", "evidence"]  # the weakest from-scratch row
    assert "b_vgg1" not in t.loc["scratch_above_chance", "evidence"]
    assert set(t["unit"]) == {"these two networks", "this network"}  # one seed a row
    assert (t["p_holm"] >= t["p_within"]).all() and np.allclose(t["p_holm"], inference.holm(t["p_within"]))
    assert (t["mde_pp"] > 0).all() and t.loc["finetune_not_worse", "ci_level"] == 0.9


def test_findings_refuted_when_fine_tuning_loses_beyond_the_margin_and_cannot_tell_a_guessing_row():
    results, preds = _findings_study(effnet_ft_acc=0.28, custom_fixes=0, weakest_acc=1 / N_CLASSES)
    t = findings.findings_table(results, preds).set_index("key")
    assert t.loc["finetune_not_worse", "verdict"] == "refuted"  # -17 pp: the 90 % interval lies wholly below -2 pp
    assert t.loc["finetune_not_worse", "ci_high_pp"] < -findings.EQUIVALENCE_MARGIN_PP
    assert t.loc["custom_beats_baseline", "verdict"].startswith("cannot tell")  # identical predictions
    # a row at 5 % is not shown to be above chance; that is absence of evidence, not a refutation
    assert t.loc["scratch_above_chance", "verdict"] == "cannot tell"
    assert t.loc["scratch_above_chance", "mde_pp"] == pytest.approx(100 * inference.chance_mde(2000, N_CLASSES))


def test_a_significant_loss_inside_the_margin_does_not_refute_not_worse():
    # Fine-tuned loses 1.5 pp (30 fixed, 60 broken of 2,000: McNemar p ~ 0.002), 90 % interval about [-2.3, -0.7]:
    # significantly worse, but not shown to be worse by more than the 2 pp margin, nor shown to be within it.
    n, rng = 2000, np.random.default_rng(4)
    stock = rng.random(n) < 0.45
    results, preds = _study({"x_effnet_stock": stock, "x_effnet_ft": _changed(stock, 30, 60)})
    row = findings.findings_table(results, preds).set_index("key").loc["finetune_not_worse"]
    assert stats.compare("x_effnet_ft", "x_effnet_stock", preds).verdict == "worse"
    assert row["ci_low_pp"] < -2 < row["ci_high_pp"] < 0
    assert row["verdict"] == "cannot tell"


def test_the_best_of_three_custom_cnns_is_corrected_for_the_choice():
    # a_custom alone would pass at 5 % (40 fixed, 22 broken: McNemar p ~ 0.03), custom5/6 show nothing; the best of
    # three, Holm-corrected within the finding, is p ~ 0.09: cannot tell.
    n, rng = 2000, np.random.default_rng(5)
    a, b = rng.random(n) < 0.3, rng.random(n) < 0.3
    runs = {"a_baseline": a, "a_custom": _changed(a, 40, 22), "b_baseline": b, "b_custom5": _changed(b, 10, 10, 1),
            "b_custom6": _changed(b, 12, 12, 2)}
    results, preds = _study(runs)
    alone = stats.compare("a_custom", "a_baseline", preds)
    assert alone.verdict == "better" and 0.01 < alone.p_value < 0.05
    row = findings.findings_table(results, preds).set_index("key").loc["custom_beats_baseline"]
    assert row["evidence"].startswith("best of 3: a_custom") and "Holm over the 3 comparisons" in row["note"]
    assert row["p_value"] == pytest.approx(alone.p_value)
    assert row["p_within"] == pytest.approx(3 * alone.p_value)
    assert row["verdict"] == "cannot tell"


def test_a_run_tested_on_other_images_makes_its_finding_not_comparable_and_leaves_the_others():
    results, preds = _findings_study(effnet_ft_acc=0.55, custom_fixes=200, weakest_acc=0.15)
    moved = preds[("x_effnet_ft", 0)]
    preds[("x_effnet_ft", 0)] = moved._replace(keys=np.array([f"elsewhere/{i}" for i in range(len(moved.keys))]))
    t = findings.findings_table(results, preds).set_index("key")
    assert t.loc["finetune_not_worse", "verdict"] == "not comparable"
    assert "x_effnet_ft seed 0 and x_effnet_stock seed 0" in t.loc["finetune_not_worse", "note"]
    assert t.loc["pretrained_beats_scratch", "verdict"] == "supported"


def test_findings_on_synthetic_data_are_pipeline_checks():
    results, preds = _findings_study(effnet_ft_acc=0.46, custom_fixes=200, weakest_acc=0.15,
                                     data_kind=stats.SYNTHETIC)
    t = findings.findings_table(results, preds)
    assert set(t["verdict"]) == {"pipeline check (synthetic)"}
    assert t["p_value"].notna().all()  # the statistics are still computed
    empty = findings.findings_table(results[results["id"] == "b_vgg1"], preds)
    assert set(empty["verdict"]) == {"not run"}


def test_a_custom_cnn_at_another_scale_than_its_baseline_is_left_out_of_the_finding():
    n, rng = 2000, np.random.default_rng(3)
    base = rng.random(n) < 0.22
    results, preds = _study({"a_baseline": base, "a_custom": _changed(base, 200, 0),
                             "b_baseline": base, "b_custom5": _changed(base, 400, 0)})
    results["image_size"] = results["id"].map({"b_custom5": 103}).fillna(64)
    results["per_class"], results["epochs_max"], results["patience"] = 150, 5, 3
    assert stats.design_gap(results, "b_custom5", "b_baseline") == ["input px 103 vs 64"]
    assert stats.design_gap(results, "a_custom", "a_baseline") == []
    t = findings.findings_table(results, preds).set_index("key")
    row = t.loc["custom_beats_baseline"]
    assert row["evidence"].startswith("best of 1: a_custom")  # b_custom5's larger gain is not like with like
    assert "b_custom5 vs b_baseline left out, designs differ: input px 103 vs 64" in row["note"]


def test_an_undecided_finding_powered_for_the_published_effect_reads_smaller_than_published():
    from foodcnn.results import tables

    published = tables.load_published(Path(__file__).resolve().parents[1] / "params")
    n, rng = 2000, np.random.default_rng(1)
    base = rng.random(n) < 0.22
    results, preds = _study({"a_baseline": base, "a_custom": _changed(base, 25, 15)})  # +0.5 pp, not significant
    t = findings.findings_table(results, preds, published=published).set_index("key")
    row = t.loc["custom_beats_baseline"]
    assert row["published_pp"] == pytest.approx(55.55 - 46.22)  # report A's own a_custom - a_baseline
    assert row["mde_pp"] < row["published_pp"] and row["ci_high_pp"] < row["published_pp"]
    assert row["verdict"] == findings.SMALLER
    # without the published figures the same data cannot tell
    assert findings.findings_table(results, preds).set_index("key").loc["custom_beats_baseline", "verdict"] \
        == "cannot tell"
