"""Rendering the study: notebooks executed with papermill, exported to HTML with nbconvert and printed to PDF by Chromium."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from ..figures import insight
from ..results import tables
from ..atomic import atomic_write_text
from .batch import KERNEL, cpu_jobs, kernel_config

log = logging.getLogger(__name__)


# Headless on a machine with no display and a closed network: without the networking flags Chromium keeps
# dialling Google's services at every start. The tests' browser uses the same flags.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium() -> str | None:
    """Return a headless-capable Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def print_css(header: str) -> str:
    """Return the `<style>` that lays the page out for print, with `header` at the top of every page."""
    rules = (Path(__file__).with_name("print.css")).read_text()
    top = (f"@page {{ @top-left {{ content: {json.dumps(header, ensure_ascii=False)}; font: 8pt sans-serif; "
           "color: #555; } }")
    return f"<style type=\"text/css\">\n{rules}\n{top}\n</style>\n"


def to_html(notebook: Path, html_path: Path, header: str = "") -> Path:
    """Export an executed notebook to one self-contained HTML file without code cells, laid out for print too."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace("</head>", print_css(header or html_path.stem) + "</head>", 1)
    atomic_write_text(html_path, body)
    return html_path


def to_pdf(html_path: Path, pdf_path: Path, timeout: int = 180) -> Path | None:
    """Print the HTML to PDF with headless Chromium; return None (and say why) when none is installed."""
    exe = chromium()
    if exe is None:
        log.warning("no PDF: Chromium is not installed (apt-get install chromium); the HTML report is complete")
        return None
    tmp = pdf_path.with_suffix(".tmp.pdf")
    try:
        with tempfile.TemporaryDirectory(prefix="foodcnn-chromium-") as profile:  # a fresh profile: no lock
            cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
                   f"--print-to-pdf={tmp}", html_path.resolve().as_uri()]
            subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
        tmp.replace(pdf_path)
        return pdf_path
    except (subprocess.SubprocessError, OSError) as e:
        log.warning("no PDF: Chromium failed (%s); the HTML report is complete", e)
        return None


def _execute(notebook: Path, executed: Path, parameters: dict) -> None:
    """Execute one notebook with papermill into `executed` (encrypted kernel sockets, no progress bar)."""
    import papermill as pm

    pm.execute_notebook(str(notebook), str(executed), kernel_name=KERNEL, parameters=parameters,
                        progress_bar=False, log_output=False, shutdown_kernel="immediate", config=kernel_config())


def _page(study: tables.Study, rid: str, out_dir: Path, notebooks_dir: Path) -> Path | None:
    """Execute visualise.ipynb for one representative run and export it to HTML; None (and a warning) if it fails."""
    res = study.results
    path = res[(res["id"] == rid) & (res["seed"] == 0)].iloc[0]["path"]
    executed = out_dir / f"{insight.page_name(study.profile, rid)}.ipynb"
    try:
        _execute(notebooks_dir / insight.VISUALISE, executed,
                 {"run_dir": str(Path(path).resolve()), "compare_dirs": [], "max_images": 8})
    except Exception as e:  # one broken page must not cost the whole report
        log.warning("visualisation page of %s failed (%s: %s); see %s", rid, type(e).__name__, e, executed)
        return None
    return to_html(executed, executed.with_suffix(".html"))


def render_visualisations(study: tables.Study, out_dir: str | Path, notebooks_dir: str | Path = "notebooks",
                          pool: Executor | None = None) -> list[Path]:
    """Execute visualise.ipynb for each representative into out_dir and export HTML; return the HTML paths.

    The pages run in `pool` (default: one of cpu_jobs() threads of its own), each in its own kernel.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=cpu_jobs())
    try:
        pages = list(pool.map(lambda rid: _page(study, rid, out_dir, Path(notebooks_dir)),
                              insight.representatives(study.results)))
    finally:
        if own:
            pool.shutdown()
    return [p for p in pages if p is not None]


def render(profile: str, runs_dir: str | Path = "runs", params_dir: str | Path = "params",
           notebooks_dir: str | Path = "notebooks", out_dir: str | Path = "reports",
           jobs: int | None = None) -> dict[str, Path | None]:
    """Execute the summary notebook and the per-model pages for a profile, `jobs` notebooks at a time, and export
    them to out_dir as HTML (and the summary as PDF where possible)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study = tables.collect(runs_dir, profile, params_dir)
    executed = out_dir / f"summary-{profile}.ipynb"
    # The summary only links to the pages (by name), so it runs beside them; it is the longest, so it starts first.
    with ThreadPoolExecutor(max_workers=jobs or cpu_jobs()) as pool:
        summary = pool.submit(_execute, Path(notebooks_dir) / "summary.ipynb", executed,
                              {"profile": profile, "runs_dir": str(Path(runs_dir).resolve()),
                               "params_dir": str(Path(params_dir).resolve())})
        render_visualisations(study, out_dir, notebooks_dir, pool)
        summary.result()
    html_path = to_html(executed, out_dir / f"foodcnn-{profile}.html", header=f"foodcnn · profile {profile}")
    pdf_path = to_pdf(html_path, out_dir / f"foodcnn-{profile}.pdf")
    return {"notebook": executed, "html": html_path, "pdf": pdf_path}
