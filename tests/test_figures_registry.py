"""Tests for foodcnn.figures.registry: every figure of the report is drawn with words that say what it shows."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from matplotlib.figure import Figure

from foodcnn.figures import plots, registry
from foodcnn.results import tables
from test_report import ROOT, _pair_study


@pytest.fixture(scope="module")
def pair_study(tmp_path_factory) -> tables.Study:
    """b_custom3 (60 of 100 right) against its parent b_baseline (5 of 100), on real photos."""
    return _pair_study(tmp_path_factory.mktemp("pair"), synthetic=False)


def _right(run, indices) -> int:
    p = run.predictions
    return int(sum(p["y_true"][i] == p["y_pred"][i] for i in indices))


def cases(pair: tables.Study, runs: dict) -> dict[str, tuple[tuple, dict, list[str]]]:
    """Each registered figure's arguments, and what its alt text must say (worked out here from the same data)."""
    base, resnet = runs["t_base"], runs["t_resnet"]
    pred = base.predictions
    n_test = len(pred["y_true"])
    best = plots.best_epoch(base.metrics)
    overall = 100 * float(np.mean(pred["y_true"] == pred["y_pred"]))
    hardest = np.argsort(-pred["loss"], kind="stable")[:5]
    spread = list(np.unique(np.linspace(0, n_test - 1, 3).round().astype(int)))
    study = tables.collect(base.path.parents[2], "adhoc", ROOT / "params")
    return {
        # published: ours 5 % and 60 %, the reports' 37.8 % and 46.92 %: the largest gap is b_baseline's
        "published": ((pair,), {}, ["2 rows", "b_baseline, -32.8 pp", "5.0 % against 37.8 %", "Chance is 5 %"]),
        "ablation": ((pair,), {}, ["1 row against its parent", "b_custom3 against b_baseline +55.0 pp", "1 better"]),
        "curves_grid": (({rid: m for (rid, _), m in study.metrics.items()},), {}, ["2 runs (t_base to t_resnet)"]),
        # SPEC §2: the baseline's first conv is 64 filters of 3x3; ResNet18's stem 64 of 7x7
        "filters_overview": (([base, resnet],), {}, ["2 runs (t_base, t_resnet)", "64 filters per run, 3x3 or 7x7"]),
        "feature_maps": ((base,), {"image_index": 0}, ["test image 0", "4 conv layers"]),
        "side_by_side": (([base, resnet],), {"n_images": 3}, ["The same 3 test images", "through 2 models",
                                                              f"t_base {_right(base, spread)} of 3"]),
        "curves": ((base,), {}, [f"validation accuracy {100 * best['val_acc']:.1f} %", "over 1 epoch:"]),
        "filters": ((base,), {}, ["64 of 64 filters of 3x3 over 3 input channels"]),
        "confusion": ((base,), {}, [f"on {n_test} test images", "4 classes"]),
        "per_class": ((base,), {}, [f"overall {overall:.1f} %", "4 classes"]),
        "hardest": ((base,), {"k": 5}, ["The 5 test images", f"{5 - _right(base, hardest)} of 5 wrong"]),
        "cam": ((base,), {"k": 3}, [f"{_right(base, spread)} of 3 predictions right"]),
    }


def test_every_registered_figure_has_a_case_here(pair_study, tiny_runs):
    assert sorted(cases(pair_study, tiny_runs)) == sorted(registry.FIGURES)  # a new figure is tested once registered


@pytest.mark.parametrize("name", sorted(registry.FIGURES))
def test_each_report_figure_carries_words_from_its_data(name, pair_study, tiny_runs):
    args, kwargs, says = cases(pair_study, tiny_runs)[name]
    shown = registry.show(name, *args, **kwargs)
    assert isinstance(shown.figure, Figure)
    missing = [s for s in says if s not in shown.alt]
    assert not missing, f"{name}: {shown.alt!r} does not say {missing}"
    data, metadata = shown._repr_mimebundle_()  # what a notebook stores: the PNG and, beside it, its alt text
    assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")
    assert metadata == {"image/png": {"alt": shown.alt}} and data["text/plain"] == shown.alt


def test_an_unknown_figure_name_is_refused_with_the_closest_one():
    with pytest.raises(KeyError, match="Did you mean 'published'"):
        registry.show("publishd")
