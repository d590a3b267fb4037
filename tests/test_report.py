"""The report's aggregation: run directories in, tables and figures in the reports' order out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import verdict_cells
from foodcnn.figures import summary
from foodcnn.results import tables, significance

ROOT = Path(__file__).resolve().parents[1]


def _fake_run(runs_dir: Path, rid: str, test_acc: float) -> None:
    rdir = runs_dir / "demo" / rid / "seed0"
    rdir.mkdir(parents=True)
    (rdir / "params.yaml").write_text(f"id: {rid}\nseed: 0\nreport: {rid[0].upper()}\nmodel: baseline\n")
    (rdir / "result.json").write_text(json.dumps({"status": "ok", "model": "baseline", "test_acc": test_acc,
                                                  "image_size": 37, "data": {"synthetic": True}}))


def test_rows_follow_the_reports_catalogue_order(tmp_path):
    # SPEC §4's order, not the alphabet: a_new_arc comes after a_d_lr, a_vgg16_new_lr after a_vgg16_3x,
    # and rows beyond the reports (x_*) come last.
    for rid in ("x_effnet_ft", "a_vgg16_new_lr", "a_new_arc", "a_resnet18_ron_flip", "b_custom1", "a_d_lr",
                "a_baseline", "a_vgg16_3x"):
        _fake_run(tmp_path / "runs", rid, 0.5)
    study = tables.collect(tmp_path / "runs", "demo", ROOT / "params")
    assert list(study.results["id"]) == ["a_baseline", "a_d_lr", "a_new_arc", "a_vgg16_3x", "a_vgg16_new_lr",
                                         "a_resnet18_ron_flip", "b_custom1", "x_effnet_ft"]
    assert list(tables.table(study, "A")["id"]) == ["a_baseline", "a_d_lr", "a_new_arc", "a_vgg16_3x",
                                                   "a_vgg16_new_lr", "a_resnet18_ron_flip"]
    assert list(tables.table(study, "A").columns) == tables.TABLE_COLUMNS  # the empty table's columns, too


CLASSES = [f"class_{i:02d}" for i in range(20)]


def _run_with_predictions(runs_dir: Path, rid: str, parent: str | None, right: int, synthetic: bool,
                          epochs_run: int = 2, seed: int = 0) -> None:
    """A finished run of 100 test images (5 per class) that gets the first `right` of them right."""
    import numpy as np

    rdir = runs_dir / "demo" / rid / f"seed{seed}"
    rdir.mkdir(parents=True)
    (rdir / "params.yaml").write_text(f"id: {rid}\nseed: {seed}\nreport: {rid[0].upper()}\nmodel: baseline\n"
                                      f"parent: {parent or 'null'}\nchange: a change\nepochs: 25\n")
    classes = [f"synthetic_{c}" for c in CLASSES] if synthetic else CLASSES
    data = {"synthetic": synthetic, "classes": classes, "counts": {"train": 240, "val": 60, "test": 100}}
    (rdir / "result.json").write_text(json.dumps({
        "status": "ok", "model": "baseline", "test_acc": right / 100, "image_size": 37, "epochs_run": epochs_run,
        "data": data}))
    y = np.repeat(np.arange(20), 5)
    pred = np.where(np.arange(100) < right, y, (y + 1) % 20)
    np.savez(rdir / "predictions.npz", keys=np.array([f"k{i}" for i in range(100)]), y_true=y, y_pred=pred)


def _pair_study(tmp_path: Path, synthetic: bool) -> tables.Study:
    # b_custom3 (an extra pool) clearly beats b_baseline: real runs would support report B's claim.
    _run_with_predictions(tmp_path / "runs", "b_baseline", None, 5, synthetic)
    _run_with_predictions(tmp_path / "runs", "b_custom3", "b_baseline", 60, synthetic, epochs_run=7)
    return tables.collect(tmp_path / "runs", "demo", ROOT / "params")


def test_synthetic_runs_get_pipeline_checks_not_verdicts(tmp_path):
    study = _pair_study(tmp_path, synthetic=True)
    claims = significance.claims_table(study)
    assert claims.data.set_index("child").loc["b_custom3", "verdict"] == "pipeline check (synthetic)"
    assert claims.data.set_index("child").loc["b_custom3", "p"] < 1e-6  # the statistics are still shown
    ablation = significance.ablation_table(study)
    assert list(ablation.data["verdict"]) == ["pipeline check (synthetic)"]
    for styler in (claims, ablation):
        cells = verdict_cells(styler.to_html())
        assert len(cells) == len(styler.data) and not {"supported", "refuted", "better", "worse"} & set(cells)
    assert "Pipeline check on synthetic data" in summary.ablation_figure(study).axes[0].get_title()
    overview = significance.claims_overview(study)
    assert "pipeline check" in overview and "synthetic dataset" in overview
    assert not re.search(r"supported|refuted|cannot tell", overview)


def test_real_runs_get_verdicts(tmp_path):
    study = _pair_study(tmp_path, synthetic=False)
    claims = significance.claims_table(study).data.set_index("child")
    assert claims.loc["b_custom3", "verdict"] == "supported"
    assert list(significance.ablation_table(study).data["verdict"]) == ["better"]
    assert "supported" in verdict_cells(significance.claims_table(study).to_html())
    assert "Pipeline check" not in summary.ablation_figure(study).axes[0].get_title()
    assert significance.claims_overview(study).startswith("Claims: **1** supported")


def test_an_undecided_claim_says_what_the_data_could_have_shown(tmp_path):
    # 60 vs 58 of 100 right, on the same images: two networks that differ on 2 images cannot be told apart
    _run_with_predictions(tmp_path / "runs", "b_baseline", None, 58, synthetic=False)
    _run_with_predictions(tmp_path / "runs", "b_custom3", "b_baseline", 60, synthetic=False)
    study = tables.collect(tmp_path / "runs", "demo", ROOT / "params")
    row = significance.claims_table(study).data.set_index("child").loc["b_custom3"]
    assert row["verdict"] == f"cannot tell (MDE {row['MDE (pp)']:.1f} pp)" and row["unit"] == "these two networks"
    assert row["MDE (pp)"] == pytest.approx(100 * 2.801585 * (2 / 100 / 100) ** 0.5, rel=1e-5)  # psi = 2 / 100
    assert "median MDE 4.0 pp" in significance.claims_overview(study)
    findings = significance.findings_table(study).data
    assert list(findings.columns[:10]) == ["finding", "evidence", "estimate (pp)", "interval", "p", "Holm p",
                                           "MDE (pp)", "published (pp)", "verdict", "unit"]
    assert "How each comparison is tested" in significance.methods(study)
    assert "about two trained networks, not about the recipes" in significance.methods(study)


def test_tables_give_each_rows_scale_and_flag_chance_level_rows(tmp_path):
    study = _pair_study(tmp_path, synthetic=False)
    t = tables.table(study, "B").set_index("id")
    assert t.loc["b_baseline", "scale"] == "15/class · 37 px · 2/25 ep"
    assert t.loc["b_custom3", "scale"] == "15/class · 37 px · 7/25 ep"
    # 5 of 100 right with 20 classes is guessing; 60 of 100 is not
    assert t.loc["b_baseline", "vs chance"].startswith("⚠ at chance")
    assert t.loc["b_custom3", "vs chance"] == "above"
    html = tables.styled(tables.table(study, "B")).to_html()
    assert "750/class · 224 px · up to 25 ep" in html  # the reports' scale beside ours
    claims = significance.claims_table(study).data.set_index("child")
    assert claims.loc["b_custom3", "scale"] == "15/class · 37 px · 7/25 ep; 15/class · 37 px · 2/25 ep"
    assert "scale" in tables.cost_table(study).columns and "scale" in significance.seed_table(study).data.columns


def test_figures_of_a_study_without_runs_say_so(tmp_path):
    study = tables.collect(tmp_path / "runs", "demo", ROOT / "params")
    for fig, text in ((summary.published_figure(study), "no runs with published figures yet"),
                      (summary.ablation_figure(study), "no row has both itself and its parent finished")):
        (ax,) = fig.axes
        assert [t.get_text() for t in ax.texts] == [text] and not ax.axison
    assert summary.curve_groups(study) == []


def test_a_study_without_finished_runs_still_renders_every_table(tmp_path):
    # a batch whose every row failed still gets its report (it lists the failures): no table may crash on it
    from foodcnn.figures import insight
    from foodcnn.results import significance

    study = tables.collect(tmp_path / "runs", "demo", ROOT / "params")
    for r in ("A", "B", "X"):
        df = tables.table(study, r)
        assert list(df.columns) == tables.TABLE_COLUMNS and df.empty
        tables.styled(df).to_html()
    for make in (significance.seed_table, significance.ablation_table, significance.claims_table,
                 significance.findings_table, tables.cost_table):
        make(study)
    tables.banner(study), tables.problems(study)
    assert tables.overview(study).startswith("No finished runs under profile `demo` yet")
    assert not insight.representative_runs(study)


def test_scale_text_shows_a_range_of_epochs_over_seeds():
    assert tables.scale_text(400, 64, [3, 5, 4], 12) == "400/class · 64 px · 3–5/12 ep"
    assert tables.scale_text(None, 64, [], None) == "?/class · 64 px · ?/? ep"


def test_damaged_or_hand_edited_run_directories_are_listed_as_failed_and_named(tmp_path, caplog):
    import logging

    import numpy as np

    runs_dir = tmp_path / "runs"
    for rid in ("a_baseline", "a_d_lr", "a_i_lr", "a_new_arc", "a_ron_flip", "b_baseline", "b_custom1"):
        _fake_run(runs_dir, rid, 0.5)
    seed0 = {rid: runs_dir / "demo" / rid / "seed0" for rid in ("a_d_lr", "a_i_lr", "a_new_arc", "a_ron_flip",
                                                                "b_baseline", "b_custom1")}
    (seed0["a_d_lr"] / "result.json").write_text('{"status": "ok", "model": ')
    result = json.loads((seed0["a_i_lr"] / "result.json").read_text())
    (seed0["a_i_lr"] / "result.json").write_text(json.dumps({**result, "test_acc": 42.28}))  # percent, by hand
    (seed0["a_new_arc"] / "result.json").write_text(json.dumps({**result, "status": "done"}))
    (seed0["a_ron_flip"] / "params.yaml").write_bytes("id: a_ron_flip\nchange: crème\n".encode("latin-1"))
    (seed0["b_baseline"] / "metrics.csv").write_text("epoch,train_loss\n1,n/a,3\n")
    (seed0["b_baseline"] / "predictions.npz").write_bytes(b"PK\x03\x04 half a zip")
    np.savez(seed0["b_custom1"] / "predictions.npz", y_true=np.zeros(3), y_pred=np.zeros(3))
    (seed0["b_custom1"] / "result.json").unlink()
    (seed0["b_custom1"] / "error.txt").write_bytes("KeyError: 'crème'\n".encode("latin-1"))
    caplog.set_level(logging.WARNING)
    study = tables.collect(runs_dir, "demo", ROOT / "params")
    assert list(study.results["id"]) == ["a_baseline", "b_baseline"]  # the readable runs are all reported
    failed = dict(zip(study.failed["id"], study.failed["error"]))
    assert set(failed) == {"a_d_lr", "a_i_lr", "a_new_arc", "a_ron_flip", "b_custom1"}
    assert f"{seed0['a_d_lr'] / 'result.json'} is damaged (JSONDecodeError" in failed["a_d_lr"]
    assert "key 'test_acc' is 42.28; accuracies are fractions from 0 to 1" in failed["a_i_lr"]
    assert "key 'status' is 'done'; a run writes one of ok, diverged" in failed["a_new_arc"]
    assert f"{seed0['a_ron_flip'] / 'params.yaml'}, line 2: not UTF-8" in failed["a_ron_flip"]
    assert failed["b_custom1"].startswith("KeyError: 'cr")  # error.txt's first line, undecodable byte replaced
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "metrics.csv is damaged" in warned and "predictions.npz is damaged" in warned
    assert ("b_baseline", 0) not in study.predictions and len(study.metrics[("b_baseline", 0)]) == 0
