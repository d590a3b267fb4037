"""Checkpoint files: written atomically, read with `weights_only=True`, with a clear error when foreign or damaged."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_torch_save

FORMAT = "foodcnn-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or not one foodcnn wrote."""


def save(path: str | Path, **content: Any) -> None:
    """Write a checkpoint (a dict of tensors and plain values) atomically."""
    atomic_torch_save(path, {"format": FORMAT, **content})


def _reason(e: Exception) -> str:
    """Return the useful line of a load error (torch's advice to retry with weights_only=False is dropped)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if isinstance(e, pickle.UnpicklingError) and lines[:1] and lines[0].startswith("Weights only load failed"):
        lines = [ln.split("WeightsUnpickler error:")[-1].strip() for ln in lines[1:]
                 if not ln.startswith("Check the documentation")]
        lines = [ln for ln in lines if ln]
    return f"{type(e).__name__}: {lines[0][:200] if lines else 'empty or truncated file'}"


def load(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint's content, loaded with weights_only=True (no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # mmap: tensors are read from the file when touched, so taking one layer out of a 537 MB VGG16
        # checkpoint (the report's filter grids) costs milliseconds.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # damaged bytes surface as many types: UnpicklingError, RuntimeError, EOFError, KeyError...
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({_reason(e)}). "
            "It is damaged, or was not written by foodcnn (code in a file is refused, never run); "
            "delete it and re-run (without --resume)."
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "model" not in obj:
        raise CheckpointError(
            f"checkpoint {path} is not a foodcnn checkpoint (no '{FORMAT}' marker): "
            "foodcnn only reads the best.pt / last.pt files its runs write"
        )
    return obj
