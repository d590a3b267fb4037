"""Tests for foodcnn.figures.insight: figures and tables from real (tiny) run directories, the visualise notebook, its pages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import papermill as pm
from matplotlib.figure import Figure

from conftest import GUARD_S, image_axes, png_outputs
from foodcnn.pipeline import batch, rendering
from foodcnn.figures import insight
from foodcnn.results import tables

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PARAMS_DIR = NOTEBOOKS.parent / "params"


def test_one_run_figures_and_tables(tiny_runs):
    run = tiny_runs["t_base"]
    n_classes = run.params.num_classes
    assert image_axes(insight.filters_figure(run)) == 64
    fmaps = insight.feature_maps_figure(run)
    assert image_axes(fmaps) == 1 + 64 + 64 + 64  # the input, then up to 64 maps of 3 layers
    assert "4 conv layers" in fmaps.get_suptitle()
    assert isinstance(insight.curves_figure(run), Figure)
    assert isinstance(insight.confusion_figure(run), Figure)
    table, fig = insight.per_class(run)
    assert len(table) == n_classes and table["n"].sum() == len(run.predictions["keys"])
    assert not any(c.startswith("synthetic") or "_" in c for c in table["class"])  # names for reading
    assert isinstance(fig, Figure)
    top = insight.most_confused(run, k=3)
    assert list(top.columns) == ["true", "predicted", "count", "% of true class"] and len(top) <= 3
    assert image_axes(insight.hardest_gallery(run, k=5)) == 5
    assert image_axes(insight.cam_gallery(run, k=3)) == 6  # three images above their overlays


def test_side_by_side_and_overview(tiny_runs):
    both = [tiny_runs["t_base"], tiny_runs["t_resnet"]]
    fig = insight.side_by_side(both, n_images=3)
    assert image_axes(fig) == 2 * 3
    assert sum(1 for ax in fig.axes if ax.get_ylabel()) == 2  # one labelled row per run
    assert image_axes(insight.filters_overview(both)) == 2


def test_representatives_picks_best_finished_seed0_per_family():
    rows = pd.DataFrame([
        {"id": "a_baseline", "seed": 0, "model": "baseline", "status": "ok", "test_acc": 0.30},
        {"id": "b_custom3", "seed": 0, "model": "baseline", "status": "ok", "test_acc": 0.40},
        {"id": "b_custom3", "seed": 1, "model": "baseline", "status": "ok", "test_acc": 0.90},  # seed 1: not shown
        {"id": "b_resnet1", "seed": 0, "model": "resnet18", "status": "diverged", "test_acc": 0.20},
        {"id": "b_resnet2", "seed": 0, "model": "resnet18", "status": "ok", "test_acc": None},
        {"id": "a_vgg16", "seed": 0, "model": "vgg16", "status": "ok", "test_acc": 0.10},
        {"id": "x_new", "seed": 0, "model": "some_new_net", "status": "ok", "test_acc": 0.50},
        {"id": "a_custom", "seed": 0, "model": "custom_a", "status": "ok", "test_acc": 0.35},
    ])
    assert insight.representatives(rows) == ["b_custom3", "a_custom", "a_vgg16", "b_resnet1", "x_new"]
    assert insight.representatives(pd.DataFrame()) == []


def test_visualise_notebook_headless(tiny_runs, tmp_path):
    assert set(pm.inspect_notebook(str(NOTEBOOKS / "visualise.ipynb"))) == {"run_dir", "compare_dirs", "max_images"}
    out = tmp_path / "visualise.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "visualise.ipynb"), str(out), kernel_name=batch.KERNEL,
                        parameters={"run_dir": str(tiny_runs["t_base"].path),
                                    "compare_dirs": [str(tiny_runs["t_resnet"].path)], "max_images": 3},
                        progress_bar=False, cwd=str(tmp_path), execution_timeout=GUARD_S)
    assert png_outputs(out) == 8  # curves, filters, maps, confusion, per class, hardest, CAM, side by side


def test_render_visualisations_writes_a_page_per_representative(tiny_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tiny_runs["t_base"].path.parents[2]
    study = tables.collect(root, "adhoc", PARAMS_DIR)
    study.results = study.results[study.results["id"] == "t_base"]  # one page is enough to test the wiring
    pages = rendering.render_visualisations(study, tmp_path / "reports", NOTEBOOKS)
    assert [p.name for p in pages] == ["visualise-adhoc-t_base.html"]
    assert pages[0].read_text().count("<img") >= 7
    assert "visualise-adhoc-t_base.html" in insight.visualisation_links(study)
