"""Looking inside a model: its conv layers, their outputs captured with forward hooks, Grad-CAM and where to take it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.registry import conv_layers

# Grad-CAM needs a map that can say "where": at the demo profile's small inputs the last conv layer of
# several models is 1x1 or 2x2, so the target is the last conv layer with at least this many rows and
# columns (at 224 px that is the last conv layer of every model, as in the Grad-CAM paper).
MIN_CAM_SIDE = 4


def _batch_of_one(model: nn.Module, image: Tensor) -> Tensor:
    """Return a (3, H, W) image (or the first of a batch) as a batch of one on the model's device."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return (image.unsqueeze(0) if image.ndim == 3 else image[:1]).to(device)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """Return the first nn.Conv2d in registration (forward) order."""
    return conv_layers(model)[0][1]


def feature_layers(model: nn.Module, names: Sequence[str] | None = None) -> dict[str, nn.Module]:
    """Return {label: module} for the first, a middle and the last conv layer (or the named modules).

    The rule is the same for every family: list the nn.Conv2d modules in named_modules order
    (registration order, which is forward order for Sequential stacks, VGG and ResNet), take the
    first, the one at index len // 2 and the last; duplicates collapse for models with < 3 convs.
    Labels read "first: conv1 (features.0)" — ordinal among the convs, then the module path.
    ResNet18: conv1 (stem), layer3.0.conv1 (middle), layer4.1.conv2 (last).
    Pass ``names`` (module paths such as "layer2.1.conv2") to pick layers explicitly.
    """
    if names is not None:
        return {name: model.get_submodule(name) for name in names}
    convs = conv_layers(model)
    roles = {0: "first", len(convs) // 2: "middle", len(convs) - 1: "last"}  # later roles win
    return {f"{role}: conv{i + 1} ({convs[i][0]})": convs[i][1] for i, role in sorted(roles.items())}


def capture_feature_maps(
    model: nn.Module, image: Tensor, layers: dict[str, nn.Module]
) -> dict[str, Tensor]:
    """Return {label: (C, H, W) output} of each layer for one (3, H, W) image, via forward hooks."""
    maps: dict[str, Tensor] = {}

    def keep(label: str):
        def hook(_module, _inputs, output):
            if label not in maps:  # a module called twice keeps its first output
                maps[label] = output[0].detach().cpu()

        return hook

    batch = _batch_of_one(model, image)
    was_training = model.training
    handles = []
    try:
        handles = [m.register_forward_hook(keep(label)) for label, m in layers.items()]
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {label: maps[label] for label in layers}


def cam_layer(model: nn.Module, image_size: int, min_side: int = MIN_CAM_SIDE) -> str:
    """Return the Grad-CAM target: the last conv layer with a map of min_side x min_side or more, else the last."""
    convs = dict(conv_layers(model))
    shapes = capture_feature_maps(model, torch.zeros(3, image_size, image_size), convs)
    wide = [name for name in convs if min(shapes[name].shape[-2:]) >= min_side]
    return wide[-1] if wide else list(convs)[-1]


def grad_cam(
    model: nn.Module,
    image: Tensor,
    target_layer: nn.Module | None = None,
    class_idx: int | None = None,
) -> np.ndarray:
    """Return the Grad-CAM map (H, W) in [0, 1] of one normalised (3, H, W) image.

    Target layer defaults to the last nn.Conv2d, the class to the predicted one. The model is run
    in eval mode and its training flag, hooks and parameters (requires_grad, .grad) are left as found.
    """
    if target_layer is None:
        target_layer = conv_layers(model)[-1][1]
    captured: dict[str, Tensor] = {}

    def hook(_module, _inputs, output):
        if "act" in captured:
            return None
        # Cut the graph here and start a fresh leaf: gradients w.r.t. the activation need no
        # parameter to require grad (frozen models work), and nothing upstream is computed.
        # The clone keeps the leaf intact when an in-place ReLU follows (VGG16).
        act = output.detach().requires_grad_(True)
        captured["act"] = act
        return act.clone()

    batch = _batch_of_one(model, image)
    was_training = model.training
    handle = target_layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(batch)[0]
            index = int(logits.argmax()) if class_idx is None else int(class_idx)
            # autograd.grad, not backward(): no parameter .grad is touched.
            (grads,) = torch.autograd.grad(logits[index], captured["act"])
    finally:
        handle.remove()
        model.train(was_training)
    act = captured["act"].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k: global-average-pooled gradients
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))
    # Normalise the coarse map, then upsample (bilinear stays in [0, 1]): upsampling first would turn a
    # constant map (a 1x1 last layer) into rounding noise that min-max scaling blows up into speckles.
    low, high = cam.min(), cam.max()
    cam = (cam - low) / (high - low) if high > low else torch.zeros_like(cam)
    cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    return cam.cpu().numpy().astype(np.float32)
