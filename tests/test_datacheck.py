"""`data check` on made-up trees, and real-photo-like JPEGs (mixed sizes, grayscale, CMYK) through caches and report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import write_food101
from foodcnn.pipeline import cli
from foodcnn.data import subsets, check as datacheck
from foodcnn.stats import comparisons
from foodcnn.results import tables as report, significance
from foodcnn.training import train

ROOT = Path(__file__).resolve().parents[1]


def _mixed_tree(root: Path, n_train: int = 6, n_test: int = 3) -> tuple[Path, dict[str, str]]:
    """A 3-class tree of 64x64 JPEGs (as realfood64) where a few are full-resolution, grayscale or CMYK.

    Returns the food-101 folder and key -> what was changed.
    """
    base = write_food101(root, ["apple_pie", "baklava", "bibimbap"], n_train, n_test, size=(64, 64))
    rng = np.random.default_rng(5)
    meta = {s: json.loads((base / "meta" / f"{s}.json").read_text()) for s in ("train", "test")}
    makers = {
        "512x384 RGB": lambda: Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)),
        "384x512 RGB": lambda: Image.fromarray(rng.integers(0, 256, (512, 384, 3), dtype=np.uint8)),
        "grayscale": lambda: Image.fromarray(rng.integers(0, 256, (150, 200), dtype=np.uint8)),
        "cmyk": lambda: Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).convert("CMYK"),
    }
    changed = {}
    for split in ("train", "test"):
        for key, (what, make) in zip(meta[split]["baklava"], makers.items()):
            make().save(base / "images" / f"{key}.jpg", format="JPEG", quality=90)
            changed[key] = what
    return base, changed


def test_data_check_reports_what_a_made_up_tree_holds(tmp_path, capsys):
    base, changed = _mixed_tree(tmp_path)
    assert cli.main(["data", "check", "--out", str(tmp_path)]) == 0  # the folder holding food-101/ will do
    out = capsys.readouterr().out
    assert "synthetic: no" in out and "classes: 3" in out
    assert "train: 18 images, 6 per class" in out and "test: 9 images, 3 per class" in out
    assert "unreadable or missing: none" in out
    found = datacheck.check(base, progress=False)
    # 4 train and 3 test images of baklava were replaced, in the order of `makers`
    assert found.sizes == {(64, 64): 20, (512, 384): 2, (384, 512): 2, (200, 150): 2, (300, 300): 1}
    grey = {k for k, w in changed.items() if w == "grayscale"}
    cmyk = {k for k, w in changed.items() if w == "cmyk"}
    assert set(found.modes["L"]) == grey and set(found.modes["CMYK"]) == cmyk
    assert "grayscale (L, converted to RGB when decoded): 2" in out and "CMYK (CMYK" in out
    assert "shorter side below 224 px" in out and "22 (81 %)" in out  # all but the five sources of 300 px or more


def test_data_check_names_unreadable_missing_and_unlisted_files(tmp_path, capsys):
    base = write_food101(tmp_path, [f"c{i:02d}" for i in range(35)], 2, 1, size=(32, 32))
    meta = json.loads((base / "meta" / "train.json").read_text())
    truncated, missing = meta["c00"]
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    (base / "images" / f"{truncated}.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (base / "images" / f"{missing}.jpg").unlink()
    Image.new("RGB", (8, 8)).save(base / "images" / "c01" / "stray.jpg")
    del meta["c02"][0]  # c02 now has 1 train image, the others 2
    (base / "meta" / "train.json").write_text(json.dumps(meta))
    (base / "meta" / "train.txt").unlink()
    assert cli.main(["data", "check", "--out", str(base)]) == 1
    out = capsys.readouterr().out
    assert "unreadable or missing: 2" in out
    assert f"{truncated}: OSError" in out and f"{missing}: FileNotFoundError" in out
    assert "no split lists (never read): 2" in out  # the stray file and the image dropped from c02's list
    # 35 classes: counts are summarised, naming the classes that differ
    assert "classes with other counts than 2 / 1 (train / test): c02 (1/1)" in out
    assert "  c03 " not in out


def test_data_check_knows_synthetic_trees(tiny_synth, tmp_path):
    found = datacheck.check(tiny_synth, progress=False)
    assert found.synthetic_marker and found.synthetic
    assert "synthetic: yes: meta/SYNTHETIC written by foodcnn.data.synth (seed 0, 20 train + 10 test per class" in \
        datacheck.summary(found)
    # a synthetic tree that lost its marker still gives itself away by its class names
    unmarked = write_food101(tmp_path, ["synthetic_apple_pie", "synthetic_baklava"], 1, 1)
    found = datacheck.check(unmarked, progress=False)
    assert not found.synthetic_marker and found.synthetic
    assert "class names start with synthetic_" in datacheck.summary(found)


def test_data_check_explains_a_tree_that_is_not_food101(tmp_path, capsys):
    assert cli.main(["data", "check", "--out", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_mixed_real_jpegs_through_decode_and_feature_caches_to_the_report(tmp_path, tiny_params):
    base, changed = _mixed_tree(tmp_path / "data")
    # decode cache: 64 px sources upsampled to 96 px, 512 px ones reduced; grayscale and CMYK become RGB
    sub = subsets.load_subset(base, num_classes=3)
    decoded = subsets.decode(sub.test, 96, cache_dir=tmp_path / "cache", progress=False)
    assert decoded.images.shape == (9, 3, 96, 96) and not decoded.bad
    grey = decoded.keys.index(next(k for k, w in changed.items() if w == "grayscale" and k in decoded.keys))
    assert np.array_equal(decoded.images[grey][0], decoded.images[grey][1])  # gray is gray in all channels

    common = dict(data_root=str(base), num_classes=3, epochs=1, runs_dir=str(tmp_path / "runs"), profile="real",
                  report="X")
    scratch = train.run(tiny_params(id="x_scratch", model="baseline", image_size=37, **common))
    frozen = dict(model="resnet18", freeze="head", image_size=96, parent="x_scratch", **common)
    first = train.run(tiny_params(id="x_frozen", **frozen))
    again = train.run(tiny_params(id="x_frozen", seed=0, **{**frozen, "runs_dir": str(tmp_path / "again")}))
    for r in (scratch, first):
        assert r["status"] == "ok" and r["bad_image_count"] == 0 and r["data"]["synthetic"] is False
    assert first["feature_cache"] and again["features_from_disk"] == ["train", "val", "test"]

    study = report.collect(tmp_path / "runs", "real", ROOT / "params")
    assert set(study.results["data_kind"]) == {comparisons.REAL}
    t = report.table(study, "X").set_index("id")
    assert t.loc["x_frozen", "scale"] == "6/class · 96 px · 1/1 ep"
    assert t.loc["x_scratch", "scale"] == "6/class · 37 px · 1/1 ep"
    verdict = significance.ablation_table(study).data.set_index("id").loc["x_frozen", "verdict"]
    assert verdict.split(" (MDE")[0] in ("better", "worse", "no detectable difference")  # real photos get a verdict
