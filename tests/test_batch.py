"""The batch runner and the report: a tiny batch through papermill, a failing row, resume, the HTML and PDF report."""

from __future__ import annotations

import os
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from conftest import path_without_browsers, pdf_alt_texts, read_pdf, verdict_cells

from foodcnn.pipeline import batch, rendering
from foodcnn.figures import insight
from foodcnn.results import tables
from foodcnn import params
from foodcnn.results import runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reported(tiny_synth, tmp_path_factory):
    """Three catalogue rows and one that fails at run time, batched twice (run, then resume), then reported."""
    tmp = tmp_path_factory.mktemp("batch")
    pdir = tmp / "params"
    (pdir / "profiles").mkdir(parents=True)
    for rid in ("b_baseline", "b_custom3", "b_resnet_stock"):
        shutil.copy(ROOT / "params" / f"{rid}.yaml", pdir)
    shutil.copy(ROOT / "params" / "published.csv", pdir)
    shutil.copy(ROOT / "params" / "profiles" / "tiny.yaml", pdir / "profiles")
    # passes validation, fails inside the notebook: ImageNet weights required but not in an empty TORCH_HOME
    (pdir / "x_broken.yaml").write_text("report: X\nmodel: vgg16\nfreeze: head\nchange: needs weights\n")
    overrides = {"data_root": str(tiny_synth), "num_classes": 4, "runs_dir": str(tmp / "runs"),
                 "cache_dir": str(tmp / "cache")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp / "torch_home"))
        mp.delenv("FOODCNN_ALLOW_DOWNLOAD", raising=False)
        mp.chdir(tmp)
        jobs = batch.plan("tiny", params_dir=pdir, notebooks_dir=ROOT / "notebooks", overrides=overrides)
        broken = next(j for j in jobs if j.params.id == "x_broken")
        jobs = [j if j is not broken else batch.Job(j.params.replace(pretrained="required"), j.params_file, j.notebook)
                for j in jobs]
        first = batch.run_batch(jobs, progress=False, workers=2)  # two notebooks at a time, as `make report`
        again = batch.run_batch(jobs, progress=False)  # a re-run skips finished rows and retries the failed one
        mp.setenv("PATH", path_without_browsers(tmp))  # the report of a fresh machine: no browser anywhere
        out = rendering.render("tiny", runs_dir=tmp / "runs", params_dir=pdir, notebooks_dir=ROOT / "notebooks",
                               out_dir=tmp / "reports")
    return {"first": first, "again": again, "report": out, "study": tables.collect(tmp / "runs", "tiny", pdir)}


def test_batch_runs_rows_records_failure_and_resumes(reported):
    outcomes = reported["first"]
    status = {o.job.params.id: o.status for o in outcomes}
    assert status == {"b_baseline": "ok", "b_custom3": "ok", "b_resnet_stock": "ok", "x_broken": "failed"}
    failed_dir = next(o.job.run_dir for o in outcomes if o.status == "failed")
    assert "WeightsUnavailable" in (failed_dir / runs.ERROR).read_text()
    assert (failed_dir / runs.NOTEBOOK).is_file()  # papermill still writes the notebook with the error cell
    for o in outcomes:
        if o.status == "ok":
            assert (o.job.run_dir / runs.NOTEBOOK).is_file() and runs.is_finished(o.job.run_dir, o.job.params)
    again = reported["again"]
    assert {o.job.params.id: o.status for o in again} == {
        "b_baseline": "skipped", "b_custom3": "skipped", "b_resnet_stock": "skipped", "x_broken": "failed"}
    assert "1 failed" in batch.summary(again) and "x_broken" in batch.summary(again)


def test_report_html(reported):
    html = reported["report"]["html"].read_text()
    assert "published test %" in html and "Δ test (pp)" in html  # measured beside published
    assert "b_custom3" in html and "46.92" in html  # a row and its published test accuracy
    assert "Synthetic data" in html  # the banner
    verdicts = verdict_cells(html)  # synthetic runs: the claims and the ablation are pipeline checks, not verdicts
    assert "pipeline check (synthetic)" in verdicts and not {"supported", "refuted", "better", "worse"} & set(verdicts)
    assert "750/class · 224 px" in html  # the reports' scale beside each row's
    assert "x_broken" in html  # the failed row is listed
    assert "report.collect(" not in html and "from foodcnn." not in html  # no code cells


# In the browser: images that did not load, and tables wider than their cell (the page would scroll or cut them)
BROKEN_IMAGES = "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 60))"
OVERFLOWING_TABLES = """tables => tables.filter(t => {
    const cell = t.closest(".jp-Cell") || document.body;
    return t.getBoundingClientRect().right > cell.getBoundingClientRect().right + 1;
  }).map(t => t.querySelector("th") ? t.querySelector("th").textContent : t.outerHTML.slice(0, 60))"""
PRINT_WIDTH_PX = 1032  # A4 landscape less print.css's 12 mm side margins, at 96 px per inch


def test_report_in_the_browser(reported, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(reported["report"]["html"].as_uri())
    assert page.locator("img").count() > 0 and page.eval_on_selector_all("img", BROKEN_IMAGES) == []
    assert page.locator("table").count() > 0 and page.eval_on_selector_all("table", OVERFLOWING_TABLES) == []
    page.emulate_media(media="print")  # the layout the PDF is printed from
    page.set_viewport_size({"width": PRINT_WIDTH_PX, "height": 900})
    assert page.eval_on_selector_all("table", OVERFLOWING_TABLES) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PRINT_WIDTH_PX
    page.emulate_media(media="screen")
    links = page.eval_on_selector_all("a[href$='.html']", "links => links.map(a => a.href)")
    assert links and len(links) == len(insight.representatives(reported["study"].results))
    for link in links:  # each per-model page exists and shows its figures
        page.goto(link)
        assert page.locator("img").count() >= 7 and page.eval_on_selector_all("img", BROKEN_IMAGES) == []
    page.close()


def _column_headers(html: str) -> list[list[str]]:
    """Return the column headers of every table of a report page, table by table."""
    return [[" ".join(unescape(re.sub(r"<[^>]+>", "", h)).split()) for h in re.findall(r"<th[^>]*>(.*?)</th>", t, re.S)]
            for t in re.findall(r"<thead>(.*?)</thead>", html, re.S)]


def test_report_html_figures_carry_their_words_and_tables_read_as_written(reported):
    html = reported["report"]["html"].read_text()
    alts = [unescape(a) for a in re.findall(r'<img [^>]*alt="([^"]*)"', html)]
    assert len(alts) == html.count("<img ") > 5  # every figure, none with nbconvert's "No description" stand-in
    assert all(len(a) > 60 and "No description" not in a for a in alts)
    cells = [unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)]
    assert not [c for c in cells if re.fullmatch(r"-?[\d,]+\.\d*0000|True|False|nan|None", c)]  # no 15.800000
    assert not [h for t in _column_headers(html) for h in t if h == "index"]
    assert re.search(r">\d{1,3},\d{3}(,\d{3})*<", html)  # parameter counts with thousands separators


def test_report_pdf_reads_as_a_person_reads_it(reported):
    """The PDF, read back with pypdf: pages, the header on each, whole tables, the banner, figures with words."""
    pdf, html = reported["report"]["pdf"], reported["report"]["html"].read_text()
    assert pdf is not None, reported["report"]["pdf_problem"]
    pages = read_pdf(pdf)
    assert len(pages) > 3 and all(round(p.width) == 842 and round(p.height) == 595 for p in pages)  # A4 landscape
    for i, page in enumerate(pages, 1):
        assert "foodcnn · profile tiny" in page.text and f"page {i} of {len(pages)}" in page.text
        right = page.width - 12 * 72 / 25.4  # print.css's 12 mm margin: nothing runs past it, nothing is cut
        assert max(x for x, _, _ in page.starts) < right
    assert "Synthetic data." in pages[0].text  # the banner
    for headers in _column_headers(html):  # every table's columns, the last one too, in a row on one page
        assert any(" ".join(headers) in p.text for p in pages), headers
    alts = [unescape(a) for a in re.findall(r'<img [^>]*alt="([^"]*)"', html)]
    assert pdf_alt_texts(pdf) == alts  # each figure's /Alt in the tagged PDF
    text = " ".join(p.text for p in pages)
    assert all(" ".join(a.split()) in text for a in alts)  # ... and printed as its caption
    assert any("rows with a published figure" in a and "pp" in a for a in alts)


def test_plan_validates_every_row_before_running(tmp_path):
    pdir = tmp_path / "params"
    pdir.mkdir()
    (pdir / "ok.yaml").write_text("lr: 0.001\n")
    (pdir / "bad.yaml").write_text("lr: -1\n")
    with pytest.raises(params.ParamsError, match="bad.yaml"):
        batch.plan("", params_dir=pdir, notebooks_dir=ROOT / "notebooks")
    with pytest.raises(params.ParamsError, match="Did you mean 'ok'"):
        batch.select(["okk"], params_dir=pdir)


def test_seeds_expand_into_runs(tmp_path):
    pdir = tmp_path / "params"
    pdir.mkdir()
    (pdir / "row.yaml").write_text("seeds: [0, 3]\n")
    jobs = batch.plan("", params_dir=pdir, notebooks_dir=ROOT / "notebooks")
    assert [j.params.seed for j in jobs] == [0, 3]
    assert jobs[0].run_dir != jobs[1].run_dir


def test_each_kernel_gets_its_own_gpu_and_a_share_of_the_cores(tiny_params, tmp_path, monkeypatch):
    import json

    import torch

    from conftest import write_probe_notebook

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # a machine with two GPUs
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    nb = write_probe_notebook(tmp_path / "probe.ipynb")
    jobs = [batch.Job(tiny_params(id=rid), Path("probe.yaml"), nb) for rid in ("a", "b", "c")]
    executor = batch.Threads()
    assert executor.workers == 2  # one run per GPU by default

    outcomes = batch.run_batch(jobs, progress=False, executor=executor)
    assert [o.status for o in outcomes] == ["ok", "ok", "ok"]
    seen = {o.job.params.id: json.loads((o.job.run_dir / runs.RESULT).read_text()) for o in outcomes}
    first_two = [rid for rid in seen if len(seen[rid]["saw_started"]) == 2 and rid in seen[rid]["saw_started"]][:2]
    assert len(first_two) == 2  # they waited for each other: both kernels ran at once
    assert {seen[r]["gpu"] for r in first_two} == {"0", "1"}  # ... each on its own GPU
    assert all(s["gpu"] in ("0", "1") for s in seen.values())  # the third got the GPU a finished run gave back
    assert all(o.gpu == seen[o.job.params.id]["gpu"] for o in outcomes)  # the outcome says which
    assert {s["omp"] for s in seen.values()} == {str(max(1, (os.cpu_count() or 1) // 2))}


def test_without_gpus_nothing_is_pinned_and_jobs_overrides(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(batch.os, "cpu_count", lambda: 2)
    plain = batch.Threads()  # two kernels at a time on the two cores, one thread each
    assert plain.workers == 2 and plain.kernel_env(batch.GpuPool(plain.gpus).acquire()) == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setattr(batch.os, "cpu_count", lambda: 1)
    assert batch.Threads().workers == 1 and batch.Threads().kernel_env(None) == {}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1,GPU-5e1f")  # the user's selection is what kernels are given
    assert batch.visible_gpus() == ["3", "1", "GPU-5e1f"]  # (torch counts 4 on this fake machine: the list wins)
    assert batch.Threads(workers=1).workers == 1


def test_a_gpu_goes_to_the_next_run_only_once_its_run_ended():
    pool = batch.GpuPool(["0", "1"])
    a, b = pool.acquire(), pool.acquire()
    assert {a, b} == {"0", "1"}
    assert pool.acquire() in ("0", "1")  # more runs than GPUs (--jobs 3): the least busy one is shared
    pool.release(a)
    pool.release(b)
    assert pool.acquire() == b  # b's GPU now carries nobody, a's still one run


def test_each_row_goes_to_its_family_notebook():
    rows = batch.catalogue(ROOT / "params")
    notebook = {rid: batch.notebook_for(params.load(path)) for rid, path in rows.items()}
    assert notebook["a_baseline"] == notebook["b_baseline"] == "baseline.ipynb"
    assert {notebook[r] for r in ("a_new_ini", "b_custom1", "b_custom3", "a_new_arc", "b_custom7")} == {"custom.ipynb"}
    assert notebook["a_vgg16"] == notebook["b_vgg5"] == "vgg.ipynb"
    assert notebook["a_resnet18"] == notebook["b_resnet6"] == "resnet.ipynb"
    assert notebook["x_effnet_stock"] == "transfer.ipynb"


def test_notebook_kernels_do_not_warn_about_tcp(tmp_path, capfd):
    # Every kernel started over TCP logs ipykernel's "running over TCP without encryption" to the batch's output.
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('ran')")],
                                  metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nbformat.write(nb, tmp_path / "nb.ipynb")
    job = batch.Job(params.from_mapping({"id": "x", "runs_dir": str(tmp_path / "runs")}), tmp_path / "x.yaml",
                    tmp_path / "nb.ipynb")
    batch.execute(job)
    assert "ran" in (job.run_dir / runs.NOTEBOOK).read_text()  # the kernel did run the notebook
    assert "without encryption" not in capfd.readouterr().err


def test_a_stale_result_goes_and_a_damaged_one_is_kept_aside(tiny_params, tmp_path, caplog):
    # batch trains a row again when its result.json is damaged or of other parameters; a damaged file is somebody's
    # data: it is kept beside the run with a warning, never silently deleted
    p, rdir = tiny_params(), tmp_path / "run"
    rdir.mkdir()
    (rdir / runs.RESULT).write_text('{"status": "ok",')
    batch.clear_stale_result(rdir, p)
    assert not (rdir / runs.RESULT).exists() and (rdir / "result.json.damaged").read_text() == '{"status": "ok",'
    assert "result.json is damaged (JSONDecodeError" in caplog.text and "trained again" in caplog.text

    runs.write_result(rdir, {"status": "ok", "fingerprint": p.fingerprint()})
    batch.clear_stale_result(rdir, p)
    assert runs.is_finished(rdir, p)  # this job's own finished result stays
    batch.clear_stale_result(rdir, tiny_params(epochs=3))
    assert not (rdir / runs.RESULT).exists()  # another job's result must not stand for it
