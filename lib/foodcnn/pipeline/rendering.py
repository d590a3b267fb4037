"""Rendering the study: notebooks executed with papermill, exported to HTML with nbconvert, printed to PDF by WeasyPrint."""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from ..figures import insight
from ..results import tables
from ..atomic import atomic_write_text
from .batch import KERNEL, cpu_jobs, kernel_config

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# WeasyPrint is a wheel from PyPI; what it needs beyond Python is Pango (1.44 or later), which desktop Linux and
# macOS have and minimal containers may not: https://doc.courtbouillon.org/weasyprint/stable/first_steps.html
INSTALL_WEASYPRINT = "pip install weasyprint (make setup installs it)"
INSTALL_PANGO = ("install Pango: apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 "
                 "(Debian, Ubuntu), dnf install pango (Fedora), brew install pango (macOS)")


class PdfUnavailable(RuntimeError):
    """The PDF could not be made; the message says why and what to install, in one line."""


def print_css(header: str) -> str:
    """Return the `<style>` that lays the page out for print, with `header` at the top of every page."""
    rules = (HERE / "print.css").read_text()
    top = (f"@page {{ @top-left {{ content: {json.dumps(header, ensure_ascii=False)}; font: 8pt sans-serif; "
           "color: #555; } }")
    return f"<style type=\"text/css\">\n{rules}\n{top}\n</style>\n"


def to_html(notebook: Path, html_path: Path, header: str = "") -> Path:
    """Export an executed notebook to one self-contained HTML file without code cells, laid out for print too.

    Figures that carry alt text (figures/registry.py) become <figure>s with that text as alt and caption
    (report.html.j2).
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(template_name="lab", template_file=str(HERE / "report.html.j2"), exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace("</head>", print_css(header or html_path.stem) + "</head>", 1)
    atomic_write_text(html_path, body)
    return html_path


def _weasyprint():
    """Return the weasyprint module, or raise PdfUnavailable saying what to install."""
    # WeasyPrint logs its steps (from its import on) and warns about every rule of JupyterLab's screen CSS it does not
    # print (scrollbars, @keyframes, hover); fontTools logs each font it subsets: lines that say nothing of the report.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    try:
        import weasyprint
    except ImportError:
        raise PdfUnavailable(f"no PDF: WeasyPrint is not installed; {INSTALL_WEASYPRINT}") from None
    except OSError as e:  # the wheel is there, the system's Pango is not
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PdfUnavailable(f"no PDF: WeasyPrint cannot load Pango ({first}); {INSTALL_PANGO}") from None
    return weasyprint


def to_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print the HTML to an A4 landscape PDF with WeasyPrint (print.css: header, page numbers, whole tables).

    The PDF is tagged, so each figure's alt text is its /Alt in the PDF too. Raises PdfUnavailable, with one line
    saying why and what to install, when it cannot be made; the HTML is left as it is.
    """
    weasyprint = _weasyprint()
    tmp = pdf_path.with_name(f".{pdf_path.name}.tmp")
    try:
        weasyprint.HTML(filename=str(html_path)).write_pdf(str(tmp), pdf_tags=True)
        tmp.replace(pdf_path)
    except Exception as e:  # noqa: BLE001 (any renderer failure: the HTML is complete, say why in one line)
        tmp.unlink(missing_ok=True)
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise PdfUnavailable(f"no PDF: WeasyPrint failed on {html_path.name} ({type(e).__name__}: {reason}); "
                             f"the HTML report is complete") from e
    return pdf_path


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
           jobs: int | None = None) -> dict[str, Path | str | None]:
    """Execute the summary notebook and the per-model pages for a profile, `jobs` notebooks at a time, export them
    to out_dir as HTML, then print the summary to PDF.

    Returns the paths: notebook, html, pdf (None when it could not be made) and pdf_problem (why, or None).
    """
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
    pdf_path = out_dir / f"foodcnn-{profile}.pdf"
    pdf_path.unlink(missing_ok=True)  # an old PDF beside a new HTML would say the render worked
    try:
        return {"notebook": executed, "html": html_path, "pdf": to_pdf(html_path, pdf_path), "pdf_problem": None}
    except PdfUnavailable as e:
        return {"notebook": executed, "html": html_path, "pdf": None, "pdf_problem": str(e)}
