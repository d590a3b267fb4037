"""Named augmentation presets (SPEC §3) that act on uint8 image batches: none, hflip, wide."""

from __future__ import annotations

from typing import Callable

import torch

from . import devices

# Report B's Table 5 gives no ColorJitter strengths; these are moderate, commonly used values.
COLOR_JITTER = dict(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the batch with each image flipped left-right with probability 0.5 (report A's "Ron_flip")."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5  # drawn on the CPU: the same on every device
    # A select, not x[flip] = ...: a boolean mask makes the host wait for the GPU to count its true elements.
    return torch.where(devices.to_device(flip, x.device).view(-1, 1, 1, 1), x.flip(-1), x)


class Wide:
    """Report B's Table 5, batched: RandomResizedCrop, h/v flips, RandomRotation(45), RandomAffine(45), ColorJitter.

    The same chain as torchvision's v2 transforms applied image by image, with the same parameter
    distributions, each image drawing its own, but computed for the whole batch at once on its device: the
    geometry as one bilinear grid_sample (one resampling where the chain resampled three times, the rotations
    with nearest neighbour; their zero fill kept as in the chain), the colour jitter
    as batched blends in each image's own random order. The draws come from the batch's generator on the CPU,
    so runs stay reproducible and resumable on any device. The per-image chain is several times slower on a
    CPU (README, speed) and launches dozens of small kernels an image on a GPU.
    """

    SCALE, RATIO, DEGREES = (0.08, 1.0), (3 / 4, 4 / 3), 45.0

    def __init__(self, size: int):
        self.size = size

    def draw(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Return each image's parameters (CPU tensors), drawn as torchvision's v2 transforms draw them."""
        import math

        S = self.size

        def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=generator)

        # RandomResizedCrop.get_params on a square S x S image: 10 tries, the first that fits; else the whole image.
        area = u(*self.SCALE, n, 10) * S * S
        ratio = torch.exp(u(math.log(self.RATIO[0]), math.log(self.RATIO[1]), n, 10))
        w, h = torch.sqrt(area * ratio).round(), torch.sqrt(area / ratio).round()
        fits = (w > 0) & (w <= S) & (h > 0) & (h <= S)
        first = fits.float().argmax(1, keepdim=True)
        w = torch.where(fits.any(1), w.gather(1, first)[:, 0], torch.full((n,), float(S)))
        h = torch.where(fits.any(1), h.gather(1, first)[:, 0], torch.full((n,), float(S)))
        top = (torch.rand(n, generator=generator) * (S - h + 1)).floor()
        left = (torch.rand(n, generator=generator) * (S - w + 1)).floor()
        j = COLOR_JITTER
        return {
            "top": top, "left": left, "h": h, "w": w,
            "hflip": torch.rand(n, generator=generator) < 0.5, "vflip": torch.rand(n, generator=generator) < 0.5,
            "rotate": u(-self.DEGREES, self.DEGREES), "affine": u(-self.DEGREES, self.DEGREES),
            "brightness": u(1 - j["brightness"], 1 + j["brightness"]),
            "contrast": u(1 - j["contrast"], 1 + j["contrast"]),
            "saturation": u(1 - j["saturation"], 1 + j["saturation"]),
            "hue": u(-j["hue"], j["hue"]),
            "order": torch.argsort(torch.rand(n, 4, generator=generator), dim=1),  # a permutation per image
        }

    def geometry(self, x: torch.Tensor, prm: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the float batch cropped and resized, flipped, rotated twice (zero fill), as one grid_sample."""
        import math

        n, _, S, _ = x.shape
        dev = x.device
        P = {k: v.to(dev, torch.float32) for k, v in prm.items() if k != "order"}
        c = torch.arange(S, device=dev, dtype=torch.float32) + 0.5 - S / 2  # pixel centres about the image centre
        py, px = torch.meshgrid(c, c, indexing="ij")
        px, py = px.expand(n, S, S), py.expand(n, S, S)
        half = S / 2

        def unrotate(qx: torch.Tensor, qy: torch.Tensor, deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # Where an output pixel of a counter-clockwise rotation by `deg` (torchvision's sense) comes from.
            t = (deg * math.pi / 180).view(n, 1, 1)
            return qx * torch.cos(t) - qy * torch.sin(t), qx * torch.sin(t) + qy * torch.cos(t)

        qx, qy = unrotate(px, py, P["affine"])
        inside = (qx.abs() <= half) & (qy.abs() <= half)  # RandomAffine's fill
        qx, qy = unrotate(qx, qy, P["rotate"])
        inside &= (qx.abs() <= half) & (qy.abs() <= half)  # RandomRotation's fill
        qy = torch.where(P["vflip"].bool().view(n, 1, 1), -qy, qy)
        qx = torch.where(P["hflip"].bool().view(n, 1, 1), -qx, qx)
        # The crop (top, left, h, w) resized to S x S: output centre k maps to left + (k + 0.5) * w / S.
        # Clamped to the crop's outer pixel centres: resized_crop crops first, so its rim repeats the crop's edge.
        left, top, w, h = (P[k].view(n, 1, 1) for k in ("left", "top", "w", "h"))
        sx = torch.clamp(left + (qx + half) * w / S, min=left + 0.5, max=left + w - 0.5)
        sy = torch.clamp(top + (qy + half) * h / S, min=top + 0.5, max=top + h - 0.5)
        grid = torch.stack([sx / S * 2 - 1, sy / S * 2 - 1], dim=-1)
        out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out * inside.unsqueeze(1)

    @staticmethod
    def _gray(x: torch.Tensor) -> torch.Tensor:
        return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)

    @staticmethod
    def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Return RGB images in [0, 1] with their HSV hue turned by `shift` (fractions of a turn), per image."""
        r, g, b = x.unbind(1)
        maxc, minc = x.max(1).values, x.min(1).values
        v, delta = maxc, maxc - minc
        s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
        d = delta.clamp(min=1e-12)
        h = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
        h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
        h = (h + shift.view(-1, 1, 1)) % 1.0
        i = torch.floor(h * 6.0)
        f = h * 6.0 - i
        p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
        i = i.long() % 6
        choices = [torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
        out = choices[0]
        for k in range(1, 6):
            out = torch.where((i == k).unsqueeze(1), choices[k], out)
        return out

    @staticmethod
    def groups(order: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
        """Return (position, adjustment, images) for every non-empty group of a host-side `order` draw."""
        out = []
        for pos in range(4):
            for k in range(4):
                idx = (order[:, pos] == k).nonzero()[:, 0]
                if len(idx):
                    out.append((pos, k, idx))
        return out

    def to_device(self, prm: dict[str, torch.Tensor], device: torch.device
                  ) -> tuple[dict[str, torch.Tensor], list[tuple[int, int, torch.Tensor]]]:
        """Return the parameters (float32) and colour groups on `device`, moved in one copy that does not block."""
        keys = [k for k in prm if k != "order"]
        n = len(prm[keys[0]])
        groups = self.groups(prm["order"])  # decided on the host from the host's draws: no wait for the device
        flat = torch.cat([torch.stack([prm[k].to(torch.float32) for k in keys]).reshape(-1),
                          *(idx.to(torch.float32) for _, _, idx in groups)])  # indices < 2**24: exact in float32
        flat = devices.to_device(flat, device)
        out = {k: flat[i * n:(i + 1) * n] for i, k in enumerate(keys)}
        index = flat[len(keys) * n:].long()
        on_device, start = [], 0
        for pos, k, idx in groups:
            on_device.append((pos, k, index[start:start + len(idx)]))
            start += len(idx)
        return out, on_device

    def colour(self, x: torch.Tensor, prm: dict[str, torch.Tensor],
               groups: list[tuple[int, int, torch.Tensor]] | None = None) -> torch.Tensor:
        """Return the [0, 1] float batch through ColorJitter's four adjustments, each image in its own order.

        `groups`: Wide.to_device's; by default computed from prm["order"], which must then be on the host.
        """
        f = {k: prm[k].to(x.device, torch.float32) for k in ("brightness", "contrast", "saturation", "hue")}
        if groups is None:
            groups = [(pos, k, idx.to(x.device)) for pos, k, idx in self.groups(prm["order"])]

        def op(k: int, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            a = f[("brightness", "contrast", "saturation", "hue")[k]][idx].view(-1, 1, 1, 1)
            if k == 0:
                return (y * a).clamp(0, 1)
            if k == 1:
                return (a * y + (1 - a) * self._gray(y).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
            if k == 2:
                return (a * y + (1 - a) * self._gray(y)).clamp(0, 1)
            return self._hue(y, a)

        x = x.clone()
        for _, k, idx in groups:  # the images whose pos-th adjustment is k, a group at a time, pos by pos
            x[idx] = op(k, x[idx], idx)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        prm, groups = self.to_device(self.draw(x.shape[0], generator), x.device)
        y = self.geometry(x.float() / 255.0, prm)
        return (self.colour(y, prm, groups) * 255.0).round().clamp(0, 255).to(torch.uint8)


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
    m = devices.constant(tuple(mean), x.device, 255.0)
    s = devices.constant(tuple(std), x.device, 255.0)
    return (x.float() - m) / s
