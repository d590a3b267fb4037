"""Tests for the synthetic Food-101 generator: layout, determinism, torchvision compatibility, safety."""

import json
from pathlib import Path

import pytest
import torchvision
from PIL import Image

from foodcnn.data import synth

SMALL = dict(num_classes=3, train_per_class=4, test_per_class=3, max_side=64, progress=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return synth.generate(tmp_path_factory.mktemp("synth"), seed=0, **SMALL)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_layout_files_agree(tree):
    meta = tree / "meta"
    assert tree.name == "food-101"
    classes = _lines(meta / "classes.txt")
    assert classes == sorted(classes) == synth.class_names(3)
    assert all(c.startswith("synthetic_") for c in classes)
    assert _lines(meta / "labels.txt") == [synth._label(c) for c in classes]
    assert _lines(meta / "labels.txt")[0] == "Synthetic apple pie"

    all_ids = []
    for split, per_class in (("train", 4), ("test", 3)):
        lines = _lines(meta / f"{split}.txt")
        mapping = json.loads((meta / f"{split}.json").read_text())
        assert list(mapping) == classes
        assert lines == [e for c in classes for e in mapping[c]]
        for c in classes:
            assert len(mapping[c]) == per_class
            for entry in mapping[c]:
                cls, image_id = entry.split("/")
                assert cls == c and image_id.isdigit()
                assert (tree / "images" / f"{entry}.jpg").is_file()
        all_ids += [e.split("/")[1] for e in lines]
    assert len(all_ids) == len(set(all_ids)) == 3 * 7
    assert len(list((tree / "images").glob("*/*.jpg"))) == 3 * 7


def test_images_are_rgb_jpegs_of_varying_shape(tree):
    sizes = set()
    for path in (tree / "images").glob("*/*.jpg"):
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert max(img.size) == 64 and min(img.size) >= 0.6 * 64 - 1
            sizes.add(img.size)
    assert len(sizes) > 1


def test_torchvision_food101_opens_it(tree):
    train = torchvision.datasets.Food101(tree.parent, split="train")
    test = torchvision.datasets.Food101(tree.parent, split="test")
    assert len(train) == 3 * 4 and len(test) == 3 * 3
    assert train.classes == synth.class_names(3)
    img, label = train[5]
    assert img.mode == "RGB" and label == 1


def test_marked_synthetic(tree):
    assert synth.is_synthetic(tree)
    assert synth.SYNTH_MARKER in (tree / "README.md").read_text()
    assert "synthetic" in (tree / "README.md").read_text().lower()
    marker = json.loads((tree / "meta" / synth.SYNTH_MARKER).read_text())
    assert marker["settings"]["seed"] == 0 and marker["settings"]["num_classes"] == 3


def test_deterministic_from_seed(tree, tmp_path):
    again = synth.generate(tmp_path / "again", seed=0, **SMALL)
    other = synth.generate(tmp_path / "other", seed=1, **SMALL)
    files = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (tree / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert (tree / "meta" / "train.txt").read_text() != (other / "meta" / "train.txt").read_text()
    first = lambda root: (root / "images").glob("synthetic_apple_pie/*.jpg")  # noqa: E731
    assert {p.read_bytes() for p in first(tree)}.isdisjoint(p.read_bytes() for p in first(other))


def test_existing_tree_is_reused_or_regenerated(tmp_path):
    root = synth.generate(tmp_path, seed=0, **SMALL)
    stamp = (root / "meta" / "train.txt").stat().st_mtime_ns
    assert synth.generate(tmp_path, seed=0, **SMALL) == root
    assert (root / "meta" / "train.txt").stat().st_mtime_ns == stamp

    synth.generate(tmp_path, seed=3, **SMALL)  # other settings replace the synthetic tree
    assert json.loads((root / "meta" / synth.SYNTH_MARKER).read_text())["settings"]["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["food-101"]  # no temporary leftovers


def test_refuses_to_overwrite_a_real_tree(tmp_path):
    real = tmp_path / "food-101"
    (real / "meta").mkdir(parents=True)
    (real / "meta" / "classes.txt").write_text("apple_pie\n")
    with pytest.raises(FileExistsError, match="not a synthetic"):
        synth.generate(tmp_path, **SMALL)
    assert (real / "meta" / "classes.txt").read_text() == "apple_pie\n"
    assert not synth.is_synthetic(real)


def test_class_count_limits():
    assert len(synth.class_names(30)) == 30
    with pytest.raises(ValueError):
        synth.class_names(31)


@pytest.mark.parametrize("args, says", [
    (["--seed", "-1"], "seed must be an integer from 0 to 2**63 - 1, got -1"),
    (["--num-classes", "0"], "num_classes must be in 1..30, got 0"),
    (["--train-per-class", "0"], "train_per_class and test_per_class must be positive"),
    (["--max-side", "4"], "max_side must be at least 16, got 4"),
])
def test_data_synth_options_out_of_range_exit_2_and_write_nothing(tmp_path, capsys, args, says):
    from foodcnn.pipeline import cli

    assert cli.main(["data", "synth", "--out", str(tmp_path / "d"), *args]) == 2
    assert f"error: data synth: {says}" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
