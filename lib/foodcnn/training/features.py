"""Frozen-backbone features: computed once per (backbone weights, images, view), kept on disk and shared by runs.

A run whose backbone is entirely frozen (`freeze: head`) with deterministic augmentation trains only its head.
The head's inputs are then a fixed function of the backbone's weights and the decoded pixels,
so they are computed once, written beside the decode cache and read by every later run with the same backbone
and images: the catalogue's four ResNet18 rows, and every seed of them where the ImageNet weights are used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..data import subsets, devices, transforms
from ..models import registry
from ..atomic import atomic_save_npy, remove_temps

log = logging.getLogger(__name__)

VERSION = 1  # bump when the way features are computed changes: older cache entries are then never read
# The feature pass runs no backward, so it holds no activations for one and takes larger batches than training:
# fewer, larger kernel calls. Beyond 128 the gain levels off while the memory keeps growing; the benchmarks time
# the pass (benchmarks/measure.py measure_features).
BATCH = 128


def head_prefix(model: nn.Module) -> str:
    """Return the state-dict prefix of a pretrained model's head ("fc.", "classifier.6.")."""
    return model.head_name + "."


def head_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a copy of the head's entries of the model's state dict (a frozen-backbone run's only changing part)."""
    prefix = head_prefix(model)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def load_head_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load head entries (from head_state) into the model; raise ValueError when they do not fit."""
    prefix = head_prefix(model)
    full = model.state_dict()
    foreign = [k for k in state if not k.startswith(prefix) or k not in full]
    if foreign or len(state) != sum(k.startswith(prefix) for k in full):
        raise ValueError(f"head state does not fit {model.head_name} (foreign or missing keys: {foreign[:3]})")
    full.update(state)
    model.load_state_dict(full)


def backbone_digest(model: nn.Module) -> str:
    """Return a hash of everything but the head: the layers (their repr) and every weight and buffer, bit for bit.

    Reading every weight once is cheap beside one feature pass over the images, and a run does it once.
    """
    prefix = head_prefix(model)
    h = hashlib.sha256(f"v{VERSION}".encode())
    with headless(model):
        h.update(repr(model).encode())
    for name, value in model.state_dict().items():
        if name.startswith(prefix):
            continue
        t = value.detach().cpu().contiguous()  # a channels_last weight hashes as its NCHW bytes
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:24]


@contextlib.contextmanager
def headless(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block the model's head is an identity, so the model returns the head's input."""
    parent, _, leaf = model.head_name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    head = getattr(owner, leaf)
    setattr(owner, leaf, nn.Identity())
    try:
        yield model
    finally:
        setattr(owner, leaf, head)


def extract(model: nn.Module, split: subsets.Decoded, device: torch.device, flip: bool = False,
            batch_size: int = BATCH, progress: bool = False, desc: str = "features", amp: bool = False) -> torch.Tensor:
    """Return the frozen backbone's features (the head's input, float32) of every image of a split, in order.

    `flip` mirrors every image first (the flipped view of `augment: hflip`). The model is put in eval mode and
    in channels_last format, which is faster for every pretrained model, on CPU (oneDNN) as on CUDA (tensor cores).
    `amp` on CUDA runs the pass under bf16 autocast, as train.run's forward passes do.
    """
    from tqdm.auto import tqdm

    mean, std = registry.input_normalisation(model)
    model.to(memory_format=torch.channels_last).eval()
    out = []
    steps = tqdm(subsets.batches(split, batch_size), total=-(-len(split) // batch_size), desc=desc,
                 disable=not progress, leave=False)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    with headless(model), torch.inference_mode(), autocast:
        for x, _ in devices.prefetch(steps, device):
            x = transforms.normalise(x, mean, std)
            if flip:
                x = x.flip(-1)
            out.append(model(x.contiguous(memory_format=torch.channels_last)).float())
        feats = torch.cat(out)
    return feats.clone()  # a plain tensor: inference-mode tensors cannot be saved for the head's backward


def kernel_settings(device: torch.device) -> str:
    """Return the torch settings in effect that choose the kernels on `device` ("" for the defaults off CUDA)."""
    det = "+deterministic" if torch.are_deterministic_algorithms_enabled() else ""
    if device.type == "cuda":
        return f"{det}+cudnn_benchmark={torch.backends.cudnn.benchmark}"
    return det


def cache_path(cache_dir: str | Path, digest: str, split: subsets.Decoded, flip: bool, device: torch.device,
               amp: bool = False) -> Path:
    """Return where the features of (backbone, split, view) computed on this kind of device are kept."""
    # The device type, AMP on CUDA and the kernel choice are part of the key: CUDA kernels and bf16 round
    # differently from the CPU's, deterministic kernels and cuDNN's autotuned ones differently from each other.
    how = f"{device.type}{'+amp' if amp and device.type == 'cuda' else ''}{kernel_settings(device)}"
    key = hashlib.sha256(f"v{VERSION}|{digest}|{split.key}|flip={flip}|{how}".encode()).hexdigest()[:24]
    return Path(cache_dir) / "features" / f"{key}.npy"


def features(model: nn.Module, split: subsets.Decoded, device: torch.device, digest: str,
             cache_dir: str | Path | None, flip: bool = False, progress: bool = False,
             desc: str = "features", amp: bool = False) -> tuple[torch.Tensor, bool]:
    """Return (features of the split on `device`, whether they were read from the cache).

    The cache is used when `cache_dir` is set and the split came from the decode cache (it has a key). A damaged
    or mismatched entry is computed afresh and replaced; entries are written atomically.
    """
    if cache_dir is None or not split.key:
        return extract(model, split, device, flip, progress=progress, desc=desc, amp=amp), False
    path = cache_path(cache_dir, digest, split, flip, device, amp)
    if path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.shape[0] != len(split) or arr.dtype != np.float32:
                raise ValueError(f"holds {arr.dtype} {arr.shape}, expected float32 ({len(split)}, D)")
            return torch.from_numpy(arr).to(device), True
        except (OSError, ValueError, EOFError) as e:
            log.warning("feature cache %s is damaged (%s); computing afresh", path, e)
    feats = extract(model, split, device, flip, progress=progress, desc=desc, amp=amp)
    remove_temps(path.parent, older_than_s=3600)  # left by a killed write; a live one (another run) is younger
    atomic_save_npy(path, feats.cpu().numpy())
    return feats, False
