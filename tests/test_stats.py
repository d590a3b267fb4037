"""Tests for foodcnn.stats.comparisons on constructed predictions with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from foodcnn.stats import inference, comparisons as stats

N_CLASSES = 20


def _labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, N_CLASSES, n)


def _predict(y_true: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Predictions that are right exactly where `correct` is True."""
    return np.where(correct, y_true, (y_true + 1) % N_CLASSES)


def _pair(n: int = 1000, base_acc: float = 0.5, fixed: int = 0, broken: int = 0, seed: int = 0):
    """Parent and child correctness: the child fixes `fixed` parent errors and breaks `broken` successes."""
    rng = np.random.default_rng(seed)
    parent = rng.random(n) < base_acc
    child = parent.copy()
    wrong, right = np.flatnonzero(~parent), np.flatnonzero(parent)
    child[rng.choice(wrong, fixed, replace=False)] = True
    child[rng.choice(right, broken, replace=False)] = False
    return child, parent


def _keys(n: int) -> np.ndarray:
    return np.array([f"class_{i % N_CLASSES:02d}/{100000 + i}" for i in range(n)])


def _predictions(runs: dict[tuple[str, int], np.ndarray], y_true: np.ndarray) -> dict:
    """Saved predictions of runs that all scored the same images (same keys), right where `correct` is True."""
    keys = _keys(len(y_true))
    return {key: stats.Scored(y_true, _predict(y_true, correct), keys) for key, correct in runs.items()}


# --------------------------------------------------------------------------- McNemar


def test_mcnemar_hand_computed():
    # b = 10 (a right, b wrong), c = 2, plus 5 images both get right.
    a = np.array([1] * 10 + [0] * 2 + [1] * 5, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 5, bool)
    r = stats.mcnemar(a, b)
    assert (r.b, r.c) == (10, 2)
    # Exact: 2 * P(X <= 2 | n = 12, p = 1/2) = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12
    #        = 2 * (1 + 12 + 66) / 4096 = 158 / 4096 = 0.0385742...
    assert r.p_value == pytest.approx(158 / 4096, rel=1e-12)
    assert r.p_value == pytest.approx(0.03857421875)
    # Continuity-corrected chi-square: (|10 - 2| - 1)**2 / 12 = 49 / 12
    assert r.statistic == pytest.approx(49 / 12)
    assert stats.mcnemar(b, a).p_value == pytest.approx(r.p_value)


def test_mcnemar_no_discordant_pairs_gives_p_one():
    a = np.array([True, False, True])
    r = stats.mcnemar(a, a)
    assert (r.b, r.c, r.p_value, r.statistic) == (0, 0, 1.0, 0.0)


@pytest.mark.parametrize("k,n", [(0, 1), (2, 12), (5, 10), (10, 10), (40, 200), (700, 3000)])
def test_mcnemar_p_matches_exact_integers(k, n):
    # k images only the first model gets right, n - k only the second: p = 2 P(X <= min) under Binomial(n, 1/2)
    exact = min(1.0, 2 * sum(math.comb(n, j) for j in range(min(k, n - k) + 1)) / 2**n)
    first = np.r_[np.ones(k, bool), np.zeros(n - k, bool)]
    assert stats.mcnemar(first, ~first).p_value == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_mcnemar_large_counts_do_not_overflow():
    assert stats.mcnemar(np.ones(3000, bool), np.zeros(3000, bool)).p_value < 1e-300
    a = np.r_[np.ones(2500, bool), np.zeros(2500, bool)]
    assert stats.mcnemar(a, ~a).p_value == 1.0


# --------------------------------------------------------------------------- compare


def test_identical_models_show_no_difference():
    y = _labels(1000)
    rng = np.random.default_rng(1)
    runs = {}
    for seed in range(3):  # seeds differ from each other, child == parent per seed
        correct = rng.random(1000) < 0.6
        runs[("child", seed)] = runs[("parent", seed)] = correct
    c = stats.compare("child", "parent", _predictions(runs, y))
    assert c.p_value == 1.0 and c.delta == 0.0
    # never a disagreement in 3,000 (image, seed) cells: a narrow interval, not a zero-width one
    # (1 / (3000 + 2) on 2 df: t(0.975; 2) = 4.3027)
    assert c.interval.high == pytest.approx(-c.interval.low) == pytest.approx(4.302653 / 3002, rel=1e-5)
    assert c.verdict == "no detectable difference" and c.test.unit == "recipe over 3 seeds"


def test_one_run_a_side_is_mcnemar_about_these_two_networks():
    y = _labels(1000)
    child, parent = _pair(n=1000, base_acc=0.4, fixed=300)
    preds = _predictions({("child", 0): child, ("parent", 0): parent}, y)
    c = stats.compare("child", "parent", preds)
    assert (c.test.mcnemar.b, c.test.mcnemar.c) == (0, 300)
    assert c.p_value == c.test.mcnemar.p_value < 1e-6
    assert c.delta == pytest.approx(0.3) and c.interval.low > 0
    assert c.verdict == "better" and c.test.unit == "these two networks" and c.test.test == "McNemar exact"
    # Wald interval of a paired difference, half an image added to each cell (Agresti & Min 2005):
    # b = 0.5, c = 300.5 of n + 2 = 1002: sqrt((301 / 1002 - (300 / 1002)^2) / 1002)
    assert c.interval.high - c.delta == pytest.approx(1.959964 * math.sqrt((301 / 1002 - (300 / 1002) ** 2) / 1002),
                                                      rel=1e-5)
    reverse = stats.compare("parent", "child", preds)
    assert reverse.verdict == "worse" and reverse.interval.high < 0


def test_several_seeds_are_tested_over_runs_not_pooled():
    # Two seeds: +1.5 pp (20 fixed, 5 broken) and +0.4 pp (12 fixed, 8 broken). Pooling the seeds' discordant pairs
    # (13 vs 32 of 1,000 "images") gives p < 0.01; over two runs the recipe's gain is one noisy difference.
    y = _labels(500)
    runs = {}
    for seed, fixed, broken in ((3, 20, 5), (7, 12, 8)):
        child, parent = _pair(n=500, fixed=fixed, broken=broken, seed=seed)
        runs[("child", seed)], runs[("parent", seed)] = child, parent
    c = stats.compare("child", "parent", _predictions(runs, y))
    assert (c.n_seeds_child, c.n_seeds_parent, c.n_images) == (2, 2, 500)
    assert c.test.mcnemar is None and c.test.k == 2 and c.test.unit == "recipe over 2 seeds"
    assert c.delta == pytest.approx(0.019)
    pooled = stats.mcnemar(np.r_[runs[("parent", 3)], runs[("parent", 7)]], np.r_[runs[("child", 3)], runs[("child", 7)]])
    assert (pooled.b, pooled.c) == (13, 32) and pooled.p_value < 0.01
    assert c.p_value > 0.2 and c.verdict == "no detectable difference"


def test_runs_without_shared_seeds_pair_in_seed_order_and_say_what_was_left_out():
    y = _labels(500)
    runs = {}
    for k, (seed_c, seed_p) in enumerate([(1, 10), (2, 20), (3, 30)]):
        child, parent = _pair(n=500, fixed=10 + k, broken=2, seed=k)
        runs[("child", seed_c)], runs[("parent", seed_p)] = child, parent
    del runs[("parent", 30)]  # the child's third run has no partner
    c = stats.compare("child", "parent", _predictions(runs, y))
    assert (c.n_seeds_child, c.n_seeds_parent, c.test.k) == (3, 2, 2)
    assert c.delta == pytest.approx((10 + 11 - 4) / 1000)
    assert c.note == "runs without a partner left out: child seed 3"


def test_compare_rejects_runs_on_different_images():
    y = _labels(100)
    preds = _predictions({("child", 0): np.ones(100, bool), ("parent", 0): np.ones(100, bool)}, y)
    other = preds[("parent", 0)]._replace(keys=np.array([f"elsewhere/{i}" for i in range(100)]))
    with pytest.raises(stats.PairingError, match="child seed 0 and parent seed 0 were not tested on the same images"):
        stats.compare("child", "parent", {**preds, ("parent", 0): other})
    with pytest.raises(KeyError):
        stats.compare("child", "missing", preds)


def test_verdict_follows_p_and_the_sign():
    assert stats.call(0.02, 0.01) == "better" and stats.call(-0.02, 0.01) == "worse"
    assert stats.call(0.02, 0.2) == "no detectable difference" and stats.call(0.02, float("nan")) == "no detectable difference"


# --------------------------------------------------------------------------- tables


def _results(rows, data_kind: str = stats.REAL):
    df = pd.DataFrame(rows, columns=["id", "seed", "train_acc", "val_acc", "test_acc", "test_loss", "parent"])
    df["data_kind"] = data_kind
    return df


def test_seed_summary_mean_and_std():
    results = _results([
        ("base", 0, 0.30, 0.30, 0.40, 2.0, None),
        ("base", 1, 0.50, 0.40, 0.44, 1.8, None),
        ("base", 2, 0.40, 0.35, 0.42, 1.9, None),
        ("pool", 0, 0.60, 0.50, 0.47, 1.7, "base"),
    ])
    s = stats.seed_summary(results).set_index("id")
    assert list(s.index) == ["base", "pool"]
    assert s.loc["base", "n_seeds"] == 3 and s.loc["pool", "n_seeds"] == 1
    assert s.loc["base", "test_acc_mean"] == pytest.approx(0.42)
    # sd (ddof=1) of 0.40, 0.44, 0.42: sqrt((0.02**2 + 0.02**2 + 0) / 2) = 0.02
    assert s.loc["base", "test_acc_std"] == pytest.approx(0.02)
    assert s.loc["base", "train_acc_std"] == pytest.approx(0.1)
    assert s.loc["base", "test_loss_mean"] == pytest.approx(1.9)
    assert np.isnan(s.loc["pool", "test_acc_std"])
    assert s.loc["base", "test_acc_pm"] == "42.00 ± 2.00"
    assert s.loc["pool", "test_acc_pm"] == "47.00"  # one seed: no sd (n_seeds says so)
    assert stats.mean_sd(float("nan"), float("nan")) == "—" and stats.mean_sd(1.9, 0.01, 3) == "1.900 ± 0.010"
    assert s.loc["pool", "parent"] == "base"


def _fabricated_study():
    """Results and predictions for a parent, three children and a child whose parent never ran."""
    n = 1000
    y = _labels(n)
    runs, rows = {}, []
    # three seeds, each change a little different on each (as training runs are): +30, -25 and +0.03 pp on average
    for seed, gain, loss, (fixed, broken) in zip(range(3), (280, 300, 320), (240, 250, 260), ((6, 4), (3, 6), (7, 5))):
        better, parent = _pair(n=n, base_acc=0.4, fixed=gain, seed=seed)
        worse, _ = _pair(n=n, base_acc=0.4, broken=loss, seed=seed)
        noisy, _ = _pair(n=n, base_acc=0.4, fixed=fixed, broken=broken, seed=seed)
        same = parent.copy()
        for exp_id, correct, par in [("base", parent, None), ("better", better, "base"),
                                     ("worse", worse, "base"), ("noisy", noisy, "base"),
                                     ("same", same, "base"), ("orphan", better, "never_run")]:
            runs[(exp_id, seed)] = correct
            rows.append((exp_id, seed, 0.5, 0.5, correct.mean(), 1.0, par))
    return _results(rows), _predictions(runs, y)


def test_ablation_table():
    results, preds = _fabricated_study()
    t = stats.ablation_table(results, preds).set_index("id")
    assert sorted(t.index) == ["better", "noisy", "same", "worse"]  # base has no parent, orphan's is missing
    assert t.loc["better", "delta_pp"] == pytest.approx(30.0)
    assert t.loc["better", "verdict"] == "better" and t.loc["better", "ci_low_pp"] > 0
    # three seeds a side, 24-26 pp lost on each: the t-test over seeds (2 df) is strong, not astronomical
    assert t.loc["worse", "verdict"] == "worse" and t.loc["worse", "p_value"] < 0.01
    assert np.allclose(t["p_holm"], inference.holm(t["p_value"])) and (t["p_holm"] >= t["p_value"]).all()  # one family
    assert t.loc["noisy", "verdict"] == "no detectable difference"
    assert t.loc["same", "p_value"] == 1.0
    assert t.loc["better", "n_seeds"] == 3 and t.loc["better", "parent"] == "base"


def test_ablation_table_without_predictions_keeps_result_delta():
    results, preds = _fabricated_study()
    preds = {k: v for k, v in preds.items() if k[0] != "worse"}
    t = stats.ablation_table(results, preds).set_index("id")
    assert t.loc["worse", "verdict"] == "no predictions"
    assert t.loc["worse", "delta_pp"] == pytest.approx(-25.0)
    assert np.isnan(t.loc["worse", "p_value"])


# --------------------------------------------------------------------------- verdicts only from real data


def test_data_kind_reads_the_runs_recorded_provenance():
    assert stats.data_kind({"synthetic": True, "classes": ["synthetic_apple_pie"]}) == stats.SYNTHETIC
    # a synthetic tree that lost its meta/SYNTHETIC marker still names its classes synthetic_*
    assert stats.data_kind({"synthetic": False, "classes": ["apple_pie", "synthetic_baklava"]}) == stats.SYNTHETIC
    assert stats.data_kind({"synthetic": False, "classes": ["apple_pie", "baklava"]}) == stats.REAL
    assert stats.data_kind({}) == stats.UNKNOWN and stats.data_kind(None) == stats.UNKNOWN


def _study_with_kinds(kinds: dict[tuple[str, int], str]):
    """_fabricated_study with the data kind of some runs (id, seed) changed."""
    results, preds = _fabricated_study()
    for (exp_id, seed), kind in kinds.items():
        results.loc[(results["id"] == exp_id) & (results["seed"] == seed), "data_kind"] = kind
    return results, preds


def test_synthetic_runs_get_a_pipeline_check_not_a_verdict():
    results, preds = _study_with_kinds({("better", 0): stats.SYNTHETIC, ("better", 1): stats.SYNTHETIC})
    t = stats.ablation_table(results, preds).set_index("id")
    assert t.loc["better", "verdict"] == "pipeline check (synthetic)"
    assert t.loc["better", "delta_pp"] == pytest.approx(30.0) and t.loc["better", "p_value"] < 0.01  # still computed
    assert t.loc["worse", "verdict"] == "worse"  # both sides real: judged as before


def test_one_synthetic_seed_or_parent_takes_the_verdict_away():
    # A mix never yields a verdict from synthetic runs: one synthetic seed of the child, or a synthetic
    # parent (which every comparison against it shares), is enough.
    results, preds = _study_with_kinds({("worse", 1): stats.SYNTHETIC})
    t = stats.ablation_table(results, preds).set_index("id")
    assert t.loc["worse", "verdict"] == "pipeline check (synthetic)"
    assert t.loc["better", "verdict"] == "better"
    results, preds = _study_with_kinds({("base", 0): stats.SYNTHETIC})
    t = stats.ablation_table(results, preds)
    assert set(t["verdict"]) == {"pipeline check (synthetic)"}


def test_runs_without_recorded_data_get_no_verdict():
    results, preds = _study_with_kinds({("better", 0): stats.UNKNOWN})
    t = stats.ablation_table(results, preds).set_index("id")
    assert t.loc["better", "verdict"] == "no verdict (data not recorded)"
    results, preds = _fabricated_study()
    t = stats.ablation_table(results.drop(columns="data_kind"), preds)
    assert set(t["verdict"]) == {"no verdict (data not recorded)"}


# --------------------------------------------------------------------------- chance


def test_above_chance_p_is_the_exact_binomial_tail():
    # P(X >= k) for X ~ Binomial(n, 1/classes), summed by hand.
    def tail(k, n, q):
        return sum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(k, n + 1))

    assert stats.above_chance_p(3, 3, 4) == pytest.approx(1 / 64)
    assert stats.above_chance_p(9, 100, 20) == pytest.approx(tail(9, 100, 0.05))
    assert stats.above_chance_p(0, 50, 20) == pytest.approx(1.0)


def test_chance_table_marks_rows_indistinguishable_from_guessing():
    # 20 classes, 100 test images: 9 right (p 0.063) is not distinguishable from 5 % chance, 10 (p 0.028) is.
    y = _labels(100, seed=3)
    rows, preds = [], {}
    for exp_id, right in (("guess", 5), ("nine", 9), ("ten", 10), ("good", 60)):
        correct = np.arange(100) < right
        preds[(exp_id, 0)] = (y, _predict(y, correct))
        rows.append({"id": exp_id, "seed": 0, "test_acc": float((_predict(y, correct) == y).mean()),
                     "num_classes": N_CLASSES, "n_test": 100})
    t = stats.chance_table(pd.DataFrame(rows)).set_index("id")
    assert t["at_chance"].to_dict() == {"guess": True, "nine": True, "ten": False, "good": False}
    assert t.loc["nine", "chance"] == pytest.approx(0.05)
    assert t.loc["nine", "chance_p"] == pytest.approx(0.0631, abs=1e-4)


def test_chance_table_tests_the_mean_of_the_seeds_on_the_test_images_once():
    # Two seeds at 9 and 11 right of 100: the mean (10 of 100) is tested, not 20 of 200 images.
    results = pd.DataFrame([{"id": "r", "seed": s, "test_acc": a, "num_classes": 20, "n_test": 100}
                            for s, a in ((0, 0.09), (1, 0.11))])
    t = stats.chance_table(results).set_index("id")
    assert t.loc["r", "chance_p"] == pytest.approx(stats.above_chance_p(10, 100, 20))
    assert not t.loc["r", "at_chance"]
