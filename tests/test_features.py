"""Frozen-backbone features: the shared on-disk cache, its key, and the head-only checkpoints of frozen runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from foodcnn import checkpoints
from foodcnn.models import registry
from foodcnn.results import runs
from foodcnn.training import epochs, features, train

FROZEN = dict(model="resnet18", freeze="head", image_size=32, epochs=2, lr=1e-2)


def killed_in_epoch(epoch: int, p, monkeypatch) -> None:
    """Run p and stand for a kill in the middle of `epoch` (KeyboardInterrupt); later runs train normally."""
    real, calls = epochs.train_one_epoch, {"n": 0}

    def dies(*a, **kw):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise KeyboardInterrupt
        return real(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(epochs, "train_one_epoch", dies)
        with pytest.raises(KeyboardInterrupt):
            train.run(p)


def test_digest_follows_the_backbone_not_the_head():
    torch.manual_seed(0)
    model = registry.build("resnet18", num_classes=4, pretrained="none", freeze="head")
    digest = features.backbone_digest(model)
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    assert features.backbone_digest(model) == digest  # the head trains; its features stay valid
    with torch.no_grad():
        model.layer1[0].conv1.weight[0, 0, 0, 0] += 1e-3
    assert features.backbone_digest(model) != digest
    model.to(memory_format=torch.channels_last)  # the same weights in another layout: the same features
    assert features.backbone_digest(model) == features.backbone_digest(model.to(memory_format=torch.contiguous_format))


def test_cache_key_follows_the_kernel_settings(monkeypatch):
    """Deterministic and autotuned (cudnn.benchmark) kernels round differently: their features are kept apart."""
    from foodcnn.data import subsets

    split = subsets.Decoded(None, [], [], [], key="k")
    cuda = torch.device("cuda")  # only the key is computed: no GPU needed
    paths = set()
    for det in (False, True):
        monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda det=det: det)
        for bench in (False, True):
            monkeypatch.setattr(torch.backends.cudnn, "benchmark", bench)
            paths.add(features.cache_path("c", "d", split, False, cuda))
        paths.add(features.cache_path("c", "d", split, False, torch.device("cpu")))
    assert len(paths) == 6  # four CUDA settings, the CPU's two


def test_a_deterministic_run_does_not_read_features_computed_without(tiny_params):
    root = str(tiny_params().runs_dir)
    first = train.run(tiny_params(runs_dir=root + "/1", **{**FROZEN, "epochs": 1}))
    det = train.run(tiny_params(runs_dir=root + "/2", deterministic=True, **{**FROZEN, "epochs": 1}))
    again = train.run(tiny_params(runs_dir=root + "/3", deterministic=True, **{**FROZEN, "epochs": 1}))
    assert first["features_from_disk"] == det["features_from_disk"] == []
    assert again["features_from_disk"] == ["train", "val", "test"]


def test_a_later_run_reads_the_features_an_earlier_run_computed(tiny_params):
    root = str(tiny_params().runs_dir)
    first = train.run(tiny_params(runs_dir=root + "/1", **FROZEN))
    again = train.run(tiny_params(runs_dir=root + "/2", **FROZEN))
    assert first["features_from_disk"] == [] and again["features_from_disk"] == ["train", "val", "test"]
    for key in ("train_loss", "val_loss", "test_loss", "test_acc"):
        assert again[key] == first[key], key
    # Another row over the same backbone shares them; the flipped view is computed once, then shared too.
    flip = train.run(tiny_params(runs_dir=root + "/3", augment="hflip", **FROZEN))
    assert flip["features_from_disk"] == ["train", "val", "test"]  # all but "train (flipped)"
    assert train.run(tiny_params(runs_dir=root + "/4", augment="hflip", **FROZEN))["features_from_disk"] == [
        "train", "train (flipped)", "val", "test"]
    # Random init from another seed is another backbone: nothing is shared.
    assert train.run(tiny_params(runs_dir=root + "/5", seed=1, **FROZEN))["features_from_disk"] == []


def test_fast_frozen_run_writes_best_once_and_all_metrics(tiny_params, monkeypatch):
    saves = []
    real = checkpoints.save
    monkeypatch.setattr(checkpoints, "save", lambda path, **kw: (saves.append(path.name), real(path, **kw)))
    p = tiny_params(**{**FROZEN, "epochs": 6})
    result = train.run(p)
    assert saves == [runs.BEST]  # six epochs of milliseconds: no last.pt, best.pt once at the end
    assert len(pd.read_csv(runs.run_dir(p) / runs.METRICS)) == 6 and result["epochs_run"] == 6


def test_a_damaged_feature_cache_entry_is_computed_afresh(tiny_params, caplog):
    p = tiny_params(**FROZEN)
    clean = train.run(p.replace(runs_dir=str(p.runs_dir) + "/a"))
    entries = sorted((Path(p.cache_dir) / "features").glob("*.npy"))
    assert len(entries) == 3
    for e in entries:
        e.write_bytes(e.read_bytes()[:100])  # truncated, as a full disk or a kill mid-copy leaves it
    with caplog.at_level(logging.WARNING, logger="foodcnn.training.features"):
        redone = train.run(p.replace(runs_dir=str(p.runs_dir) + "/b"))
    assert redone["features_from_disk"] == [] and "damaged" in caplog.text
    assert redone["test_loss"] == clean["test_loss"]
    assert train.run(p.replace(runs_dir=str(p.runs_dir) + "/c"))["features_from_disk"] == ["train", "val", "test"]


def test_frozen_run_checkpoints_its_head_and_resumes_exactly(tiny_params, monkeypatch):
    root = str(tiny_params().runs_dir)
    full = train.run(tiny_params(runs_dir=root + "/full", **{**FROZEN, "epochs": 3}))
    p = tiny_params(runs_dir=root + "/cut", checkpoint_every_s=0, **{**FROZEN, "epochs": 3})  # after every epoch
    killed_in_epoch(3, p, monkeypatch)
    rdir = runs.run_dir(p)
    last = checkpoints.load(rdir / runs.LAST)
    assert last["epoch"] == 2 and set(last["model"]) == {"fc.weight", "fc.bias"}  # kilobytes, not ResNet18's 45 MB
    assert last["scope"] == "head" and set(last["best"]) == {"fc.weight", "fc.bias"}
    assert not (rdir / runs.BEST).exists()
    resumed = train.run(p, resume=True)
    assert resumed["resumed_from_epoch"] == 2
    for key in ("train_loss", "val_loss", "test_loss", "test_acc", "best_epoch"):
        assert resumed[key] == full[key], key
    # best.pt holds the whole model (the report's filters and feature maps read it), with the best epoch's head.
    model = registry.build("resnet18", num_classes=4, pretrained="none", freeze="head")
    model.load_state_dict(checkpoints.load(rdir / runs.BEST)["model"])
    assert checkpoints.load(rdir / runs.BEST)["epoch"] == full["best_epoch"]


def test_resume_over_another_backbone_starts_afresh(tiny_params, monkeypatch, caplog):
    p = tiny_params(checkpoint_every_s=0, **{**FROZEN, "epochs": 3})
    killed_in_epoch(2, p, monkeypatch)
    last_path = runs.run_dir(p) / runs.LAST
    state = checkpoints.load(last_path)
    checkpoints.save(last_path, **{**{k: v for k, v in state.items() if k != "format"}, "backbone": "0" * 24})
    with caplog.at_level(logging.WARNING, logger="foodcnn.checkpoints"):
        result = train.run(p, resume=True)
    assert result["resumed_from_epoch"] is None and result["epochs_run"] == 3
    assert "another backbone" in caplog.text
