"""Tests for foodcnn.figures.explore: the explorer's figure and controls, its notebook headless and in JupyterLab."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from conftest import GUARD_S, image_axes, png_outputs
from foodcnn.pipeline import batch
from foodcnn.figures import explore

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_finished_runs_lists_finished_runs_first_one_first(tiny_runs):
    root = tiny_runs["t_base"].path.parents[2]
    both = {tiny_runs["t_base"].path, tiny_runs["t_resnet"].path}
    assert set(explore.finished_runs(root, "adhoc")) == both
    first = explore.finished_runs(root, "adhoc", run_dir=tiny_runs["t_resnet"].path)
    assert first[0] == tiny_runs["t_resnet"].path and set(first) == both


def test_explorer_follows_its_controls(tiny_runs):
    paths = [tiny_runs["t_base"].path, tiny_runs["t_resnet"].path]
    fig = explore.figure(tiny_runs["t_resnet"], "conv1", image_index=2, channel=5)
    assert image_axes(fig) == 3 and "channel 5 of 64" in fig.axes[1].get_title()
    ex = explore.Explorer(paths)
    assert ex.layer_box.value == "features.conv3.conv" and ex.channel_box.max == 127
    assert ex.image_box.max == len(tiny_runs["t_base"].predictions["keys"]) - 1
    first = ex.picture.value
    ex.image_box.value = 4
    assert ex.picture.value != first and not ex.message.value
    ex.run_box.value = str(tiny_runs["t_resnet"].path)
    assert "conv1" in [v for _, v in ex.layer_box.options] and ex.layer_box.value == "layer2.1.conv2"
    ex.layer_box.value = "conv1"
    assert ex.channel_box.max == 63


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
