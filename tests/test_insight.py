"""Tests for foodcnn.views.insight: figures and tables from real (tiny) run directories, the explorer, and both notebooks."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
import torch
from matplotlib.figure import Figure

from foodcnn.orchestration import batch, rendering
from foodcnn.views import insight, report
from foodcnn.core import models, params, probing, runs
from foodcnn.engine import train

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PARAMS_DIR = NOTEBOOKS.parent / "params"
GUARD_S = 300  # papermill's per-cell limit: a stalled kernel reply fails the test instead of hanging it


@pytest.fixture(scope="module")
def tiny_runs(tiny_synth, tmp_path_factory) -> dict[str, runs.Run]:
    """Two finished one-epoch runs on the tiny dataset: the baseline at 20 px and a head-only ResNet18 at 32 px."""
    tmp = tmp_path_factory.mktemp("insight")
    base = dict(data_root=str(tiny_synth), num_classes=4, epochs=1, batch_size=16, progress=False, pretrained="none",
                runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"))  # as conftest's tiny_params
    out = {}
    for rid, kw in {"t_base": dict(model="baseline", image_size=20),
                    "t_resnet": dict(model="resnet18", image_size=32, freeze="head")}.items():
        p = params.from_mapping({**base, "id": rid, **kw}, source="<test>")
        train.run(p)
        out[rid] = runs.open_run(runs.run_dir(p))
    return out


def image_axes(fig: Figure) -> int:
    return sum(1 for ax in fig.axes if ax.get_visible() and ax.images)


def test_test_images_follow_predictions(tiny_runs):
    for run in tiny_runs.values():
        pred = run.predictions
        size = run.params.resolved_image_size
        images, labels = insight.test_images(run)
        assert images.dtype == torch.uint8 and tuple(images.shape) == (len(pred["keys"]), 3, size, size)
        assert labels.tolist() == pred["y_true"].tolist()
        model = insight.load_model(run)
        with torch.no_grad():  # the stored predictions come back from these images in this order
            again = model(insight.model_input(model, images)).argmax(1)
        assert again.tolist() == pred["y_pred"].tolist()
        some, some_labels = insight.test_images(run, [3, 0])
        assert torch.equal(some, images[[3, 0]]) and some_labels.tolist() == labels[[3, 0]].tolist()


def test_hooks_and_cam_layer_per_family(tiny_runs):
    # test_probing covers VGG and ResNet; here the study's own small CNNs and EfficientNet-Lite0
    custom_b = models.build("custom_b", num_classes=4)
    assert [k.split(" (")[1] for k in probing.feature_layers(custom_b)] == [
        "features.conv1.conv)", "features.conv4.conv)", "features.conv6.conv)"]
    effnet = models.build("efficientnet_lite0", num_classes=4, pretrained="none")
    labels = list(probing.feature_layers(effnet))
    assert labels[0].endswith("(conv_stem)") and labels[-1].endswith("(conv_head)")
    # the last conv is 1x1 at 20 px (baseline) and 32 px (ResNet18): Grad-CAM moves to the last map of >= 4x4
    assert insight.cam_layer(tiny_runs["t_base"]) == "features.conv3.conv"
    assert insight.cam_layer(tiny_runs["t_resnet"]) == "layer2.1.conv2"
    for run in tiny_runs.values():
        assert torch.equal(insight.first_conv_weight(run), probing.first_conv(run.model()).weight)


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
    assert insight.class_names(run)[0] == insight.pretty_class(run.result["data"]["classes"][0])
    assert insight.pretty_class("synthetic_apple_pie") == "apple pie"


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


def test_explorer_follows_its_controls(tiny_runs):
    paths = [tiny_runs["t_base"].path, tiny_runs["t_resnet"].path]
    fig = insight.explore_figure(tiny_runs["t_resnet"], "conv1", image_index=2, channel=5)
    assert image_axes(fig) == 3 and "channel 5 of 64" in fig.axes[1].get_title()
    ex = insight.Explorer(paths)
    assert ex.layer_box.value == "features.conv3.conv" and ex.channel_box.max == 127
    assert ex.image_box.max == len(tiny_runs["t_base"].predictions["keys"]) - 1
    first = ex.picture.value
    ex.image_box.value = 4
    assert ex.picture.value != first and not ex.message.value
    ex.run_box.value = str(tiny_runs["t_resnet"].path)
    assert "conv1" in [v for _, v in ex.layer_box.options] and ex.layer_box.value == "layer2.1.conv2"
    ex.layer_box.value = "conv1"
    assert ex.channel_box.max == 63


def png_outputs(notebook: Path) -> int:
    nb = json.loads(notebook.read_text())
    return sum("image/png" in out.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for out in c["outputs"])


def test_visualise_notebook_headless(tiny_runs, tmp_path):
    assert set(pm.inspect_notebook(str(NOTEBOOKS / "visualise.ipynb"))) == {"run_dir", "compare_dirs", "max_images"}
    out = tmp_path / "visualise.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "visualise.ipynb"), str(out), kernel_name=batch.KERNEL,
                        parameters={"run_dir": str(tiny_runs["t_base"].path),
                                    "compare_dirs": [str(tiny_runs["t_resnet"].path)], "max_images": 3},
                        progress_bar=False, cwd=str(tmp_path), execution_timeout=GUARD_S)
    assert png_outputs(out) == 8  # curves, filters, maps, confusion, per class, hardest, CAM, side by side


def test_explore_notebook_headless(tiny_runs, tmp_path):
    assert set(pm.inspect_notebook(str(NOTEBOOKS / "explore.ipynb"))) == {"runs_dir", "profile", "run_dir"}
    out = tmp_path / "explore.ipynb"
    root = tiny_runs["t_base"].path.parents[2]
    pm.execute_notebook(str(NOTEBOOKS / "explore.ipynb"), str(out), kernel_name=batch.KERNEL,
                        parameters={"runs_dir": str(root), "profile": "adhoc",
                                    "run_dir": str(tiny_runs["t_resnet"].path)},
                        progress_bar=False, cwd=str(tmp_path), execution_timeout=GUARD_S)
    assert png_outputs(out) == 1  # the static copy of the first selection
    text = out.read_text()
    assert "application/vnd.jupyter.widget-view+json" in text and "t_resnet" in text


def test_render_visualisations_writes_a_page_per_representative(tiny_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tiny_runs["t_base"].path.parents[2]
    study = report.collect(root, "adhoc", PARAMS_DIR)
    study.results = study.results[study.results["id"] == "t_base"]  # one page is enough to test the wiring
    pages = rendering.render_visualisations(study, tmp_path / "reports", NOTEBOOKS)
    assert [p.name for p in pages] == ["visualise-adhoc-t_base.html"]
    assert pages[0].read_text().count("<img") >= 7
    assert "visualise-adhoc-t_base.html" in insight.visualisation_links(study)


@pytest.fixture
def lab(tiny_runs, tmp_path):
    """JupyterLab on a free local port serving explore.ipynb, its parameters pointed at the tiny runs; yields its URL."""
    nb = nbformat.read(NOTEBOOKS / "explore.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = f"runs_dir = {str(tiny_runs['t_base'].path.parents[2])!r}\nprofile = 'adhoc'\nrun_dir = ''"
    nbformat.write(nb, tmp_path / "explore.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "Jupyter news?" toast over the controls
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
                               f"--ServerApp.root_dir={tmp_path}", "--allow-root", "--LabApp.news_url=None",
                               "--LabApp.extension_manager=readonly"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(GUARD_S * 2):  # until the server answers (a guard, not a timing)
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=5)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "lab.log").read_text()
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _picture(page) -> str:
    """Return the SHA-256 of the bytes the explorer's picture shows now ("" before it shows any)."""
    return page.locator(".widget-image").first.evaluate(
        """async img => {
             if (!img.src) return "";
             const bytes = await (await fetch(img.src)).arrayBuffer();
             const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
             return Array.from(digest, b => b.toString(16).padStart(2, "0")).join("");
           }""")


def _changed(page, before: str) -> str:
    """Wait until the picture differs from `before` and return its new hash (fails after the guard)."""
    for _ in range(GUARD_S * 4):
        now = _picture(page)
        if now and now != before:
            return now
        page.wait_for_timeout(250)
    pytest.fail("the explorer's figure did not change")


def test_explorer_in_jupyterlab(lab, browser, tiny_runs):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(GUARD_S * 1000)
    page.goto(f"{lab}/lab/tree/explore.ipynb")
    # running cells before the kernel is connected opens a "Select Kernel" dialog instead
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"ipykernel\) \| Idle")).wait_for()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.locator(".jp-RenderedImage img").wait_for(state="attached")  # the static copy: the last cell has run
    shown = _changed(page, "")

    def control(label: str):
        return page.locator(".widget-inline-hbox", has=page.locator("label", has_text=label)).first

    control("run").locator("select").select_option(label=next(o for o in control("run").locator("option")
                                                           .all_inner_texts() if "t_resnet" in o))
    shown = _changed(page, shown)
    control("conv layer").locator("select").select_option(index=0)
    shown = _changed(page, shown)
    for label, value in (("test image", 3), ("channel", 7)):
        readout = control(label).locator(".widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(str(value))
        page.keyboard.press("Enter")
        shown = _changed(page, shown)
    # a traceback renders as stderr; a failed draw shows in the explorer's message label, which stays empty
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    assert not [e for e in stderr if "Error" in e or "Traceback" in e], stderr
    assert page.locator(".widget-label").all_inner_texts() == ["run", "conv layer", "test image", "channel", ""]
    assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()
    page.close()
