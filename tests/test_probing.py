"""Tests for foodcnn.figures.probing: conv layers found in every family, forward hooks that leave no trace, Grad-CAM."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from foodcnn.models import registry
from foodcnn.figures import probing


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    )


@pytest.fixture(scope="module")
def vgg16_bn() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vgg16_bn(weights=None, num_classes=5)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=5)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_first_conv(resnet18, vgg16_bn):
    assert probing.first_conv(resnet18) is resnet18.conv1
    assert probing.first_conv(vgg16_bn) is vgg16_bn.features[0]
    with pytest.raises(ValueError):
        probing.first_conv(nn.Linear(2, 2))


def test_feature_layers_tiny_cnn():
    model = tiny_cnn()
    layers = probing.feature_layers(model)
    assert list(layers) == ["first: conv1 (0)", "middle: conv2 (3)", "last: conv3 (5)"]
    assert [layers[k] for k in layers] == [model[0], model[3], model[5]]
    two = probing.feature_layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)))
    assert list(two) == ["first: conv1 (0)", "last: conv2 (1)"]
    explicit = probing.feature_layers(model, names=["3"])
    assert explicit == {"3": model[3]}


def test_feature_layers_of_the_study_cnns_and_efficientnet():
    # VGG and ResNet are covered above; here the study's own small CNNs and EfficientNet-Lite0
    custom_b = registry.build("custom_b", num_classes=4)
    assert [k.split(" (")[1] for k in probing.feature_layers(custom_b)] == [
        "features.conv1.conv)", "features.conv4.conv)", "features.conv6.conv)"]
    effnet = registry.build("efficientnet_lite0", num_classes=4, pretrained="none")
    labels = list(probing.feature_layers(effnet))
    assert labels[0].endswith("(conv_stem)") and labels[-1].endswith("(conv_head)")


def test_cam_layer_is_the_last_conv_with_a_map_of_at_least_4x4(resnet18):
    # at 20 px (baseline) and 32 px (ResNet18) the last conv is 1x1: Grad-CAM moves to the last map of >= 4x4
    assert probing.cam_layer(registry.build("baseline", num_classes=4), 20) == "features.conv3.conv"
    assert probing.cam_layer(resnet18, 32) == "layer2.1.conv2"
    assert probing.cam_layer(resnet18, 224) == "layer4.1.conv2"  # 7x7 at 224 px: the paper's choice
    assert probing.cam_layer(resnet18, 32, min_side=64) == "layer4.1.conv2"  # no map that large: the last conv
    assert no_hooks(resnet18)


def test_capture_feature_maps_every_family(resnet18, vgg16_bn):
    cases = [
        (tiny_cnn(), 20, [(8, 18, 18), (16, 16, 16), (16, 7, 7)]),
        (vgg16_bn, 32, [(64, 32, 32), (256, 8, 8), (512, 2, 2)]),
        (resnet18, 64, [(64, 32, 32), (256, 4, 4), (512, 2, 2)]),
    ]
    for model, size, shapes in cases:
        model.train()
        layers = probing.feature_layers(model)
        maps = probing.capture_feature_maps(model, torch.randn(3, size, size), layers)
        assert list(maps) == list(layers)
        assert [tuple(m.shape) for m in maps.values()] == shapes
        assert no_hooks(model)
        assert model.training  # mode restored
    names = list(probing.feature_layers(resnet18))
    assert names[0].endswith("(conv1)") and names[-1].endswith("(layer4.1.conv2)")
    assert list(probing.feature_layers(vgg16_bn))[-1].endswith("(features.40)")


def test_capture_removes_hooks_on_error():
    model = tiny_cnn()
    with pytest.raises(RuntimeError):
        probing.capture_feature_maps(model, torch.randn(4, 20, 20), probing.feature_layers(model))
    assert no_hooks(model)


class ColourGlobalPool(nn.Module):
    """Class 0's logit is the mean red response, class 1's the mean green response."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0  # channel 0 <- red
            self.conv.weight[1, 1] = 1.0  # channel 1 <- green
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x))).flatten(1)


def test_grad_cam_peaks_where_the_class_evidence_is():
    model = ColourGlobalPool()
    model.conv.weight.requires_grad_(False)  # a frozen layer still gets a CAM
    image = torch.zeros(3, 32, 32)
    image[0, 2:12, 2:12] = 1.0  # red square, top-left
    image[1, 20:30, 20:30] = 1.0  # green square, bottom-right
    for cls, (rows, cols) in {0: (slice(2, 12), slice(2, 12)), 1: (slice(20, 30), slice(20, 30))}.items():
        cam = probing.grad_cam(model, image, class_idx=cls)
        assert cam.shape == (32, 32) and cam.min() >= 0 and cam.max() <= 1
        r, c = np.unravel_index(cam.argmax(), cam.shape)
        assert rows.start <= r < rows.stop and cols.start <= c < cols.stop
        inside = np.zeros_like(cam, dtype=bool)
        inside[rows, cols] = True
        assert cam[inside].mean() > 0.9 and cam[~inside].mean() < 0.1
    assert model.conv.weight.requires_grad is False and model.conv.weight.grad is None
    assert no_hooks(model)


def test_grad_cam_pretrained_families_leave_model_untouched(resnet18, vgg16_bn):
    for model, size in ((resnet18, 64), (vgg16_bn, 32), (tiny_cnn(), 24)):
        for i, p in enumerate(model.parameters()):
            p.requires_grad_(i % 2 == 0)  # a mix of frozen and trainable
        before = [p.requires_grad for p in model.parameters()]
        model.train()
        with torch.no_grad():  # callers may well be inside no_grad
            cam = probing.grad_cam(model, torch.randn(3, size, size))
        assert cam.shape == (size, size) and cam.dtype == np.float32
        assert 0 <= cam.min() and cam.max() <= 1 and not np.isnan(cam).any()
        assert [p.requires_grad for p in model.parameters()] == before
        assert all(p.grad is None for p in model.parameters())
        assert no_hooks(model) and model.training
    cam = probing.grad_cam(resnet18, torch.randn(3, 64, 64), target_layer=resnet18.layer4, class_idx=2)
    assert cam.shape == (64, 64)



def test_conv_layers_in_forward_order(resnet18):
    names = [name for name, _ in registry.conv_layers(resnet18)]
    assert names[0] == "conv1" and names[-1] == "layer4.1.conv2" and len(names) == 20
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        registry.conv_layers(nn.Linear(2, 2))
