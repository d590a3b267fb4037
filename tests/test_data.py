"""Data: the Food-101 layout reader, class subset, splits, image conversion and the decode cache."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from conftest import write_food101
from foodcnn.data import subsets, images, layout


def test_reader_counts_split_and_stratified_validation(tmp_path):
    classes = [f"class_{i:02d}" for i in range(6)]
    write_food101(tmp_path, classes, n_train=10, n_test=4)
    sub = subsets.load_subset(tmp_path, num_classes=4, val_fraction=0.2, split_seed=1)
    assert sub.classes == classes[:4]  # default subset: the first lines of classes.txt
    assert (len(sub.train), len(sub.val), len(sub.test)) == (32, 8, 16)
    assert Counter(s.label for s in sub.val) == {0: 2, 1: 2, 2: 2, 3: 2}  # stratified
    assert not {s.key for s in sub.train} & {s.key for s in sub.val}
    assert all(s.key.startswith(sub.classes[s.label] + "/") for s in sub.train + sub.val + sub.test)
    again = subsets.load_subset(tmp_path, num_classes=4, val_fraction=0.2, split_seed=1)
    assert [s.key for s in again.val] == [s.key for s in sub.val]  # seeded
    other = subsets.load_subset(tmp_path, num_classes=4, val_fraction=0.2, split_seed=2)
    assert [s.key for s in other.val] != [s.key for s in sub.val]
    assert sub.provenance()["counts"] == {"train": 32, "val": 8, "test": 16}


def test_rows_with_different_training_subsamples_are_tested_on_the_same_images(tmp_path):
    # More test images a class (12) than the cap (5): the test subsample must not depend on the training one,
    # so that two rows (a baseline at 150 images a class, a custom CNN at 40) are compared on the same images.
    classes = [f"class_{i:02d}" for i in range(4)]
    write_food101(tmp_path, classes, n_train=20, n_test=12)

    def test_keys(max_train, classes_=None, split_seed=0):
        sub = subsets.load_subset(tmp_path, classes_, num_classes=4, split_seed=split_seed,
                                  max_train_per_class=max_train, max_test_per_class=5)
        return sub, [s.key for s in sub.test]

    full, keys = test_keys(None)
    small, small_keys = test_keys(8)
    assert len(keys) == 20 and keys == small_keys
    assert [s.key for s in small.train + small.val] != [s.key for s in full.train + full.val]  # training differs
    assert test_keys(13)[1] == keys
    # the same images of a class whatever the other classes or their order
    _, reordered = test_keys(8, classes[::-1][:2])
    assert sorted(reordered) == sorted(k for k in keys if k.split("/")[0] in classes[2:])
    # a subsample, seeded by split_seed
    assert test_keys(None, split_seed=1)[1] != keys and test_keys(8, split_seed=1)[1] == test_keys(None, split_seed=1)[1]


def test_reads_txt_only_and_json_only_layouts(tmp_path):
    a = write_food101(tmp_path / "a", ["x", "y"], 5, 2, json_meta=False)
    b = write_food101(tmp_path / "b", ["x", "y"], 5, 2, txt_meta=False)
    sa, sb = subsets.load_subset(a, num_classes=2), subsets.load_subset(b, num_classes=2)
    assert [s.key.split("/")[0] for s in sa.test] == [s.key.split("/")[0] for s in sb.test]
    assert len(sa.train) + len(sa.val) == 10


def test_torchvision_can_open_what_we_read(tiny_synth):
    import torchvision

    ds = torchvision.datasets.Food101(root=str(tiny_synth.parent), split="test")
    sub = subsets.load_subset(tiny_synth, num_classes=4)
    assert len(ds) == len(sub.test)


def test_explicit_classes_and_missing_class(tmp_path):
    write_food101(tmp_path, ["a", "b", "c"], 4, 2)
    sub = subsets.load_subset(tmp_path, classes=["c", "a"])
    assert sub.classes == ["c", "a"] and {s.label for s in sub.test} == {0, 1}
    with pytest.raises(layout.DatasetError, match="key 'classes': pizza"):
        subsets.load_subset(tmp_path, classes=["a", "pizza"])


def test_missing_or_malformed_root_explains_layout(tmp_path):
    with pytest.raises(layout.DatasetError) as e:
        subsets.load_subset(tmp_path / "nothing")
    assert "does not exist" in str(e.value) and "meta/classes.txt" in str(e.value) and "data synth" in str(e.value)
    (tmp_path / "half" / "meta").mkdir(parents=True)
    with pytest.raises(layout.DatasetError, match="images/"):
        subsets.load_subset(tmp_path / "half")
    base = write_food101(tmp_path / "broken", ["a"], 2, 1)
    (base / "meta" / "train.json").write_text("{not json")
    with pytest.raises(layout.DatasetError, match="not valid JSON"):
        subsets.load_subset(base, num_classes=1)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "foodcnn.data.layout"]


def test_meta_quirks_are_read_right_with_one_warning_each(tmp_path, caplog):
    base = write_food101(tmp_path / "txt", ["apple_pie", "baklava"], 6, 3, json_meta=False)
    meta = base / "meta"
    # A Windows editor: byte-order mark and CRLF endings
    (meta / "classes.txt").write_bytes(b"\xef\xbb\xbf" + (meta / "classes.txt").read_bytes().replace(b"\n", b"\r\n"))
    ids = (meta / "train.txt").read_text().splitlines()
    (meta / "train.txt").write_text("\n".join(ids + [ids[0], ids[1]]) + "\n")  # two ids listed twice
    test_ids = (meta / "test.txt").read_text().splitlines()
    (meta / "test.txt").write_text("\n".join(test_ids + [ids[2]]) + "\n")  # a train id also listed in test
    caplog.set_level(logging.WARNING)
    sub = subsets.load_subset(base, num_classes=2, val_fraction=0.5)
    again = subsets.load_subset(base, num_classes=2, val_fraction=0.5)  # a second read warns no more
    assert sub.classes == again.classes == ["apple_pie", "baklava"]
    keys = [s.key for s in sub.train + sub.val]
    assert len(keys) == len(set(keys)) == 11 and ids[2] not in keys  # every id once; the leaked one only in test
    assert not {s.key for s in sub.train + sub.val} & {s.key for s in sub.test}
    assert len({s.key for s in sub.test}) == len(sub.test) == 7
    msgs = _warnings(caplog)
    assert len(msgs) == 3, msgs
    assert any("classes.txt" in m and "byte-order mark and Windows (CRLF)" in m for m in msgs)
    assert any("train.txt" in m and "2 repeated id(s)" in m and "lines 1 and 13" in m for m in msgs)
    assert any("both the train and the test split" in m and ids[2] in m for m in msgs)

    jbase = write_food101(tmp_path / "json", ["apple_pie", "baklava"], 6, 3, txt_meta=False)
    split = json.loads((jbase / "meta" / "train.json").read_text())
    split["baklava"].append(split["apple_pie"][0])  # the same photo under two classes
    (jbase / "meta" / "train.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(split).encode())
    caplog.clear()
    sub = subsets.load_subset(jbase, num_classes=2)
    keys = [s.key for s in sub.train + sub.val]
    assert len(keys) == len(set(keys)) == 12
    assert {s.label for s in sub.train + sub.val if s.key == split["apple_pie"][0]} == {0}
    msgs = _warnings(caplog)
    assert len(msgs) == 2 and any("byte-order mark" in m for m in msgs) and any("1 repeated id" in m for m in msgs)


def test_unreadable_meta_is_named_with_its_line_or_key(tmp_path):
    base = write_food101(tmp_path / "a", ["apple_pie", "creme_brulee"], 3, 1)
    snapshot = {f: f.read_bytes() for f in (base / "meta").iterdir()}
    (base / "meta" / "classes.txt").write_bytes("apple_pie\ncrème_brûlée\n".encode("latin-1"))
    with pytest.raises(layout.DatasetError) as e:
        subsets.load_subset(base, num_classes=2)
    assert f"{base / 'meta' / 'classes.txt'}, line 2: not UTF-8" in str(e.value)
    assert "save it again as UTF-8" in str(e.value)
    (base / "meta" / "classes.txt").write_bytes(snapshot[base / "meta" / "classes.txt"])
    split = json.loads(snapshot[base / "meta" / "train.json"])
    split["apple_pie"] = split["apple_pie"][0]  # a string where a list belongs
    (base / "meta" / "train.json").write_text(json.dumps(split))
    with pytest.raises(layout.DatasetError) as e:
        subsets.load_subset(base, num_classes=2)
    assert f"{base / 'meta' / 'train.json'}: key 'apple_pie' maps to a str" in str(e.value)
    assert "must be a list of 'class/id' strings" in str(e.value) and "delete it so that train.txt is read" in str(e.value)
    split["apple_pie"] = [split["apple_pie"], 7]
    (base / "meta" / "train.json").write_text(json.dumps(split))
    with pytest.raises(layout.DatasetError, match=r"key 'apple_pie' maps to a list with an item that is not a string \(7\)"):
        subsets.load_subset(base, num_classes=2)
    (base / "meta" / "train.json").unlink()
    (base / "meta" / "train.txt").write_text("apple_pie/1\nno_slash_here\n")
    with pytest.raises(layout.DatasetError, match=r"train.txt, line 2: 'no_slash_here' is not 'class/id'"):
        subsets.load_subset(base, num_classes=2)


def test_grayscale_cmyk_palette_and_16bit_become_rgb(tmp_path):
    g = tmp_path / "g.jpg"
    Image.new("L", (30, 20), 128).save(g)
    c = tmp_path / "c.jpg"
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(c)  # pure red in CMYK
    p = tmp_path / "p.jpg"
    Image.new("RGB", (30, 20), (0, 0, 255)).convert("P").save(p, format="PNG")  # a PNG named .jpg
    i16 = tmp_path / "i16.jpg"
    Image.fromarray(np.full((20, 30), 65535, dtype=np.uint16)).save(i16, format="PNG")
    for path in (g, c, p, i16):
        im = images.read_rgb(path)
        assert im.mode == "RGB" and im.size == (30, 20)
    r, gr, b = images.read_rgb(c).getpixel((5, 5))
    assert r > 200 and gr < 60 and b < 60
    assert images.read_rgb(i16).getpixel((0, 0)) == (255, 255, 255)


def test_resize_center_is_square_and_keeps_content(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 20:60] = 255  # a white centre band
    out = images.resize_center(Image.fromarray(arr), 16)
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    assert out.mean() > 240  # the centre crop sees the band


def test_decode_cache_hits_and_invalidates(tmp_path):
    base = write_food101(tmp_path, ["a", "b"], 3, 1)
    sub = subsets.load_subset(base, num_classes=2)
    cache = tmp_path / "cache"
    first = subsets.decode(sub.test, 16, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 1
    again = subsets.decode(sub.test, 16, cache_dir=cache, progress=False)
    assert isinstance(again.images, np.memmap) and np.array_equal(np.asarray(again.images), first.images)
    direct = np.stack([images.resize_center(images.read_rgb(s.path), 16) for s in sub.test])
    assert np.array_equal(first.images, direct)  # the cache holds the same pixels as the direct path
    subsets.decode(sub.test, 20, cache_dir=cache, progress=False)  # another size: another entry
    assert len(list(cache.glob("*.npy"))) == 2
    path = sub.test[0].path
    Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    os.utime(path, ns=(1, 1))
    changed = subsets.decode(sub.test, 16, cache_dir=cache, progress=False)  # a changed file: decoded afresh
    assert len(list(cache.glob("*.npy"))) == 3
    assert tuple(changed.images[0, :, 8, 8]) == (254, 0, 0) or changed.images[0, 0, 8, 8] > 240


def test_batches_cover_each_image_once(tmp_path):
    base = write_food101(tmp_path, ["a", "b"], 5, 1)
    sub = subsets.load_subset(base, num_classes=2)
    d = subsets.decode(sub.train, 16, progress=False)
    import torch

    seen = torch.cat([y for _, y in subsets.batches(d, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == sorted(d.labels.tolist())


def test_decode_cache_with_an_unreadable_image_reads_back_the_readable_ones(tmp_path):
    # The cache is decoded straight into a memory-mapped file sized for every sample; a skipped image
    # leaves a padding row that a warm read must not hand out, and no temp file may be left behind.
    base = write_food101(tmp_path, ["a", "b"], 3, 1)
    sub = subsets.load_subset(base, num_classes=2, val_fraction=0.0)
    sub.train[2].path.write_bytes(b"")  # an empty .jpg
    cache = tmp_path / "cache"
    cold = subsets.decode(sub.train, 16, cache_dir=cache, progress=False)
    warm = subsets.decode(sub.train, 16, cache_dir=cache, progress=False)
    assert len(cold) == len(warm) == len(sub.train) - 1
    assert warm.keys == cold.keys and sub.train[2].key not in warm.keys
    assert [b["key"] for b in warm.bad] == [sub.train[2].key]
    assert np.array_equal(np.asarray(warm.images), np.asarray(cold.images))
    assert not list(cache.glob(".*.tmp"))


def test_a_truncated_photo_is_unreadable_even_after_weasyprint_is_imported(tmp_path, monkeypatch):
    # WeasyPrint (the report's PDF) sets PIL's process-wide LOAD_TRUNCATED_IMAGES on import; a notebook that renders
    # and then trains in the same process must still name a truncated photo instead of decoding it half grey
    import io

    from PIL import Image, ImageFile

    from foodcnn.data import images

    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    path = tmp_path / "half.jpg"
    path.write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(images.UNREADABLE):
        images.read_rgb(path)
