"""Torchvision's ImageNet backbones: loading their weights from torchvision's cache or a file, checked, and fetching them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were required but cannot be loaded offline."""


def weights_cache_dir() -> Path:
    """Return the directory torchvision reads cached weights from ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_torchvision(name: str, weights_enum: str, pretrained: str, weights_path: str | None) -> tuple[nn.Module, str]:
    """Return (ImageNet model, source) where source says where the weights came from.

    `name` is torchvision's constructor (torchvision.models.<name>), `weights_enum` its weights enum (e.g.
    "VGG16_Weights"); the model registry (models/registry.py) declares both.
    """
    import torchvision

    ctor = getattr(torchvision.models, name)
    enum_name = weights_enum
    weights = getattr(torchvision.models, enum_name).IMAGENET1K_V1
    model = ctor(weights=None)
    filename = weights.url.rsplit("/", 1)[-1]
    if pretrained == "none":
        return model, "random init (pretrained: none)"
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"weights_path {path} does not exist")
        model.load_state_dict(_state_for(model, name, path, filename))
        return model, f"ImageNet ({path.name})"
    cached = weights_cache_dir() / filename
    if cached.is_file() or os.environ.get("FOODCNN_ALLOW_DOWNLOAD", "0") == "1":
        try:
            model.load_state_dict(weights.get_state_dict(progress=False, check_hash=False))
            return model, f"ImageNet ({filename})"
        except Exception as e:  # offline download, corrupt file
            from ..checkpoints import load_error

            reason = load_error(e)
    else:
        reason = "not in the local cache (set FOODCNN_ALLOW_DOWNLOAD=1 to let torchvision download it)"
    msg = (f"ImageNet weights for {name} unavailable: {reason}. Put {filename} into {weights_cache_dir()} "
           f"(torchvision's cache under $TORCH_HOME; download from {weights.url}) or set weights_path.")
    if pretrained == "required":
        raise WeightsUnavailable(msg)
    log.warning("%s Training from random init instead (pretrained: auto).", msg)
    return model, "random init (ImageNet weights unavailable)"


def _summary(keys: list[str], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f", ... ({len(keys) - shown} more)" if len(keys) > shown else "")


def _state_for(model: nn.Module, name: str, path: Path, filename: str) -> dict[str, torch.Tensor]:
    """Return the state dict in `path`, checked key by key and shape by shape against `model` (before any training)."""
    from ..checkpoints import FORMAT, load_error

    fix = (f"Point weights_path at {name}'s ImageNet state dict (torchvision's {filename}), "
           "or remove weights_path to use torchvision's cache.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # damaged bytes surface as UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsUnavailable(f"weights_path {path} cannot be loaded ({load_error(e)}): the file is damaged or "
                                 f"not a PyTorch state dict. {fix}") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        raise WeightsUnavailable(f"weights_path {path} is a foodcnn run checkpoint (best.pt/last.pt), not ImageNet "
                                 f"weights. {fix}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"weights_path {path} does not hold a state dict (parameter name -> tensor). {fix}")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in {name}"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{len(keys)} {what}: {_summary(keys)}" for keys, what in
                ((missing, f"of {name}'s {len(expected)} tensors missing"), (unexpected, "unexpected"),
                 (reshaped, "of another shape")) if keys]
    if problems:
        kind = " they look like another architecture's weights." if missing or unexpected else ""
        raise WeightsUnavailable(f"weights_path {path} does not fit {name} ({'; '.join(problems)});{kind} {fix}")
    return state


def fetch_imagenet_weights(enums: list[str]) -> list[Path]:
    """Download the torchvision ImageNet weights of these enums into torchvision's cache; return the files."""
    import torchvision

    files = []
    for enum_name in enums:
        weights = getattr(torchvision.models, enum_name).IMAGENET1K_V1
        weights.get_state_dict(progress=True)  # torch.hub: a file already in the cache is not fetched again
        files.append(weights_cache_dir() / weights.url.rsplit("/", 1)[-1])
    return files
