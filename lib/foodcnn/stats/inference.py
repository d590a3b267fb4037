"""The statistics behind every verdict: two rows compared on the same test images, equivalence, power and Holm.

The unit of replication decides the test. With one training run a side, the two trained networks are compared image
by image: McNemar's exact test (McNemar 1947; Dietterich 1998 recommends it for two classifiers on one test set),
and the verdict is about these two networks. With several seeds a side, a claim about a recipe (an architecture, a
learning rate) is tested over its training runs: the per-image differences form a seeds x images table, and the
variance of their mean has a seed term (run-to-run variation, Bouthillier et al. 2021, "Accounting for variance in
machine learning benchmarks") and an image term (the test images are a sample of food photos too). Both are
estimated from the two-way table's mean squares (crossed random effects: Searle, Casella & McCulloch 1992, "Variance
Components", ch. 4), and the mean is tested with Student's t on Satterthwaite's (1946) degrees of freedom. Where the
image term estimates at or below zero it is dropped, which leaves the paired t-test over the per-seed accuracy
differences (df = seeds - 1). Pooling the discordant pairs of all seeds into one McNemar test would count each
image once per seed, as if run-to-run variation did not exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8


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


def _scipy_stats():
    from scipy import stats  # here: importing scipy.stats at the top would slow every training notebook's start

    return stats


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
    p = _scipy_stats().binomtest(min(b, c), n, 0.5).pvalue  # exact, two-sided: 2 P(X <= min(b, c)), at most 1
    return McNemarResult(b, c, float(statistic), float(p))


@dataclass(frozen=True)
class Paired:
    """Child - parent test accuracy on the same images: the estimate, its standard error and the test it rests on."""

    estimate: float  # mean accuracy difference, fraction
    se: float  # its standard error
    df: float  # degrees of freedom of its t reference (inf: the normal)
    p_value: float  # two-sided p of "no difference"
    k: int  # training runs a side (paired by seed)
    n: int  # test images
    discordance: float  # psi: the share of (image, run pair) cells where exactly one side is right
    mde_se: float  # the standard error the power figure uses (under no difference: sqrt(psi / n) for one run)
    mcnemar: McNemarResult | None = None  # one run a side: the exact test behind p_value

    @property
    def test(self) -> str:
        """Return the test's name as the report prints it."""
        return "McNemar exact" if self.k == 1 else f"t over {self.k} seeds x {self.n} images"

    @property
    def unit(self) -> str:
        """Return what the verdict is about: these two trained networks, or the recipe over its seeds."""
        return "these two networks" if self.k == 1 else f"recipe over {self.k} seeds"

    def _q(self, prob: float) -> float:
        return float(_scipy_stats().t.ppf(prob, self.df))

    def interval(self, level: float = 0.95) -> Interval:
        """Return the two-sided `level` confidence interval of the difference."""
        half = self._q(0.5 + level / 2) * self.se
        return Interval(self.estimate, self.estimate - half, self.estimate + half)

    def p_greater(self, null: float = 0.0) -> float:
        """Return the one-sided p of "the difference is at most `null`" (small: it is larger)."""
        return self._tail(self.estimate - null)

    def p_less(self, null: float = 0.0) -> float:
        """Return the one-sided p of "the difference is at least `null`" (small: it is smaller)."""
        return self._tail(null - self.estimate)

    def _tail(self, excess: float) -> float:
        if self.se == 0:
            return 0.0 if excess > 0 else 1.0
        return float(_scipy_stats().t.sf(excess / self.se, self.df))

    def mde(self, alpha: float = ALPHA, power: float = POWER, kind: str = "difference") -> float:
        """Return the minimum detectable effect at this power (fraction) for the design of this comparison.

        kind "difference": the smallest true difference a two-sided test at alpha finds with probability `power`,
        (q(1 - alpha/2) + q(power)) x SE; for one run a side SE = sqrt(psi / n), psi the discordance rate.
        "non-inferiority": the smallest margin a one-sided test at alpha would establish when there is no true
        difference, (q(1 - alpha) + q(power)) x SE. "equivalence": the same for both one-sided tests of TOST,
        (q(1 - alpha) + q((1 + power) / 2)) x SE.
        """
        first = {"difference": 1 - alpha / 2, "non-inferiority": 1 - alpha, "equivalence": 1 - alpha}[kind]
        second = (1 + power) / 2 if kind == "equivalence" else power
        return (self._q(first) + self._q(second)) * self.mde_se


def paired(child: np.ndarray, parent: np.ndarray) -> Paired:
    """Return the paired comparison of two (runs, images) correctness matrices, row k of each from the same seed."""
    child = np.atleast_2d(np.asarray(child, dtype=bool))
    parent = np.atleast_2d(np.asarray(parent, dtype=bool))
    if child.shape != parent.shape:
        raise ValueError(f"child runs x images {child.shape} != parent's {parent.shape}")
    k, n = child.shape
    if n < 2:
        raise ValueError(f"{n} test image(s): a comparison needs at least 2")
    d = child.astype(np.float64) - parent.astype(np.float64)
    estimate, psi = float(d.mean()), float(np.abs(d).mean())
    if k == 1:
        test = mcnemar(parent[0], child[0])  # b: images the parent gets right and the child wrong
        # The paired Wald standard error with half an image added to each cell (Agresti & Min 2005), so that two
        # networks agreeing on every image do not get a zero-width interval; the power figure counts at least one
        # discordant image for the same reason.
        m, b, c = n + 2, test.b + 0.5, test.c + 0.5
        se = math.sqrt(((b + c) / m - ((c - b) / m) ** 2) / m)
        return Paired(estimate, se, math.inf, test.p_value, 1, n, psi, math.sqrt(max(test.b + test.c, 1)) / n, test)
    if psi == 0:  # every run of both sides agrees on every image: half a disagreement each way, as above
        se = 1.0 / (n * k + 2)
        return Paired(estimate, se, float(k - 1), 1.0, k, n, psi, se)
    variance, df = _seed_and_image_variance(d)
    se = math.sqrt(variance)
    if se == 0:
        p = 1.0 if estimate == 0 else 0.0
    else:
        p = float(2 * _scipy_stats().t.sf(abs(estimate) / se, df))
    return Paired(estimate, se, df, min(p, 1.0), k, n, psi, se)


def _seed_and_image_variance(d: np.ndarray) -> tuple[float, float]:
    """Return the variance of the mean of a seeds x images table of differences and its degrees of freedom.

    Two crossed random factors: E[MS_images] = k s2_image + s2_e, E[MS_seeds] = n s2_seed + s2_e, E[MS_resid] = s2_e,
    so Var(mean) = s2_image / n + s2_seed / k + s2_e / (nk) = (MS_images + MS_seeds - MS_resid) / (nk). The
    image component is kept non-negative (dropped where MS_images <= MS_resid). Without it this is
    MS_seeds / (nk) = sd(per-seed differences)^2 / k on k - 1 df: the paired t-test over seeds; with one, the df
    are Satterthwaite's (1946).
    """
    k, n = d.shape
    grand = d.mean()
    by_image, by_seed = d.mean(0), d.mean(1)
    ms_image = k * float(((by_image - grand) ** 2).sum()) / (n - 1)
    ms_seed = n * float(((by_seed - grand) ** 2).sum()) / (k - 1)
    resid = d - by_image[None, :] - by_seed[:, None] + grand
    df_resid = (n - 1) * (k - 1)
    ms_resid = float((resid**2).sum()) / df_resid
    c = 1.0 / (n * k)
    if ms_seed == 0:  # seeds that tie exactly (differences come in steps of 1/n) are not a zero run-to-run variance
        ms_seed = ms_resid
    if ms_image <= ms_resid:  # no image component: the paired t-test over the seeds' differences
        return c * ms_seed, float(k - 1)
    variance = c * (ms_image + ms_seed - ms_resid)
    parts = (c * ms_image) ** 2 / (n - 1) + (c * ms_seed) ** 2 / (k - 1) + (c * ms_resid) ** 2 / df_resid
    return variance, variance**2 / parts


# --------------------------------------------------------------------------- margins: equivalence, non-inferiority


def equivalence_p(test: Paired, margin: float) -> tuple[float, float]:
    """Return (p of equivalence, p of a difference beyond the margin) for |difference| < margin (fractions).

    TOST (Schuirmann 1987): equivalence is shown when both one-sided tests reject at alpha, i.e. when the
    (1 - 2 alpha) interval (90 %) lies within +-margin. Its opposite is shown only when that interval lies wholly
    outside the margin, on one side: a significant difference that is still inside the margin refutes nothing.
    """
    inside = max(test.p_greater(-margin), test.p_less(margin))
    beyond = min(test.p_greater(margin), test.p_less(-margin))
    return inside, beyond


def non_inferiority_p(test: Paired, margin: float) -> tuple[float, float]:
    """Return (p of "child no worse than parent - margin", p of "child worse by more than the margin")."""
    return test.p_greater(-margin), test.p_less(-margin)


# --------------------------------------------------------------------------- the chance test


def above_chance_p(correct: int, n: int, num_classes: int) -> float:
    """Return the exact one-sided binomial p of `correct` right out of n when guessing gets 1/num_classes right."""
    if n <= 0 or num_classes < 1:
        return float("nan")
    return float(_scipy_stats().binomtest(int(correct), int(n), 1.0 / num_classes, alternative="greater").pvalue)


def below_chance_p(correct: int, n: int, num_classes: int) -> float:
    """Return the exact one-sided binomial p of `correct` right out of n being below guessing (1/num_classes)."""
    if n <= 0 or num_classes < 1:
        return float("nan")
    return float(_scipy_stats().binomtest(int(correct), int(n), 1.0 / num_classes, alternative="less").pvalue)


def chance_mde(n: int, num_classes: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Return the accuracy above chance (fraction) the one-sided binomial test finds at this power on n images.

    Normal approximation with the null's variance: (z(1 - alpha) + z(power)) sqrt(p0 (1 - p0) / n), p0 = 1/classes.
    """
    p0 = 1.0 / num_classes
    z = _scipy_stats().norm.ppf
    return float((z(1 - alpha) + z(power)) * math.sqrt(p0 * (1 - p0) / n))


# --------------------------------------------------------------------------- multiplicity


def holm(p_values) -> np.ndarray:
    """Return Holm's (1979) step-down adjusted p-values; NaN stays NaN and does not count as a test.

    The i-th smallest of m p-values becomes max over j <= i of (m - j + 1) p_(j), capped at 1: rejecting where the
    adjusted p < alpha keeps the chance of any false call among the m at most alpha, whatever their dependence.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if not m:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
