"""The shipped profiles: every catalogue row resolves under each, and `make report DATA=...` reaches the runs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from foodcnn.pipeline import batch
from foodcnn import params

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (ROOT / "params" / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_row_resolves_under_every_profile(profile):
    jobs = batch.plan(profile, params_dir=ROOT / "params", notebooks_dir=ROOT / "notebooks")
    assert {j.params.id for j in jobs} == {p.stem for p in (ROOT / "params").glob("*.yaml")}


# The design of a comparison: what must be equal on both sides for a difference to mean the change made.
DESIGN = ("resolved_image_size", "max_train_per_class", "max_test_per_class", "val_fraction", "split_seed", "epochs",
          "patience", "seeds", "batch_size", "data_root", "num_classes")
# The laptop profile's headline comparisons (child, parent), as params/profiles/laptop.yaml names them.
LAPTOP_HEADLINE = (("a_custom", "a_baseline"), ("x_effnet_ft", "x_effnet_stock"))


def test_laptop_profile_headline_pairs_are_like_with_like_over_three_seeds():
    jobs = batch.plan("laptop", params_dir=ROOT / "params", notebooks_dir=ROOT / "notebooks")
    by_id = {j.params.id: j.params for j in jobs}
    for child, parent in LAPTOP_HEADLINE:
        a, b = by_id[child], by_id[parent]
        differ = [k for k in DESIGN if getattr(a, k) != getattr(b, k)]
        assert not differ, f"{child} vs {parent} differ in {differ}"
        assert len(a.seeds) >= 3, f"{child}: a headline row is tested over seeds"
        assert a.resolved_image_size >= 64  # where the reports' mechanism can act (not the 37 px minimum)
    # both reports' baseline is one experiment: b_baseline adopts a_baseline's runs (equal recipes)
    assert by_id["a_baseline"].recipe_fingerprint() == by_id["b_baseline"].recipe_fingerprint()
    # the two EfficientNet rows differ in what trains, not in what they see
    ft, frozen = by_id["x_effnet_ft"], by_id["x_effnet_stock"]
    assert ft.augment == frozen.augment and ft.freeze == "none" and frozen.freeze == "head"
    assert ft.head_epochs > 0 and ft.backbone_lr_scale < 1 and ft.bn_frozen  # the small-data recipe
    # every row is tested on the same images, whatever it trains on
    assert len({p.max_test_per_class for p in by_id.values()}) == 1
    # pretrained-capable backbones never run at 32 px
    assert all(p.resolved_image_size >= 64 for p in by_id.values() if p.model in ("vgg16", "vgg16_bn", "resnet18"))
    # the catalogue runs whole: every row at least once, the headline rows three times
    rows = len(list((ROOT / "params").glob("*.yaml")))
    assert len(jobs) == rows + 2 * len({i for pair in LAPTOP_HEADLINE for i in pair} | {"b_baseline"})


def test_paper_profile_keeps_the_reports_fine_tuning_recipe():
    p = params.load(ROOT / "params" / "x_effnet_ft.yaml", profile="paper")
    assert (p.head_epochs, p.backbone_lr_scale, p.warmup_epochs, p.schedule, p.bn_frozen) == (0, 1.0, 0.0, "constant",
                                                                                           False)


def make_batch_command(*assignments: str) -> list[str]:
    """Return the `foodcnn batch` command line `make report` would run (make -n), split into words."""
    out = subprocess.run(["make", "-n", "report", *assignments], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    line = next(ln for ln in out.splitlines() if "-m foodcnn batch" in ln)
    return shlex.split(line.split(";")[0])


def test_make_report_data_reaches_every_run(tmp_path):
    words = make_batch_command("PROFILE=laptop", "DATA=some/food-101")
    i = words.index("--set")
    key, value = words[i + 1].split("=", 1)
    assert key == "data_root" and value == str(ROOT / "some" / "food-101")  # absolute: kernels run elsewhere
    assert words[words.index("--profile") + 1] == "laptop"
    jobs = batch.plan("laptop", params_dir=ROOT / "params", notebooks_dir=ROOT / "notebooks",
                      overrides={key: value})
    assert {j.params.data_root for j in jobs} == {value}


def test_make_report_without_data_uses_the_profile_root():
    assert "--set" not in make_batch_command()
