"""Tests for foodcnn.figures.filters: filter tiles, feature-map grids and Grad-CAM overlays as figures."""

import numpy as np
import torch
from matplotlib.figure import Figure

from foodcnn.figures import filters


# --- filters -----------------------------------------------------------------------------------


def test_filter_tiles_known_values():
    w = torch.zeros(2, 3, 1, 2)
    w[0, :, 0, 0] = torch.tensor([-1.0, 0.0, 1.0])  # values -1..1 -> shifted 0..2 -> /2
    w[0, :, 0, 1] = torch.tensor([0.5, -0.5, 1.0])
    w[1] = 7.0  # a constant filter
    tiles = filters.filter_tiles(w)
    assert tiles.shape == (2, 1, 2, 3)
    expected = torch.tensor([[[0.0, 0.5, 1.0], [0.75, 0.25, 1.0]]])
    torch.testing.assert_close(tiles[0], expected)
    assert not torch.isnan(tiles).any()
    assert torch.equal(tiles[1], torch.zeros(1, 2, 3))


def test_filter_tiles_grey_for_non_rgb_and_cap_at_64():
    w = torch.randn(100, 5, 3, 3)
    tiles = filters.filter_tiles(w)
    assert tiles.shape == (64, 3, 3, 3)
    assert torch.equal(tiles[..., 0], tiles[..., 1]) and torch.equal(tiles[..., 1], tiles[..., 2])
    assert tiles.amin(dim=(1, 2, 3)).eq(0).all() and tiles.amax(dim=(1, 2, 3)).eq(1).all()


def test_filter_grid_has_at_most_64_tiles():
    fig = filters.filter_grid(torch.randn(100, 3, 3, 3))
    assert isinstance(fig, Figure)
    assert sum(1 for ax in fig.axes if ax.get_visible() and ax.images) == 64
    few = filters.filter_grid(torch.randn(10, 3, 7, 7), title="ten")
    assert sum(1 for ax in few.axes if ax.get_visible() and ax.images) == 10
    assert few.axes[0].images[0].get_interpolation() == "nearest"


# --- feature maps ------------------------------------------------------------------------------


def test_normalise_maps_per_map():
    maps = torch.randn(6, 5, 5) * torch.arange(1, 7).view(6, 1, 1) + 3
    maps[2] = 4.0  # constant map
    out = filters.normalise_maps(maps)
    assert not torch.isnan(out).any()
    for i in (0, 1, 3, 4, 5):
        assert out[i].min() == 0 and out[i].max() == 1
    assert torch.equal(out[2], torch.zeros(5, 5))


def test_feature_map_grid_is_a_figure():
    maps = {"first": torch.randn(100, 6, 6), "last": torch.randn(3, 2, 2)}
    fig = filters.feature_map_grid(maps)
    assert isinstance(fig, Figure)
    assert sum(1 for ax in fig.axes if ax.get_visible() and ax.images) == 64 + 3


def test_one_by_one_maps_are_scaled_across_channels():
    # The last conv of custom_b ends at 1x1: per-map min-max would make every tile black.
    maps = {"last": torch.tensor([0.0, 1.0, 3.0, 4.0]).view(4, 1, 1)}
    fig = filters.feature_map_grid(maps)
    values = [float(ax.images[0].get_array()[0, 0]) for ax in fig.axes if ax.get_visible() and ax.images]
    assert values == [0.0, 0.25, 0.75, 1.0]
    assert "scaled across maps" in fig.subfigs[0]._suptitle.get_text()



# --- Grad-CAM overlays -------------------------------------------------------------------------


def test_cam_overlay_and_figures():
    image = torch.rand(3, 16, 16)
    cam = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)  # coarser than the image
    overlay = filters.cam_overlay(image, cam)
    assert overlay.shape == (16, 16, 3) and overlay.min() >= 0 and overlay.max() <= 1
    overlay_u8 = filters.cam_overlay((image * 255).to(torch.uint8), cam, alpha=0.0)
    np.testing.assert_allclose(overlay_u8, image.permute(1, 2, 0).numpy(), atol=1 / 255)
    images = torch.rand(3, 3, 16, 16)
    assert isinstance(filters.cam_figure(images, [cam] * 3, ["a", "b", "c"]), Figure)
    panels = {"tiny": [overlay] * 3, "other": [overlay] * 3}
    titles = {"tiny": ["c0", "c1", "c2"], "other": ["c3", "c4", "c0"]}
    fig = filters.side_by_side(panels, titles, col_titles=["x", "y", "z"])
    assert isinstance(fig, Figure)
