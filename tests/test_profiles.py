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


def test_laptop_profile_is_one_seed_on_real_data_with_cpu_scale():
    jobs = batch.plan("laptop", params_dir=ROOT / "params", notebooks_dir=ROOT / "notebooks")
    assert len(jobs) == 39 and {j.params.seed for j in jobs} == {0}
    by_id = {j.params.id: j.params for j in jobs}
    # the from-scratch comparisons of the reports see the same images (a fair baseline)
    assert by_id["a_custom"].max_train_per_class == by_id["a_baseline"].max_train_per_class
    assert by_id["a_custom"].max_test_per_class == by_id["a_baseline"].max_test_per_class
    # the test set is never sub-sampled per family: every pair of rows is compared on the same images
    assert len({p.max_test_per_class for p in by_id.values()}) == 1


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
