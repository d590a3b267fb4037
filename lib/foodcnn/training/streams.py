"""A run's data as model inputs: the decoded splits, as normalised image batches for the whole model or, when only
the head trains, as the frozen backbone's cached features for the head alone."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .. import checkpoints
from ..data import subsets, devices, layout, transforms
from ..models import registry
from ..params import Params
from . import features

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """Decoded splits of a run's data."""

    subset: subsets.Subset
    train: subsets.Decoded
    val: subsets.Decoded
    test: subsets.Decoded

    @property
    def bad(self) -> list[dict]:
        """Return every unreadable image of the three splits."""
        return self.train.bad + self.val.bad + self.test.bad


def load_data(p: Params, subset: subsets.Subset | None = None) -> Loaded:
    """Return the run's decoded train/val/test splits (through the decode cache)."""
    subset = subset or subsets.subset_of(p)
    size = p.resolved_image_size
    kw = dict(cache_dir=p.cache_dir, bad_images=p.bad_images, progress=p.progress)
    splits = {name: subsets.decode(getattr(subset, name), size, desc=f"decode {name} @{size}px", **kw)
              for name in ("train", "val", "test")}
    for name, d in splits.items():
        if len(d) == 0:
            raise layout.DatasetError(f"no readable images in the {name} split of {subset.root}")
    return Loaded(subset, **splits)


class ImageStream:
    """Batches of normalised images for the whole model."""

    def __init__(self, split: subsets.Decoded, model: nn.Module, device: torch.device, batch_size: int,
                 augment: transforms.Augment | None, channels_last: bool):
        self.split, self.device, self.batch_size, self.augment = split, device, batch_size, augment
        self.mean, self.std = registry.input_normalisation(model)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.split)

    def __call__(self, generator: torch.Generator | None, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        aug = self.augment if train else None
        # uint8 batches go to the device (a quarter of the float batch's bytes), the next one queued ahead.
        for x, y in devices.prefetch(subsets.batches(self.split, self.batch_size, shuffle=train, generator=generator),
                                     self.device):
            if aug is not None:
                x = aug(x, generator)  # on the device: the GPU when there is one; draws stay on the CPU
            x = transforms.normalise(x, self.mean, self.std).contiguous(memory_format=self.memory_format)
            yield x, y


def head_of(model: nn.Module) -> nn.Module:
    """Return the trainable head of a pretrained model."""
    return model.get_submodule(model.head_name)


class FeatureStream:
    """Batches of cached backbone features; `hflip` picks the flipped view with the same draws as transforms.hflip."""

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, batch_size: int, feats_flip: torch.Tensor | None):
        self.feats, self.labels, self.batch_size, self.feats_flip = feats, labels, batch_size, feats_flip

    def __len__(self) -> int:
        return len(self.labels)

    def __call__(self, generator: torch.Generator | None, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        flipping = train and self.feats_flip is not None
        order = torch.randperm(n, generator=generator) if train else torch.arange(n)
        # transforms.hflip draws torch.rand(batch) per batch after the shuffle; the CPU generator gives the same
        # numbers drawn for the whole epoch at once. Drawn on the host, moved to the features' device in one copy.
        flip = torch.rand(n, generator=generator) < 0.5 if flipping else torch.zeros(n, dtype=torch.bool)
        order, flip = devices.to_device(torch.stack([order, flip.long()]), self.feats.device).unbind(0)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.feats[idx]
            if flipping:
                x = torch.where(flip[start:start + self.batch_size, None].bool(), self.feats_flip[idx], x)
            yield x, self.labels[idx]


def trained_part(p: Params, model: nn.Module) -> checkpoints.Trained:
    """Return what the run trains: the head alone on cached features when the backbone is frozen, else the model."""
    if p.feature_cache and registry.backbone_frozen(model) and p.augment in ("none", "hflip"):
        # The backbone is fixed, so checkpoints hold only the head (plus the backbone's digest): a whole VGG16
        # is 537 MB, its head 330 kB.
        return checkpoints.Trained(model, "head", lambda: features.head_state(model),
                                   lambda state: features.load_head_state(model, state), features.backbone_digest(model))
    return checkpoints.whole(model)


def channels_last_pays(model_name: str, device: torch.device, image_size: int | None = None) -> bool:
    """Return whether training `model_name` at `image_size` px on `device` is faster in channels_last memory format."""
    if device.type == "cuda":  # tensor cores
        return True
    start = registry.entry(model_name).channels_last_from_px
    return start is not None and (image_size is None or image_size >= start)


@dataclass
class Streams:
    """The splits as inputs of `net`: the model on images, or its head on the frozen backbone's cached features."""

    train: ImageStream | FeatureStream
    val: ImageStream | FeatureStream
    test: ImageStream | FeatureStream
    net: nn.Module
    from_disk: list[str]  # the feature views read from the feature cache


def make_streams(p: Params, model: nn.Module, trained: checkpoints.Trained, loaded: Loaded,
                 device: torch.device) -> Streams:
    """Return the run's streams (channels_last where it pays; cached features when only the head trains)."""
    use_cl = p.channels_last and channels_last_pays(p.model, device, p.resolved_image_size)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    size = p.resolved_image_size
    if trained.scope == "model":
        def stream(split: subsets.Decoded, aug: transforms.Augment | None) -> ImageStream:
            return ImageStream(split, model, device, p.batch_size, aug, use_cl)

        augment = transforms.make(p.augment, size)
        return Streams(stream(loaded.train, augment), stream(loaded.val, None), stream(loaded.test, None), model, [])

    # The backbone is fixed (eval mode), so its features are computed once (or read from the
    # feature cache another run with the same backbone and images filled) and the head trains on them;
    # hflip keeps both views and draws the flip exactly as transforms.hflip.
    t_feat = time.perf_counter()
    assert trained.backbone is not None
    from_disk: list[str] = []

    def feats(name: str, flip: bool = False) -> torch.Tensor:
        view = f"{name}{' (flipped)' if flip else ''}"
        x, hit = features.features(model, getattr(loaded, name), device, trained.backbone, p.cache_dir, flip,
                                   p.progress, desc=f"features {view} @{size}px", amp=p.amp)
        if hit:
            from_disk.append(view)
        return x

    def labels(name: str) -> torch.Tensor:
        return torch.from_numpy(getattr(loaded, name).labels).to(device)

    train_s = FeatureStream(feats("train"), labels("train"), p.batch_size,
                            feats("train", flip=True) if p.augment == "hflip" else None)
    val_s = FeatureStream(feats("val"), labels("val"), p.batch_size, None)
    test_s = FeatureStream(feats("test"), labels("test"), p.batch_size, None)
    log.info("frozen-backbone features in %.1fs (%s)", time.perf_counter() - t_feat,
             f"read from the feature cache: {', '.join(from_disk)}" if from_disk else "computed")
    return Streams(train_s, val_s, test_s, head_of(model), from_disk)
