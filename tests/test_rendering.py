"""Tests for foodcnn.pipeline.rendering: figures keep their words in the HTML, the PDF needs no browser, a PDF that
cannot be made loses nothing and says why."""

from __future__ import annotations

import logging
import re
import sys
from html import unescape
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest

from conftest import path_without_browsers, pdf_alt_texts, read_pdf
from foodcnn.figures import registry
from foodcnn.pipeline import cli, rendering
from foodcnn.results import tables

ROOT = Path(__file__).resolve().parents[1]
ALT = "Test accuracy of 3 rows against epoch: best b_custom3, 61.0 % at epoch 4."
# 24 columns, wider than the page at the screen's type size: print.css must make it fit
WIDE = pd.DataFrame({f"column {i} %": [12.3456, 7.0] for i in range(23)} | {"last column": ["end", "end"]})


def executed_notebook(path: Path) -> Path:
    """Write an executed notebook as papermill leaves one: a figure shown through the registry, a wide table."""
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [20, 40, 61])
    plt.close(fig)
    data, metadata = registry.Described(fig, ALT)._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A study\n\nSome words before the figure."),
                nbformat.v4.new_code_cell("registry.show(...)", outputs=[
                    nbformat.v4.new_output("display_data", data=data, metadata=metadata)]),
                nbformat.v4.new_code_cell("tables.styled(...)", outputs=[
                    nbformat.v4.new_output("execute_result", data={"text/html": tables.styled(WIDE).to_html()},
                                           execution_count=1)])]
    nbformat.write(nb, str(path))
    return path


def test_a_figure_keeps_its_alt_text_and_caption_in_the_html(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        html = rendering.to_html(executed_notebook(tmp_path / "nb.ipynb"), tmp_path / "nb.html").read_text()
    assert "Alternative text is missing" not in caplog.text
    assert [unescape(a) for a in re.findall(r'<img [^>]*alt="([^"]*)"', html)] == [ALT]
    (caption,) = re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", html, re.S)
    assert unescape(caption).strip() == ALT


def test_the_pdf_is_printed_with_no_browser_on_path(tmp_path, monkeypatch):
    html = rendering.to_html(executed_notebook(tmp_path / "nb.ipynb"), tmp_path / "nb.html", header="a header")
    monkeypatch.setenv("PATH", path_without_browsers(tmp_path))
    pdf = rendering.to_pdf(html, tmp_path / "nb.pdf")
    pages = read_pdf(pdf)
    assert all(round(p.width) == 842 and round(p.height) == 595 for p in pages)  # A4 landscape, in points
    assert all("a header" in p.text and f"page {i} of {len(pages)}" in p.text for i, p in enumerate(pages, 1))
    assert pdf_alt_texts(pdf) == [ALT]  # the figure's words, for a screen reader of the PDF
    assert ALT in " ".join(p.text for p in pages)  # ... and printed under it
    assert "last column" in " ".join(p.text for p in pages)
    assert all(x <= p.width for p in pages for x, _, _ in p.starts)  # no text starts beyond the page's edge


def test_a_pdf_that_cannot_be_made_says_why_and_what_to_install(tmp_path, monkeypatch):
    html = rendering.to_html(executed_notebook(tmp_path / "nb.ipynb"), tmp_path / "nb.html")
    before = html.read_text()
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # as if it were not installed
    with pytest.raises(rendering.PdfUnavailable, match=r"^no PDF: WeasyPrint is not installed; pip install weasyprint"):
        rendering.to_pdf(html, tmp_path / "nb.pdf")
    fake = tmp_path / "fake"  # installed, but the system has no Pango: WeasyPrint's import raises OSError
    fake.mkdir()
    (fake / "weasyprint.py").write_text("raise OSError(\"cannot load library 'libpango-1.0-0': not found\")\n")
    monkeypatch.delitem(sys.modules, "weasyprint")
    monkeypatch.syspath_prepend(str(fake))
    with pytest.raises(rendering.PdfUnavailable, match=r"cannot load Pango .* apt-get install libpango-1.0-0") as e:
        rendering.to_pdf(html, tmp_path / "nb.pdf")
    assert "\n" not in str(e.value)
    assert html.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["fake", "nb.html", "nb.ipynb"]


def test_report_writes_the_html_and_exits_4_with_one_line_when_there_is_no_pdf(tmp_path, monkeypatch, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "foodcnn-none.pdf").write_text("an old PDF")  # must not pass for this render's
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    status = cli.main(["report", "--profile", "none", "--runs-dir", str(tmp_path / "runs"), "--params-dir",
                       str(ROOT / "params"), "--notebooks-dir", str(ROOT / "notebooks"), "--out", str(out)])
    assert status == cli.NO_PDF == 4
    assert "No finished runs" in (out / "foodcnn-none.html").read_text()
    assert not (out / "foodcnn-none.pdf").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("no PDF: WeasyPrint is not installed") and "pip install weasyprint" in err[-1]
    assert not [line for line in err if "PDF" in line and line != err[-1]]  # one line about it
