"""The small CNNs of SPEC §2 as data: report A's and B's architectures as layer-token lists, their ablation knobs, the builder."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


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
