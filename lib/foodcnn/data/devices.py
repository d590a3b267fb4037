"""Moving data to the training device without making the host wait: pinned copies and a one-batch look-ahead.

On CUDA a copy from ordinary (pageable) host memory makes the host wait for the GPU to drain its queue; a copy
from pinned memory with `non_blocking=True` is queued like a kernel. With no other wait in the step
(syncs.py counts them), the host prepares batch i+1 and queues its copy while the GPU still runs step i.
On the CPU every function here hands the tensors back unchanged.
"""

from __future__ import annotations

import functools
from typing import Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return x on `device`; a host tensor bound for an accelerator is pinned first and copied without blocking."""
    if x.device == device or device.type == "cpu":
        return x.to(device)
    if x.device.type == "cpu":
        x = x.pin_memory()  # the caching host allocator keeps the block until the queued copy has read it
    return x.to(device, non_blocking=True)


def prefetch(batches: Iterable[tuple[torch.Tensor, ...]], device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield the batches on `device`, each batch's copy queued before the previous batch is handed out."""
    if device.type == "cpu":
        yield from batches
        return
    it = iter(batches)
    ahead = next(it, None)
    ahead = None if ahead is None else tuple(to_device(t, device) for t in ahead)
    while ahead is not None:
        current = ahead
        ahead = next(it, None)
        ahead = None if ahead is None else tuple(to_device(t, device) for t in ahead)
        yield current


@functools.lru_cache(maxsize=32)
def constant(values: tuple[float, ...], device: torch.device, scale: float = 1.0) -> torch.Tensor:
    """Return `values` * `scale` as a float32 (1, C, 1, 1) tensor on `device`, built once per device."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).mul_(scale).to(device)
