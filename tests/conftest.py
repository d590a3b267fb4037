"""Shared fixtures: tiny datasets in the Food-101 layout, made by the tests themselves."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
GUARD_S = 300  # papermill's per-cell limit: a stalled kernel reply fails the test instead of hanging it


def write_food101(root: Path, classes: list[str], n_train: int, n_test: int, size=(40, 30), seed: int = 0,
                  json_meta: bool = True, txt_meta: bool = True) -> Path:
    """Write a small Food-101 tree by hand (random RGB JPEGs) and return its food-101 folder."""
    rng = np.random.default_rng(seed)
    base = root / "food-101"
    (base / "meta").mkdir(parents=True)
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    n = 0
    for c in classes:
        (base / "images" / c).mkdir(parents=True)
        for split, count in (("train", n_train), ("test", n_test)):
            for _ in range(count):
                n += 1
                key = f"{c}/{100000 + n}"
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(base / "images" / f"{key}.jpg", quality=90)
                splits[split].setdefault(c, []).append(key)
    (base / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    (base / "meta" / "labels.txt").write_text("\n".join(c.replace("_", " ").capitalize() for c in classes) + "\n")
    for split, d in splits.items():
        if json_meta:
            (base / "meta" / f"{split}.json").write_text(json.dumps(d))
        if txt_meta:
            (base / "meta" / f"{split}.txt").write_text("\n".join(k for v in d.values() for k in v) + "\n")
    return base


def verdict_cells(html: str) -> list[str]:
    """Return the cells of every "verdict" column of the pandas-styled tables in an HTML page."""
    cells = []
    for table, col in re.findall(r'id="(T_\w+?)_level0_col(\d+)"[^>]*>verdict</th>', html):
        cells += re.findall(rf'id="{table}_row\d+_col{col}"[^>]*>([^<]*)</td>', html)
    return [c.strip() for c in cells]


def image_axes(fig) -> int:
    """Return how many visible axes of a matplotlib figure show an image."""
    return sum(1 for ax in fig.axes if ax.get_visible() and ax.images)


def png_outputs(notebook: Path) -> int:
    """Return how many PNG outputs the code cells of an executed notebook hold."""
    nb = json.loads(notebook.read_text())
    return sum("image/png" in out.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for out in c["outputs"])


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A small synthetic dataset (4 classes) in the Food-101 layout."""
    from foodcnn.data import synth

    out = tmp_path_factory.mktemp("synth")
    return synth.generate(out, num_classes=4, train_per_class=20, test_per_class=10, max_side=48, seed=0,
                          progress=False)


@pytest.fixture
def tiny_params(tiny_synth, tmp_path):
    """Return a function making validated Params for a fast CPU run on the tiny dataset."""
    from foodcnn import params

    def make(**kw):
        base = dict(id="t", model="baseline", data_root=str(tiny_synth), num_classes=4, image_size=20, epochs=2,
                    batch_size=16, patience=5, progress=False, runs_dir=str(tmp_path / "runs"),
                    cache_dir=str(tmp_path / "cache"), pretrained="none")
        base.update(kw)
        return params.from_mapping(base, source="<test>")

    return make


# A stand-in for a catalogue notebook that records what its kernel was given instead of training. Runs that start
# wait (up to 2 minutes) until two have started, so the first two of a batch provably run at the same time.
# The run with id "victim" records its parent process (the one running papermill) and sleeps until killed.
PROBE_SOURCE = '''
import json, os, time
from pathlib import Path

rdir = Path(runs_dir) / (profile or "adhoc") / id / f"seed{seed}"
gate = Path(runs_dir) / "started"
gate.mkdir(exist_ok=True)
(gate / id).write_text(str(time.time()))
seen = {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "omp": os.environ.get("OMP_NUM_THREADS"), "start": time.time()}
if id == "victim":
    (Path(runs_dir) / "victim.json").write_text(json.dumps({**seen, "parent": os.getppid()}))
    time.sleep(600)
deadline = time.time() + 120
while len(list(gate.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.1)
seen["saw_started"] = sorted(f.name for f in gate.iterdir())
(rdir / "result.json").write_text(json.dumps({"status": "ok", **seen, "end": time.time()}))
'''


def write_probe_notebook(path: Path) -> Path:
    """Write the probe notebook (a `parameters` cell, then PROBE_SOURCE) to `path` and return it."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params_cell = nbformat.v4.new_code_cell("runs_dir = ''\nprofile = ''\nid = ''\nseed = 0")
    params_cell.metadata["tags"] = ["parameters"]
    nb.cells = [params_cell, nbformat.v4.new_code_cell(PROBE_SOURCE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# Debian's Chromium for the browser tests (the report's PDF needs no browser). Headless on a machine with no
# display and a closed network: without the networking flags Chromium keeps dialling Google's services.
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "firefox", "msedge")


def chromium() -> str | None:
    """Return a Chromium/Chrome executable on PATH, or None."""
    return next((path for name in BROWSERS[:4] if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (Playwright's own browser download is impossible offline)."""
    exe = chromium()
    if exe is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:  # Playwright passes --headless and a fresh profile itself
        chrome = pw.chromium.launch(executable_path=exe, args=list(CHROMIUM_FLAGS))
        yield chrome
        chrome.close()


def path_without_browsers(tmp: Path) -> str:
    """Return a PATH that finds this Python and no web browser (as on a fresh machine without one)."""
    bin_dir = tmp / "bin-without-browsers"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(sys.executable)
    path = str(bin_dir)
    assert not [b for b in BROWSERS if shutil.which(b, path=path)]
    return path


@dataclass
class PdfPage:
    """One page of a PDF as a reader meets it: its size (points), its text, where each piece of text starts."""

    width: float
    height: float
    text: str  # whitespace collapsed to single spaces
    starts: list[tuple[float, float, str]]  # (x, y, text) of every piece of text drawn


def read_pdf(path: Path) -> list[PdfPage]:
    """Return the pages of a PDF read with pypdf (from PyPI; no poppler)."""
    from pypdf import PdfReader

    pages = []
    for page in PdfReader(str(path)).pages:
        starts: list[tuple[float, float, str]] = []

        def visit(text, cm, tm, _font, _size, starts=starts):
            if text.strip():  # where the text matrix puts this piece, in page coordinates
                starts.append((tm[4] * cm[0] + tm[5] * cm[2] + cm[4], tm[4] * cm[1] + tm[5] * cm[3] + cm[5], text))

        text = page.extract_text(visitor_text=visit)
        box = page.mediabox
        pages.append(PdfPage(float(box.width), float(box.height), " ".join(text.split()), starts))
    return pages


def pdf_alt_texts(path: Path) -> list[str]:
    """Return the /Alt text of every /Figure in a tagged PDF's structure tree, in document order."""
    from pypdf import PdfReader
    from pypdf.generic import ArrayObject, DictionaryObject

    found: list[str] = []

    def walk(node) -> None:
        node = node.get_object()
        if isinstance(node, ArrayObject):
            for child in node:
                walk(child)
        elif isinstance(node, DictionaryObject) and node.get("/Type") != "/Page":
            if node.get("/S") == "/Figure" and "/Alt" in node:
                found.append(str(node["/Alt"]))
            if "/K" in node:
                walk(node["/K"])

    root = PdfReader(str(path)).trailer["/Root"]
    if "/StructTreeRoot" in root:
        walk(root["/StructTreeRoot"])
    return found


@pytest.fixture(scope="session")
def tiny_runs(tiny_synth, tmp_path_factory) -> dict:
    """Two finished one-epoch runs on the tiny dataset: the baseline at 20 px and a head-only ResNet18 at 32 px."""
    from foodcnn import params
    from foodcnn.results import runs
    from foodcnn.training import train

    tmp = tmp_path_factory.mktemp("insight")
    base = dict(data_root=str(tiny_synth), num_classes=4, epochs=1, batch_size=16, progress=False, pretrained="none",
                runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"))  # as tiny_params
    out = {}
    for rid, kw in {"t_base": dict(model="baseline", image_size=20),
                    "t_resnet": dict(model="resnet18", image_size=32, freeze="head")}.items():
        p = params.from_mapping({**base, "id": rid, **kw}, source="<test>")
        train.run(p)
        out[rid] = runs.open_run(runs.run_dir(p))
    return out
