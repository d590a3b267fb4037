"""Named augmentation presets (SPEC §3) that act on uint8 image batches: none, hflip, wide."""

from __future__ import annotations

from typing import Callable

import torch

# Report B's Table 5 gives no ColorJitter strengths; these are moderate, commonly used values.
COLOR_JITTER = dict(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the batch with each image flipped left-right with probability 0.5 (report A's "Ron_flip")."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x


class Wide:
    """Report B's Table 5: RandomResizedCrop, h/v flips, RandomRotation(45), RandomAffine(45), ColorJitter.

    Each image of the batch draws its own parameters. torchvision's v2 transforms draw from torch's
    global (CPU) generator, so the batch's generator seeds it (keeps runs reproducible and resumable).
    The pixels are transformed where the batch lives: on the GPU when train.ImageStream runs there.
    """

    def __init__(self, size: int):
        from torchvision.transforms import v2  # imported here: torchvision costs seconds at kernel start

        self.tf = v2.Compose([
            v2.RandomResizedCrop(size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(45),
            v2.RandomAffine(45),
            v2.ColorJitter(**COLOR_JITTER),
        ])

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is not None:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return torch.stack([self.tf(img) for img in x])
        return torch.stack([self.tf(img) for img in x])


def make(name: str, size: int) -> Augment | None:
    """Return the augmentation for a preset name (None for "none")."""
    if name == "none":
        return None
    if name == "hflip":
        return hflip
    if name == "wide":
        return Wide(size)
    raise ValueError(f"unknown augmentation {name!r}; choose none, hflip or wide")


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Return a float batch in the model's input space from a uint8 batch (on x's device)."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1) * 255.0
    return (x.float() - m) / s
