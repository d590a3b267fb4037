"""The fast paths feed the model what the reports' PIL path feeds it: same pixels, same files, same labels."""

from __future__ import annotations

import importlib
import platform
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from foodcnn.data import subsets, images, transforms
from foodcnn.models import registry
from foodcnn import params
from foodcnn.training import streams


def _load(name: str):
    """Import a script of benchmarks/ (not a package) by name, as the scripts import one another."""
    folder = str(REPO / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


@pytest.fixture(scope="module")
def reference():
    return _load("reference")


@pytest.fixture(scope="module")
def subset(tiny_synth):
    return subsets.load_subset(tiny_synth, num_classes=4)


def _torchvision_geometry(w: int, h: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return torchvision's Resize(size) output size (long side floored) and CenterCrop(size) offsets (rounded)."""
    long = int(size * max(w, h) / min(w, h))
    nw, nh = (size, long) if w <= h else (long, size)
    return (nw, nh), (int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0)))


def _foodcnn_geometry(w: int, h: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return images.resize_center's resized size (long side rounded) and crop offsets (floored)."""
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    return (nw, nh), ((nw - size) // 2, (nh - size) // 2)


@pytest.mark.parametrize("size", [20, 32])
def test_cache_returns_the_pixels_of_the_direct_pil_path(subset, tmp_path, size):
    samples = subset.train[:24]
    direct = np.stack([images.load_resized(s.path, size) for s in samples])
    cold = subsets.decode(samples, size, cache_dir=tmp_path, progress=False)
    warm = subsets.decode(samples, size, cache_dir=tmp_path, progress=False)  # read back from the .npy
    assert isinstance(warm.images, np.memmap)
    assert np.array_equal(cold.images, direct) and np.array_equal(np.asarray(warm.images), direct)
    assert warm.keys == [s.key for s in samples] and list(warm.labels) == [s.label for s in samples]
    # data.batches hands those same pixels out, each image once
    seen = {}
    for x, y in subsets.batches(warm, 5, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.uint8
        for img, label in zip(x.numpy(), y.tolist()):
            idx = next(i for i in range(len(direct)) if np.array_equal(direct[i], img))
            seen[idx] = label
    assert seen == {i: s.label for i, s in enumerate(samples)}


@pytest.mark.parametrize("size", [20, 32])
def test_cache_matches_torchvision_resize_centercrop(subset, size, reference):
    """Identical where both pick the same geometry; otherwise a one-pixel shift (rounding), a few levels apart."""
    from torchvision import transforms as T

    tv = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
    same_geometry, diffs = 0, []
    for s in subset.train[:24] + subset.test[:8]:
        im = images.read_rgb(s.path)
        ours = images.resize_center(im, size).astype(np.int16)
        theirs = tv(im).numpy().astype(np.int16)
        assert ours.shape == theirs.shape == (3, size, size)
        if _torchvision_geometry(*im.size, size) == _foodcnn_geometry(*im.size, size):
            same_geometry += 1
            assert np.array_equal(ours, theirs), s.key
        diffs.append(np.abs(ours - theirs).mean())
    assert same_geometry >= 5  # the comparison above did happen
    assert np.mean(diffs) < 4.0 and np.max(diffs) < 16.0
    # after normalisation both paths give the model the same input, up to the same rounding
    im = images.read_rgb(subset.train[0].path)
    ref_x = reference.make_transform(size)(im)
    our_x = transforms.normalise(torch.from_numpy(images.resize_center(im, size))[None], registry.IMAGENET_MEAN,
                                 registry.IMAGENET_STD)[0]
    assert ref_x.shape == our_x.shape
    assert (ref_x - our_x).abs().mean() < 0.1  # ~4 levels of 255 over std 0.225
    exact = reference.make_transform(size)(Image.fromarray(images.resize_center(im, size).transpose(1, 2, 0)))
    assert torch.allclose(exact, our_x, atol=1e-5)  # the normalisations agree exactly


def test_reference_dataset_covers_the_subset(subset, reference, tiny_synth):
    train_ds = reference.FoodFolder(tiny_synth, "train", num_classes=4)
    test_ds = reference.FoodFolder(tiny_synth, "test", num_classes=4)
    assert train_ds.classes == subset.classes
    ours_train = {(str(s.path), s.label) for s in subset.train + subset.val}
    assert set(train_ds.samples) == ours_train and len(train_ds) == len(ours_train)
    assert sorted(test_ds.samples) == sorted((str(s.path), s.label) for s in subset.test)
    img, label = test_ds[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and label == test_ds.targets[0]


def test_bench_helpers_run_the_library_path(subset, tmp_path):
    """The benchmark's plumbing: its reference split is foodcnn's train split; TimedStream drives train_one_epoch."""
    bench = _load("measure")
    setup = _load("workload").Setup(subset, torch.device("cpu"), tmp_path / "cache", params.Params())
    ref_split = setup.reference_train(20, registry.IMAGENET_MEAN, registry.IMAGENET_STD)
    ref_paths = sorted(ref_split.dataset.samples[i][0] for i in ref_split.indices)
    assert ref_paths == sorted(str(s.path) for s in subset.train)
    ours = bench.measure_ours(setup, "baseline", 20, 8, warmup=1, steps=2)
    assert ours["images"] == 16 and ours["seconds"] > 0 and 0 <= ours["data_wait_share"] <= 1
    ref = bench.measure_reference(setup, "baseline", 20, 8, warmup=1, steps=2, workers=0)
    assert ref["images"] == 16 and ref["seconds"] > 0
    feats = bench.measure_features(setup, "resnet18", 32, 16, batch=8)
    assert feats["dim"] == 512 and feats["images_per_s"] > 0
    run = bench.measure_frozen_run(setup, "resnet18", epochs=1)  # a_resnet18 through train.run, twice
    assert run["cold_from_disk"] == [] and run["warm_from_disk"] == ["train", "val", "test"]
    assert isinstance(streams.head_of(registry.build("resnet18", pretrained="none", freeze="head")), torch.nn.Linear)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_reduced_scale_jpeg_decode_keeps_the_full_decodes_geometry_and_pixels(tmp_path, mode):
    """A Food-101-sized JPEG decoded at 1/4 scale for a small cache size: same crop, within a few grey levels."""
    from foodcnn.data import synth

    full = synth.render(3, (512, 341), np.random.default_rng(0)).convert(mode)
    path = tmp_path / "big.jpg"
    full.save(path, quality=90)
    with Image.open(path) as im:
        im.draft(im.mode, (2 * 24, 2 * 24))
        assert im.size[0] < 512  # libjpeg does reduce this one, so the comparison below tests the reduced path
    for size in (24, 40):
        exact = images.resize_center(images.read_rgb(path), size).astype(np.int16)
        fast = images.load_resized(path, size).astype(np.int16)
        assert fast.shape == exact.shape == (3, size, size)
        assert np.abs(fast - exact).mean() < 3.0
        # the centre crop is the same window: shifting the fast one by a pixel makes it worse, not better
        assert np.abs(fast - exact).mean() <= np.abs(fast[:, :, 1:] - exact[:, :, :-1]).mean()
    png = tmp_path / "big.png"  # not a JPEG: decoded in full, exactly as before
    full.convert("RGB").save(png)
    assert np.array_equal(images.load_resized(png, 24), images.resize_center(images.read_rgb(png), 24))


def test_bench_helper_processes_measure_with_and_without_the_library_malloc(subset, tmp_path, monkeypatch):
    """processes.Helper: a fresh process per side; ours with foodcnn's malloc tuning, the reference without; errors
    come back as errors, not hangs."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the spawned helper imports processes by name
    monkeypatch.syspath_prepend(str(REPO / "lib"))
    setup = _load("workload").Setup(subset, torch.device("cpu"), tmp_path / "cache", params.Params())
    setup.split(20)
    with _load("processes").helpers(setup) as (ref, ours):
        assert ours.malloc_tuned == (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")
        assert ref.malloc_tuned is False
        o = ours.call("measure_ours", "baseline", 20, 8, 1, 2)
        r = ref.call("measure_reference", "baseline", 20, 8, 1, 2, workers=0)
        assert o["images"] == r["images"] == 16
        with pytest.raises(RuntimeError, match="no_such_model|unknown|KeyError"):
            ours.call("measure_ours", "no_such_model", 20, 8, 1, 1)
        assert ours.call("measure_ours", "baseline", 20, 8, 0, 1)["images"] == 8  # still serving after an error
    assert not ref.proc.is_alive() and not ours.proc.is_alive()


def test_gpu_projection_charges_every_cost_once_where_it_falls(monkeypatch):
    """The paper catalogue's wall time: a frozen backbone's features and a size's decode are paid by their first
    run only; every run pays its start, warm-up and checkpoints; rates are looked up per (model, batch, size)."""
    gpu = _load("gpu")
    rows = [gpu.Row("a", "resnet18", "head", "none", {}, seeds=3),
            gpu.Row("b", "resnet18", "head", "hflip", {}, seeds=3),
            gpu.Row("c", "resnet18", "none", "none", {}, epochs=2, seeds=3),
            gpu.Row("d", "resnet18", "none", "wide", {}, epochs=2, batch=64, seeds=1)]
    costs = gpu.Costs(train={gpu.train_key(rows[2]): 50.0, gpu.train_key(rows[3]): 100.0},
                      warmup={gpu.train_key(rows[2]): 3.0}, eval={gpu.eval_key(rows[2]): 10.0,
                                                                 gpu.eval_key(rows[3]): 20.0},
                      features={("resnet18", 224): 10.0}, wide_s={224: 0.01}, checkpoint_s={"resnet18": 0.5},
                      start_s=2.0, decode_ips=170.0)
    counts = {"train": 100, "val": 20, "test": 50}
    rc = gpu.row_costs(rows, costs, counts)
    assert [r.path for r in rc] == ["cached features", "cached features", "full network", "wide aug"]
    decode = (100 + 20 + 50) / 170.0
    assert rc[0].shared_s == pytest.approx(decode + (100 + 20 + 50) / 10.0) and rc[0].seed_s == 2.0
    assert rc[1].shared_s == pytest.approx(100 / 10.0)  # b computes only the flipped view
    epoch_c = 100 / 50.0 + 20 / 10.0  # 4 s: with checkpoint_every_s 5, last.pt once in 2 epochs, best.pt at the end
    costs.checkpoint_every_s = 5.0
    rc = gpu.row_costs(rows, costs, counts)
    assert rc[2].seed_s == pytest.approx(2.0 + 3.0 + 2 * epoch_c + 50 / 10.0 + 2 * 0.5) and rc[2].shared_s == 0
    epoch_d = 100 / 100.0 + 20 / 20.0 + 100 * 0.01
    assert rc[3].seed_s == pytest.approx(2.0 + 2 * epoch_d + 50 / 20.0 + 2 * 0.5)
    costs.checkpoint_every_s = 0.0  # after every epoch
    assert gpu.row_costs(rows, costs, counts)[2].seed_s == pytest.approx(rc[2].seed_s + 0.5)
    assert sum(r.seconds for r in rc) == pytest.approx(3 * 2.0 * 2 + rc[0].shared_s + rc[1].shared_s
                                                       + 3 * rc[2].seed_s + rc[3].seed_s)
    # a smaller --size never goes below what a row's model accepts (b_custom3: the baseline with an extra pool)
    assert gpu.smallest_size(gpu.Row("x", "baseline", "none", "none", {"extra_pool_after": "conv2"})) == 37
    as_json = gpu.costs_json(rows, costs, rc, "cuda")
    assert [r["id"] for r in as_json["rows"]] == ["a", "b", "c", "d"]
    assert as_json["total_seconds"] == pytest.approx(sum(r.seconds for r in rc))


def test_bench_times_full_batches_only(subset, tmp_path):
    bench = _load("measure")
    setup = _load("workload").Setup(subset, torch.device("cpu"), tmp_path / "cache", params.Params())
    split = setup.split(20)
    longer = bench.repeat(split, 3 * len(split) + 5)
    assert len(longer) == 3 * len(split) + 5 and np.array_equal(longer.images[len(split)], split.images[0])
    ours = bench.measure_ours(setup, "baseline", 20, 16, warmup=1, steps=len(split) // 16 + 2)
    assert ours["images"] == 16 * (len(split) // 16 + 2) and ours["warmup_excess_s"] >= 0
