"""Checkpoint files: written atomically, read with `weights_only=True`, with a clear error when foreign or damaged."""

from __future__ import annotations

import pickle
import zipfile
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


def load(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint's content, loaded with weights_only=True (no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "It is damaged or was not written by foodcnn; delete it and re-run (without --resume)."
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "model" not in obj:
        raise CheckpointError(f"checkpoint {path} is not a foodcnn checkpoint (no '{FORMAT}' marker)")
    return obj
