"""The report's aggregation: run directories in, tables in the reports' order out."""

from __future__ import annotations

import json
from pathlib import Path

from foodcnn import report

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
    study = report.collect(tmp_path / "runs", "demo", ROOT / "params")
    assert list(study.results["id"]) == ["a_baseline", "a_d_lr", "a_new_arc", "a_vgg16_3x", "a_vgg16_new_lr",
                                         "a_resnet18_ron_flip", "b_custom1", "x_effnet_ft"]
    assert list(report.table(study, "A")["id"]) == ["a_baseline", "a_d_lr", "a_new_arc", "a_vgg16_3x",
                                                   "a_vgg16_new_lr", "a_resnet18_ron_flip"]
