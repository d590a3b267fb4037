"""Tests for foodcnn.viz: filter tiles, feature-map hooks, confusion tables, Grad-CAM, figures."""

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from matplotlib.figure import Figure
from torch import nn

from foodcnn import viz


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


# --- filters -----------------------------------------------------------------------------------


def test_filter_tiles_known_values():
    w = torch.zeros(2, 3, 1, 2)
    w[0, :, 0, 0] = torch.tensor([-1.0, 0.0, 1.0])  # values -1..1 -> shifted 0..2 -> /2
    w[0, :, 0, 1] = torch.tensor([0.5, -0.5, 1.0])
    w[1] = 7.0  # a constant filter
    tiles = viz.filter_tiles(w)
    assert tiles.shape == (2, 1, 2, 3)
    expected = torch.tensor([[[0.0, 0.5, 1.0], [0.75, 0.25, 1.0]]])
    torch.testing.assert_close(tiles[0], expected)
    assert not torch.isnan(tiles).any()
    assert torch.equal(tiles[1], torch.zeros(1, 2, 3))


def test_filter_tiles_grey_for_non_rgb_and_cap_at_64():
    w = torch.randn(100, 5, 3, 3)
    tiles = viz.filter_tiles(w)
    assert tiles.shape == (64, 3, 3, 3)
    assert torch.equal(tiles[..., 0], tiles[..., 1]) and torch.equal(tiles[..., 1], tiles[..., 2])
    assert tiles.amin(dim=(1, 2, 3)).eq(0).all() and tiles.amax(dim=(1, 2, 3)).eq(1).all()


def test_filter_grid_has_at_most_64_tiles():
    fig = viz.filter_grid(torch.randn(100, 3, 3, 3))
    assert isinstance(fig, Figure)
    assert sum(1 for ax in fig.axes if ax.get_visible() and ax.images) == 64
    few = viz.filter_grid(torch.randn(10, 3, 7, 7), title="ten")
    assert sum(1 for ax in few.axes if ax.get_visible() and ax.images) == 10
    assert few.axes[0].images[0].get_interpolation() == "nearest"


def test_first_conv(resnet18, vgg16_bn):
    assert viz.first_conv(resnet18) is resnet18.conv1
    assert viz.first_conv(vgg16_bn) is vgg16_bn.features[0]
    with pytest.raises(ValueError):
        viz.first_conv(nn.Linear(2, 2))


# --- feature maps ------------------------------------------------------------------------------


def test_feature_layers_tiny_cnn():
    model = tiny_cnn()
    layers = viz.feature_layers(model)
    assert list(layers) == ["first: conv1 (0)", "middle: conv2 (3)", "last: conv3 (5)"]
    assert [layers[k] for k in layers] == [model[0], model[3], model[5]]
    two = viz.feature_layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)))
    assert list(two) == ["first: conv1 (0)", "last: conv2 (1)"]
    explicit = viz.feature_layers(model, names=["3"])
    assert explicit == {"3": model[3]}


def test_capture_feature_maps_every_family(resnet18, vgg16_bn):
    cases = [
        (tiny_cnn(), 20, [(8, 18, 18), (16, 16, 16), (16, 7, 7)]),
        (vgg16_bn, 32, [(64, 32, 32), (256, 8, 8), (512, 2, 2)]),
        (resnet18, 64, [(64, 32, 32), (256, 4, 4), (512, 2, 2)]),
    ]
    for model, size, shapes in cases:
        model.train()
        layers = viz.feature_layers(model)
        maps = viz.capture_feature_maps(model, torch.randn(3, size, size), layers)
        assert list(maps) == list(layers)
        assert [tuple(m.shape) for m in maps.values()] == shapes
        assert no_hooks(model)
        assert model.training  # mode restored
    names = list(viz.feature_layers(resnet18))
    assert names[0].endswith("(conv1)") and names[-1].endswith("(layer4.1.conv2)")
    assert list(viz.feature_layers(vgg16_bn))[-1].endswith("(features.40)")


def test_capture_removes_hooks_on_error():
    model = tiny_cnn()
    with pytest.raises(RuntimeError):
        viz.capture_feature_maps(model, torch.randn(4, 20, 20), viz.feature_layers(model))
    assert no_hooks(model)


def test_normalise_maps_per_map():
    maps = torch.randn(6, 5, 5) * torch.arange(1, 7).view(6, 1, 1) + 3
    maps[2] = 4.0  # constant map
    out = viz.normalise_maps(maps)
    assert not torch.isnan(out).any()
    for i in (0, 1, 3, 4, 5):
        assert out[i].min() == 0 and out[i].max() == 1
    assert torch.equal(out[2], torch.zeros(5, 5))


def test_feature_map_grid_is_a_figure():
    maps = {"first": torch.randn(100, 6, 6), "last": torch.randn(3, 2, 2)}
    fig = viz.feature_map_grid(maps)
    assert isinstance(fig, Figure)
    assert sum(1 for ax in fig.axes if ax.get_visible() and ax.images) == 64 + 3


def test_one_by_one_maps_are_scaled_across_channels():
    # The last conv of custom_b ends at 1x1: per-map min-max would make every tile black.
    maps = {"last": torch.tensor([0.0, 1.0, 3.0, 4.0]).view(4, 1, 1)}
    fig = viz.feature_map_grid(maps)
    values = [float(ax.images[0].get_array()[0, 0]) for ax in fig.axes if ax.get_visible() and ax.images]
    assert values == [0.0, 0.25, 0.75, 1.0]
    assert "scaled across maps" in fig.subfigs[0]._suptitle.get_text()


# --- curves, confusion ------------------------------------------------------------------------


def metrics_frame(epochs: int = 6, best: int = 4) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    val_loss = 2.0 - 0.1 * e
    val_loss[best:] += 0.3  # epoch `best` has the minimum
    return pd.DataFrame({
        "epoch": e, "train_loss": 2.2 - 0.2 * e, "val_loss": val_loss,
        "train_acc": 0.1 * e, "val_acc": 0.08 * e,
    })


def test_curves_marks_best_epoch():
    fig = viz.curves(metrics_frame(best=4), title="run")
    assert isinstance(fig, Figure)
    ax_loss = fig.axes[0]
    vlines = [line for line in ax_loss.lines if line.get_linestyle() == "--"]
    assert vlines and vlines[0].get_xdata()[0] == 4
    assert isinstance(viz.curves_grid({f"run{i}": metrics_frame() for i in range(5)}), Figure)


def test_confusion_known_matrix():
    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 2, 1, 0, 2]
    cm = viz.confusion(y_true, y_pred, 4)
    expected = np.array([
        [0.5, 0.25, 0.25, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0],
    ])
    np.testing.assert_allclose(cm, expected)
    np.testing.assert_allclose(cm[:3].sum(axis=1), 1)
    assert isinstance(viz.confusion_figure(cm, ["a", "b", "c", "d"]), Figure)
    rng = np.random.default_rng(0)
    big = viz.confusion(rng.integers(0, 20, 500), rng.integers(0, 20, 500), 20)
    np.testing.assert_allclose(big.sum(axis=1), 1)
    assert isinstance(viz.confusion_figure(big, [f"class_{i}" for i in range(20)]), Figure)


def test_per_class_accuracy_and_most_confused():
    names = ["apple_pie", "baklava", "churros"]
    y_true = [0] * 4 + [1] * 5 + [2] * 2
    y_pred = [0, 1, 1, 1] + [1, 1, 2, 0, 0] + [2, 2]
    table = viz.per_class_accuracy(y_true, y_pred, names)
    assert list(table.columns) == ["class", "n", "correct", "accuracy"]
    assert table["n"].tolist() == [4, 5, 2]
    np.testing.assert_allclose(table["accuracy"], [0.25, 0.4, 1.0])
    assert isinstance(viz.per_class_figure(table), Figure)
    top = viz.most_confused(y_true, y_pred, names, k=2)
    assert list(top.columns) == ["true", "predicted", "count", "share"]
    assert top.iloc[0].tolist() == ["apple_pie", "baklava", 3, 0.75]
    assert top.iloc[1].tolist() == ["baklava", "apple_pie", 2, 0.4]
    assert len(viz.most_confused(y_true, y_pred, names)) == 3  # only real mistakes


# --- galleries ---------------------------------------------------------------------------------


def test_highest_loss_and_gallery():
    losses = np.array([0.1, 3.0, 0.5, 2.0, 0.2])
    assert viz.highest_loss(losses, k=3).tolist() == [1, 3, 2]
    images = torch.rand(5, 3, 16, 16)
    assert isinstance(viz.image_gallery(images, [str(i) for i in range(5)], ncols=3), Figure)
    as_uint8 = (images * 255).to(torch.uint8)
    assert isinstance(viz.image_gallery(as_uint8, None), Figure)


def test_denormalise_inverts_normalise():
    x = torch.rand(2, 3, 4, 4)
    mean, std = torch.tensor(viz.IMAGENET_MEAN).view(3, 1, 1), torch.tensor(viz.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(viz.denormalise((x - mean) / std), x)
    torch.testing.assert_close(viz.denormalise((x[0] - mean) / std), x[0])


# --- Grad-CAM ----------------------------------------------------------------------------------


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
        cam = viz.grad_cam(model, image, class_idx=cls)
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
            cam = viz.grad_cam(model, torch.randn(3, size, size))
        assert cam.shape == (size, size) and cam.dtype == np.float32
        assert 0 <= cam.min() and cam.max() <= 1 and not np.isnan(cam).any()
        assert [p.requires_grad for p in model.parameters()] == before
        assert all(p.grad is None for p in model.parameters())
        assert no_hooks(model) and model.training
    cam = viz.grad_cam(resnet18, torch.randn(3, 64, 64), target_layer=resnet18.layer4, class_idx=2)
    assert cam.shape == (64, 64)


def test_cam_overlay_and_figures():
    image = torch.rand(3, 16, 16)
    cam = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)  # coarser than the image
    overlay = viz.cam_overlay(image, cam)
    assert overlay.shape == (16, 16, 3) and overlay.min() >= 0 and overlay.max() <= 1
    overlay_u8 = viz.cam_overlay((image * 255).to(torch.uint8), cam, alpha=0.0)
    np.testing.assert_allclose(overlay_u8, image.permute(1, 2, 0).numpy(), atol=1 / 255)
    images = torch.rand(3, 3, 16, 16)
    assert isinstance(viz.cam_figure(images, [cam] * 3, ["a", "b", "c"]), Figure)
    models = {"tiny": tiny_cnn(), "other": tiny_cnn()}
    panels, titles = viz.cam_rows(models, torch.randn(3, 3, 24, 24), [f"c{i}" for i in range(5)])
    assert list(panels) == ["tiny", "other"] and len(panels["tiny"]) == 3
    assert panels["tiny"][0].shape == (24, 24, 3) and titles["tiny"][0].startswith("c")
    fig = viz.side_by_side(panels, titles, col_titles=["x", "y", "z"])
    assert isinstance(fig, Figure)
