"""Augmentation presets: the batched `wide` chain against torchvision's v2 functions, step by step."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from foodcnn.data import transforms

S = 16


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, S, S), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def identity(n: int, **changes) -> dict[str, torch.Tensor]:
    """Parameters under which every step of the chain leaves the image as it is, then `changes`."""
    prm = {"top": torch.zeros(n), "left": torch.zeros(n), "h": torch.full((n,), float(S)),
           "w": torch.full((n,), float(S)), "hflip": torch.zeros(n, dtype=torch.bool),
           "vflip": torch.zeros(n, dtype=torch.bool), "rotate": torch.zeros(n), "affine": torch.zeros(n),
           "brightness": torch.ones(n), "contrast": torch.ones(n), "saturation": torch.ones(n), "hue": torch.zeros(n),
           "order": torch.arange(4).repeat(n, 1)}
    prm.update({k: torch.as_tensor(v, dtype=prm[k].dtype).expand(n).clone() if prm[k].dim() == 1 else v
                for k, v in changes.items()})
    return prm


def apply(x: torch.Tensor, prm: dict[str, torch.Tensor]) -> torch.Tensor:
    wide = transforms.Wide(S)
    y = wide.geometry(x.float() / 255.0, prm)
    return (wide.colour(y, prm) * 255.0).round().clamp(0, 255).to(torch.uint8)


def test_identity_parameters_leave_the_pixels_unchanged():
    x = images()
    assert torch.equal(apply(x, identity(4)), x)


@pytest.mark.parametrize("flip, dim", [("hflip", -1), ("vflip", -2)])
def test_flips(flip, dim):
    x = images()
    assert torch.equal(apply(x, identity(4, **{flip: True})), x.flip(dim))


@pytest.mark.parametrize("key", ["rotate", "affine"])
@pytest.mark.parametrize("degrees", [90.0, -90.0, 180.0])
def test_quarter_turns_match_torchvision_rotate(key, degrees):
    x = images()
    assert torch.equal(apply(x, identity(4, **{key: degrees})), TF.rotate(x, degrees))


def test_rotation_fills_the_corners_with_black_like_torchvision():
    x = torch.full((1, 3, S, S), 200, dtype=torch.uint8)
    ours = apply(x, identity(1, rotate=30.0))
    theirs = TF.rotate(x, 30.0)
    assert ours[0, :, 0, 0].eq(0).all() and ours[0, :, S // 2, S // 2].eq(200).all()
    assert (ours != theirs).float().mean() < 0.1  # only pixels on the rim differ (bilinear vs nearest)


def test_crop_and_resize_match_torchvision_resized_crop():
    x = images()
    ours = apply(x, identity(4, top=2.0, left=3.0, h=10.0, w=12.0))
    theirs = TF.resized_crop(x, 2, 3, 10, 12, [S, S], interpolation=InterpolationMode.BILINEAR, antialias=False)
    assert (ours.int() - theirs.int()).abs().max() <= 1


@pytest.mark.parametrize("key, fn, factor", [
    ("brightness", TF.adjust_brightness, 1.2), ("contrast", TF.adjust_contrast, 0.8),
    ("saturation", TF.adjust_saturation, 1.2), ("hue", TF.adjust_hue, 0.05), ("hue", TF.adjust_hue, -0.05)])
def test_colour_jitter_steps_match_torchvision(key, fn, factor):
    x = images()
    ours = apply(x, identity(4, **{key: factor}))
    theirs = fn(x, factor)
    assert (ours.int() - theirs.int()).abs().max() <= 2


def test_each_image_draws_its_own_parameters_reproducibly():
    wide = transforms.Wide(S)
    a = wide.draw(256, torch.Generator().manual_seed(1))
    b = wide.draw(256, torch.Generator().manual_seed(1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ((a["top"] + a["h"]) <= S).all() and ((a["left"] + a["w"]) <= S).all() and (a["h"] >= 1).all()
    assert a["rotate"].abs().max() <= 45 and a["rotate"].std() > 20 and 0.3 < a["hflip"].float().mean() < 0.7
    assert sorted(a["order"][0].tolist()) == [0, 1, 2, 3] and len({tuple(o) for o in a["order"].tolist()}) > 10
    x = images(8)
    out = wide(x, torch.Generator().manual_seed(3))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, wide(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, wide(x, torch.Generator().manual_seed(4)))
