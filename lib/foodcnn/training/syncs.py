"""Host-device synchronisation points, counted: a dispatch mode that records every op that makes the host wait.

On a GPU, PyTorch queues kernels and returns at once; the host waits only where it needs a value or memory
the device owns, or where it copies from memory the device cannot read on its own. Each such wait drains the
queue, so the next batch's data work can no longer overlap this step's GPU work. `SyncCounter` records them:

- "item": a device value read on the host (`.item()`, `bool(t)`, `.tolist()` of one element, `if t:`);
- "to host": a device tensor copied to the host (`.cpu()`, `.numpy()`, `.tolist()`);
- "blocking copy": a host tensor copied to the device from pageable memory, or without `non_blocking`;
- "implicit copy": a host tensor of one element or more handed to an op on device tensors (the op copies it);
- "data-dependent": an op whose output size the host must learn from the device (`nonzero`, boolean masks).

A copy from pinned host memory with `non_blocking=True` is recorded as "async copy": it is no sync.

It runs on a real device as on PyTorch's `meta` device, where tensors have shapes and no data: there it
answers the reads above with stand-in values (ones, zeros, every element selected) so that code written for
CUDA runs to its end on a machine without one, and any op that mixes host and device tensors fails as it
would on a GPU. Pinned memory needs an accelerator: without one it is emulated (a copy, remembered as pinned).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten
SYNC_KINDS = ("item", "to host", "blocking copy", "implicit copy", "data-dependent")
_COPIES = {aten._to_copy.default, aten.copy_.default}
_DATA_DEPENDENT = {aten.nonzero.default, aten.masked_select.default, aten.unique_dim.default,
                   aten._unique2.default, aten.masked_scatter_.default, aten.repeat_interleave.Tensor}


def _on_device(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type != "cpu"


def _on_host(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == "cpu"


def _has_mask(indices: Any) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class _Factories(TorchFunctionMode):
    """Records `torch.tensor(data, device=...)` onto a device: built on the host, then copied (below dispatch)."""

    def __init__(self, events: list[tuple[str, str]]):
        super().__init__()
        self.events = events

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type != "cpu" and not isinstance(args[0], torch.Tensor):
            self.events.append(("blocking copy", func.__name__))
        return func(*args, **kwargs)


class SyncCounter(TorchDispatchMode):
    """Within the block, `events` lists (kind, op) for every sync point and async copy, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self._pinned: set[int] = set()
        self._emulate_pinning = not torch.cuda.is_available()
        self._factories = _Factories(self.events)

    def __enter__(self) -> "SyncCounter":
        self._factories.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._factories.__exit__(*exc)

    def syncs(self) -> list[tuple[str, str]]:
        """Return the events that make the host wait (async copies left out)."""
        return [e for e in self.events if e[0] in SYNC_KINDS]

    def summary(self) -> dict[str, int]:
        """Return how many events of each kind were recorded."""
        return dict(Counter(kind for kind, _ in self.events))

    def _pinned_src(self, t: torch.Tensor) -> bool:
        if self._emulate_pinning:
            return t.untyped_storage().data_ptr() in self._pinned
        return t.is_pinned()

    def _classify(self, func: Any, args: tuple, kwargs: dict) -> str | None:
        if func is aten._local_scalar_dense.default:
            return "item" if _on_device(args[0]) else None
        if func in _DATA_DEPENDENT:
            return "data-dependent" if _on_device(args[0]) else None
        if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default):
            if _on_device(args[0]) and _has_mask(args[1]):
                return "data-dependent"
        if func in _COPIES:
            src = args[1] if func is aten.copy_.default else args[0]
            dst_device = args[0].device if func is aten.copy_.default else kwargs.get("device", src.device)
            dst_device = torch.device(dst_device) if dst_device is not None else src.device
            if _on_device(src) and dst_device.type == "cpu":
                return "to host"
            if _on_host(src) and dst_device.type != "cpu":
                non_blocking = kwargs.get("non_blocking", args[2] if func is aten.copy_.default and len(args) > 2
                                          else False)
                return "async copy" if non_blocking and self._pinned_src(src) else "blocking copy"
            return None
        flat, _ = tree_flatten((args, kwargs))
        if any(_on_device(t) for t in flat) and any(_on_host(t) and t.dim() > 0 for t in flat):
            return "implicit copy"
        return None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        kind = self._classify(func, args, kwargs)
        if kind is not None:
            self.events.append((kind, str(func.overloadpacket.__name__)))
        if self._emulate_pinning:
            if func is aten.is_pinned.default:
                return args[0].untyped_storage().data_ptr() in self._pinned
            if func in (aten._pin_memory.default, aten.pin_memory.default):
                out = args[0].clone()
                self._pinned.add(out.untyped_storage().data_ptr())
                return out
        if not any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tree_flatten((args, kwargs))[0]):
            return func(*args, **kwargs)
        return _on_meta(func, args, kwargs)


def _on_meta(func: Any, args: tuple, kwargs: dict) -> Any:
    """Run `func` on meta tensors, standing in for the ops that need data (the values do not matter there)."""
    if func is aten._local_scalar_dense.default:
        return True if args[0].dtype == torch.bool else 1
    if func is aten.nonzero.default:
        x = args[0]
        return torch.arange(x.numel(), device="meta").view(-1, 1).expand(x.numel(), max(x.dim(), 1)).clone()
    if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default) \
            and _has_mask(args[1]):
        indices = [torch.arange(i.shape[0], device="meta") if isinstance(i, torch.Tensor) and i.dtype in
                   (torch.bool, torch.uint8) else i for i in args[1]]
        return func(args[0], indices, *args[2:], **kwargs)
    if func in _COPIES:
        src = args[1] if func is aten.copy_.default else args[0]
        if func is aten.copy_.default and args[0].device.type == "cpu" and src.device.type == "meta":
            return args[0].zero_()
        if func is not aten.copy_.default and src.device.type == "meta" and str(kwargs.get("device", "meta")) == "cpu":
            return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)
    return func(*args, **kwargs)


def count(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, SyncCounter]:
    """Return (fn(*args, **kwargs), the SyncCounter that watched it)."""
    with SyncCounter() as counter:
        out = fn(*args, **kwargs)
    return out, counter


def to_meta(module_or_tensor: Any) -> Any:
    """Return a module or (nested) tensors moved to the meta device (shapes kept, data dropped)."""
    if isinstance(module_or_tensor, torch.nn.Module):
        return module_or_tensor.to("meta")
    return tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, module_or_tensor)
