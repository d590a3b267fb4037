"""Tests for foodcnn.stats.inference: the tests behind the verdicts, against hand-worked numbers and a simulation."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from foodcnn.stats import inference
from foodcnn.stats.inference import Paired

Z975, Z95, Z90, Z80 = 1.959964, 1.644854, 1.281552, 0.841621


def _fixed(estimate: float, se: float, df: float = math.inf, n: int = 2000) -> Paired:
    """A comparison with a given estimate and standard error (fractions), as if measured."""
    return Paired(estimate, se, df, float("nan"), 1 if df == math.inf else 3, n, 0.2, se)


# --------------------------------------------------------------------------- Holm


def test_holm_on_known_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert inference.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert inference.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = inference.holm([0.02, float("nan"), 0.04])  # NaN is no test: m = 2
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert inference.holm([0.03]) == pytest.approx([0.03]) and inference.holm([]).size == 0
    # 34 claims, every null true: rejecting where Holm p < 0.05 is rejecting p < 0.05 / 34 at the first step
    p = np.full(34, 0.05 / 34 * 1.01)
    assert (inference.holm(p) >= 0.05).all()


# --------------------------------------------------------------------------- power


def test_mde_of_two_networks_matches_the_worked_example():
    # 2,000 images, 500 of them (psi = 0.25) right for exactly one of the two networks, 250 each way:
    # MDE = (1.96 + 0.84) * sqrt(0.25 / 2000) = 2.8016 * 0.011180 = 0.03132 -> "cannot tell (MDE 3.1 pp)"
    parent = np.r_[np.ones(250, bool), np.zeros(250, bool), np.ones(700, bool), np.zeros(800, bool)]
    child = np.r_[np.zeros(250, bool), np.ones(250, bool), np.ones(700, bool), np.zeros(800, bool)]
    t = inference.paired(child, parent)
    assert (t.k, t.n, t.discordance, t.estimate) == (1, 2000, 0.25, 0.0)
    assert t.mde() == pytest.approx((Z975 + Z80) * math.sqrt(0.25 / 2000), rel=1e-5)
    assert t.mde() == pytest.approx(0.03132, abs=1e-5)
    assert t.p_value == 1.0 and t.unit == "these two networks"


def test_mde_over_seeds_uses_t_quantiles():
    # 3 seeds, standard error 1 pp on 2 df: (t(0.975; 2) + t(0.8; 2)) x 1 pp = (4.303 + 1.061) pp = 5.36 pp
    t = _fixed(0.0, 0.01, df=2)
    assert t.mde() == pytest.approx(0.053639, abs=1e-5)
    assert t.mde(kind="non-inferiority") == pytest.approx((sps.t.ppf(0.95, 2) + sps.t.ppf(0.8, 2)) * 0.01)
    assert _fixed(0.0, 0.01).mde(kind="equivalence") == pytest.approx((Z95 + Z90) * 0.01, rel=1e-5)


def test_chance_mde():
    # 2,000 images, 20 classes: (1.645 + 0.842) sqrt(0.05 x 0.95 / 2000) = 1.21 pp above the 5 % of guessing
    assert inference.chance_mde(2000, 20) == pytest.approx((Z95 + Z80) * math.sqrt(0.05 * 0.95 / 2000), rel=1e-5)


# --------------------------------------------------------------------------- equivalence and non-inferiority


@pytest.mark.parametrize("estimate_pp,se_pp,supported,refuted", [
    (0.2, 0.5, True, False),     # 90 % [-0.62, +1.02]: inside +-2 pp
    (1.5, 0.51, False, False),   # 90 % [+0.66, +2.34] (95 % [+0.5, +2.5]): significant, crosses +2: cannot tell
    (3.5, 0.5, False, True),     # 90 % [+2.68, +4.32]: wholly above the margin
    (-3.5, 0.5, False, True),    # wholly below
    (0.0, 1.5, False, False),    # 90 % [-2.47, +2.47]: too imprecise to say
])
def test_tost_verdicts_on_constructed_intervals(estimate_pp, se_pp, supported, refuted):
    t = _fixed(estimate_pp / 100, se_pp / 100)
    inside, beyond = inference.equivalence_p(t, 0.02)
    iv = t.interval(0.90)
    assert (inside < 0.05) == supported == (-0.02 < iv.low and iv.high < 0.02)
    assert (beyond < 0.05) == refuted == (iv.low > 0.02 or iv.high < -0.02)


@pytest.mark.parametrize("estimate_pp,supported,refuted", [
    (-0.5, True, False),   # 90 % [-1.32, +0.32]: above -2 pp
    (-1.5, False, False),  # 90 % [-2.32, -0.68]: significantly worse, but not by more than the margin
    (-3.5, False, True),   # 90 % [-4.32, -2.68]: wholly below -2 pp
])
def test_non_inferiority_on_constructed_intervals(estimate_pp, supported, refuted):
    not_worse, worse = inference.non_inferiority_p(_fixed(estimate_pp / 100, 0.005), 0.02)
    assert (not_worse < 0.05, worse < 0.05) == (supported, refuted)


# --------------------------------------------------------------------------- the paired test over seeds


def test_over_seeds_is_the_paired_t_test_when_images_add_nothing():
    # independent cells, a run effect per seed: no image component, so the test is scipy's ttest_rel on the per-seed
    # accuracies (the unit is the training run)
    rng = np.random.default_rng(2)
    shift = rng.normal(0, 0.02, (4, 1))
    child, parent = rng.random((4, 1500)) < 0.5 + shift, rng.random((4, 1500)) < 0.5
    d = child.astype(float) - parent
    ms_image = 4 * d.mean(0).var(ddof=1)
    resid = d - d.mean(0) - d.mean(1, keepdims=True) + d.mean()
    assert ms_image <= (resid**2).sum() / (1499 * 3)  # the image term estimates <= 0: dropped
    t = inference.paired(child, parent)
    ref = sps.ttest_rel(child.mean(1), parent.mean(1))
    assert (t.k, t.df) == (4, 3) and t.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert t.unit == "recipe over 4 seeds" and t.mcnemar is None
    lo, hi = ref.confidence_interval(0.95)
    assert (t.interval().low, t.interval().high) == pytest.approx((lo, hi), rel=1e-9)


def test_identical_runs_over_seeds_keep_the_images_variance():
    # Deterministic training: every seed the same two networks. The seeds add nothing, and the test must fall back
    # on the images' variation (the one-run paired variance), not report a zero standard error.
    parent = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    child = np.r_[np.zeros(100, bool), np.ones(200, bool), np.zeros(100, bool)]
    one = inference.paired(child, parent)
    three = inference.paired(np.tile(child, (3, 1)), np.tile(parent, (3, 1)))
    d = child.astype(float) - parent
    assert three.se == pytest.approx(math.sqrt(d.var(ddof=1) / 400), rel=1e-12) and three.df == pytest.approx(399)
    assert three.se == pytest.approx(one.se, rel=0.01)  # one run: the same, with Agresti & Min's half counts
    assert three.estimate == one.estimate == 0.0


def _recipe_null(rng, n: int, k: int, run_sd: float, image_effect: float) -> tuple[np.ndarray, np.ndarray]:
    """Two recipes equally good on food photos: k runs each on the same n test images.

    Each image has a difficulty; each run shifts its accuracy by N(0, run_sd) (run-to-run variation); with
    image_effect, one recipe is better by that much on half the photos and worse on the other half, so on a sample of
    n photos the two differ by chance though not on average.
    """
    p = rng.uniform(0.25, 0.75, n)
    delta = image_effect * rng.choice([-1.0, 1.0], n)
    runs = [rng.random((k, n)) < np.clip(p + s * delta + rng.normal(0, run_sd, (k, 1)), 0, 1) for s in (1, -1)]
    return runs[0], runs[1]


def test_the_recipe_test_holds_its_false_positive_rate_where_pooling_does_not():
    # 400 simulated studies, no true difference between the recipes (seeded: the same numbers every time).
    rng = np.random.default_rng(2026)
    sims, alpha = 400, 0.05
    # (a) run-to-run sd 2 pp, 3 seeds, 1,000 images: pooled McNemar counts each image once per seed
    recipe = pooled = 0
    for _ in range(sims):
        child, parent = _recipe_null(rng, 1000, 3, 0.02, 0.0)
        recipe += inference.paired(child, parent).p_value < alpha
        pooled += inference.mcnemar(parent.ravel(), child.ravel()).p_value < alpha
    assert 0.01 <= recipe / sims <= 0.09  # 5 % +- 4 binomial sd (1.1 % at 400 studies); measured 4.0 %
    assert pooled / sims > 0.2  # measured 23.75 %
    # (b) hardly any run effect, but the recipes differ image by image: a t-test over seeds alone mistakes the test
    # sample's luck for the recipe; the image term keeps the rate near alpha
    recipe = seeds_only = 0
    for _ in range(sims):
        child, parent = _recipe_null(rng, 1000, 3, 0.002, 0.3)
        recipe += inference.paired(child, parent).p_value < alpha
        seeds_only += sps.ttest_rel(child.mean(1), parent.mean(1)).pvalue < alpha
    assert 0.01 <= recipe / sims <= 0.09  # measured 8.0 % (5.2 % over 3,000 studies)
    assert seeds_only / sims > 0.15  # measured 19.75 %


def test_seeds_that_tie_exactly_do_not_make_the_difference_certain():
    # Two seeds, each +1.5 pp on 1,000 images (20 fixed, 5 broken, on other images each time): the per-seed
    # differences tie, which is luck of the 1/n steps, not a recipe without run-to-run variation.
    parent = np.zeros((2, 1000), bool)
    child = parent.copy()
    child[0, :20] = child[1, 500:520] = True
    parent[0, 100:105] = parent[1, 600:605] = True
    t = inference.paired(child, parent)
    assert t.estimate == pytest.approx(0.015) and t.se > 0 and 0.01 < t.p_value < 1
