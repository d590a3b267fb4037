"""Figures of what is inside a network: first-layer filters, feature maps, Grad-CAM overlays and the explorer's row.

probing.py computes what these show (hooks, Grad-CAM); viz.py holds the look they share. Each function takes
tensors or arrays and returns a matplotlib Figure (or, for mosaics and overlays, an image array).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from .plots import BEST_COLOR, CAM_CMAP, FEATURE_CMAP, blank, message_figure, new_figure, pretty_class, to_hwc01

MAX_TILES = 64  # filters shown per layer: an 8x8 grid


# --- first-layer filters (SPEC §5) -------------------------------------------------------------


def filter_tiles(weight: Tensor) -> Tensor:
    """Return up to 64 filters of a (out, in, kh, kw) conv weight as (n, kh, kw, 3) RGB tiles in [0, 1]."""
    w = weight.detach().float().cpu()[:MAX_TILES]
    if w.shape[1] != 3:  # not an RGB input: show the mean over input channels as grey
        w = w.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    # SPEC §5: each filter shifted to be non-negative, then divided by its own max: its min-max scaling.
    return normalise_maps(w).permute(0, 2, 3, 1).contiguous()  # (n, kh, kw, 3)


def filter_grid(weight: Tensor, title: str | None = None) -> Figure:
    """Return a figure of up to 64 first-conv filters as RGB tiles on an 8x8 grid."""
    tiles = filter_tiles(weight).numpy()
    n = len(tiles)
    ncols = min(8, n)
    nrows = math.ceil(n / ncols)
    fig = new_figure(0.8 * ncols + 0.4, 0.8 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        blank(ax)
        if i < n:
            ax.imshow(tiles[i], interpolation="nearest")
        else:
            ax.set_visible(False)
    out, inp, kh, kw = weight.shape
    fig.suptitle(title or f"First conv filters: {n} of {out}, {kh}x{kw}, {inp} input channels")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.04, hspace=0.04)
    return fig


def filter_mosaic(weight: Tensor, ncols: int = 8, gap: int = 1) -> np.ndarray:
    """Return up to 64 first-conv filters (SPEC §5 scaling) tiled into one (H, W, 3) image, white between tiles."""
    tiles = filter_tiles(weight).numpy()
    n, kh, kw, _ = tiles.shape
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    out = np.ones((nrows * (kh + gap) - gap, ncols * (kw + gap) - gap, 3), dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        out[r * (kh + gap): r * (kh + gap) + kh, c * (kw + gap): c * (kw + gap) + kw] = tile
    return out


def filters_overview(weights: dict[str, Tensor], ncols: int = 6, panel: float = 1.9, title: str = "") -> Figure:
    """Return small multiples: one mosaic of first-conv filters per model (dict key), each with its shape."""
    n = len(weights)
    if n == 0:
        return message_figure("no trained models to show")
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = new_figure(panel * ncols, (panel + 0.45) * nrows + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    items = list(weights.items())
    for i, ax in enumerate(axes.flat):
        blank(ax)
        if i >= n:
            ax.set_visible(False)
            continue
        name, w = items[i]
        ax.imshow(filter_mosaic(w), interpolation="nearest")
        ax.set_anchor("N")  # a model with fewer filters (a shorter mosaic) still hangs from its title
        out, _, kh, kw = w.shape
        ax.set_title(f"{name}\n{min(out, MAX_TILES)} of {out}, {kh}x{kw}", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# --- feature maps (SPEC §5) --------------------------------------------------------------------


def normalise_maps(maps: Tensor) -> Tensor:
    """Return the maps (C, ...) each (one per first index) min-max normalised to [0, 1] (constant maps become 0)."""
    x = maps.detach().float()
    flat = x.reshape(len(x), -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    flat = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return flat.reshape(x.shape)


def feature_map_grid(
    maps: dict[str, Tensor],
    max_maps: int = 64,
    title: str | None = None,
    image: Tensor | np.ndarray | None = None,
    image_title: str = "input image",
) -> Figure:
    """Return a figure with one panel per layer, each showing up to max_maps normalised maps.

    ``image`` (the input, (3, H, W) or (H, W, 3), float in [0, 1] or uint8) adds a first panel so a
    reader sees what the maps are maps of.
    """
    panels = len(maps) + (image is not None)
    side = max(math.ceil(math.sqrt(min(max_maps, max(len(m) for m in maps.values())))), 1)
    ratios = ([0.7] if image is not None else []) + [1.0] * len(maps)
    fig = new_figure(4.2 * sum(ratios), 4.6 + (0.3 if title else 0))
    subfigs = list(np.atleast_1d(fig.subfigures(1, panels, wspace=0.03, width_ratios=ratios)))
    if image is not None:
        first = subfigs.pop(0)
        ax = first.subplots()
        blank(ax)
        ax.imshow(to_hwc01(image))
        ax.set_box_aspect(1)
        first.suptitle(image_title, fontsize=10)
    for subfig, (label, layer_maps) in zip(subfigs, maps.items()):
        c, h, w = layer_maps.shape
        # A 1x1 map has no min and max of its own (SPEC §5's per-map scaling would paint every tile black):
        # those are scaled together, so the tiles compare the channels' responses.
        across = h * w == 1
        shown = normalise_maps(layer_maps[:max_maps].reshape(1, -1, 1) if across else layer_maps[:max_maps])
        shown = shown.reshape(-1, h, w).cpu().numpy()
        axes = subfig.subplots(side, side, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.05})
        for i, ax in enumerate(axes.flat):
            blank(ax)
            if i < len(shown):
                ax.imshow(shown[i], cmap=FEATURE_CMAP, vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.set_visible(False)
        scaling = ", scaled across maps" if across else ""
        subfig.suptitle(f"{label}\n{len(shown)} of {c} maps, {h}x{w}{scaling}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


# --- Grad-CAM overlays --------------------------------------------------------------------------


def cam_overlay(image: Tensor, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Return a (H, W, 3) float image in [0, 1]: the image blended with the jet-coloured CAM."""
    rgb = to_hwc01(image)
    heat = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    if heat.shape != rgb.shape[:2]:
        heat = F.interpolate(heat[None, None], size=rgb.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    colours = matplotlib.colormaps[CAM_CMAP](heat.clamp(0, 1).numpy())[..., :3]
    return ((1 - alpha) * rgb + alpha * colours).clip(0, 1)


def cam_figure(
    images: Tensor,
    cams: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    colors: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
    """Return a figure of images (top row) above their Grad-CAM overlays (bottom row), wrapped at ncols."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    blocks = math.ceil(n / ncols)
    fig = new_figure(1.9 * ncols + 0.6, 3.9 * blocks + 0.4)
    axes = fig.subplots(2 * blocks, ncols, squeeze=False)
    for ax in axes.flat:
        blank(ax)
    for i in range(blocks * ncols):
        block, col = divmod(i, ncols)
        top, bottom = axes[2 * block, col], axes[2 * block + 1, col]
        if i >= n:
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        top.imshow(to_hwc01(images[i]))
        bottom.imshow(cam_overlay(images[i], cams[i]))
        if titles is not None:
            top.set_title(titles[i], fontsize=8, **({"color": colors[i]} if colors is not None else {}))
        if col == 0:
            top.set_ylabel("image", fontsize=9)
            bottom.set_ylabel("Grad-CAM", fontsize=9)
    fig.colorbar(
        matplotlib.cm.ScalarMappable(cmap=CAM_CMAP, norm=matplotlib.colors.Normalize(0, 1)),
        ax=axes[:, -1].tolist(),
        shrink=0.6,
        label="class evidence",
    )
    if title:
        fig.suptitle(title)
    return fig


def side_by_side(
    panels: dict[str, list[np.ndarray]],
    titles: dict[str, list[str]] | None = None,
    col_titles: Sequence[str] | None = None,
    title: str = "",
    colors: dict[str, list[str]] | None = None,
) -> Figure:
    """Return a grid with one row per model (dict key) and one column per image, each cell titled.

    ``titles`` holds each cell's caption (e.g. the prediction);
    ``col_titles`` goes above the first row (e.g. the true labels); ``colors`` colours captions
    (e.g. red for a wrong prediction).
    """
    rows = list(panels)
    ncols = max(len(v) for v in panels.values())
    fig = new_figure(2.0 * ncols + 0.8, 2.25 * len(rows) + (0.5 if col_titles is not None else 0.2))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            blank(ax)
            if c >= len(panels[row]):
                ax.set_visible(False)
                continue
            ax.imshow(to_hwc01(panels[row][c]))
            caption = titles[row][c] if titles and row in titles else ""
            color = {"color": colors[row][c]} if colors and row in colors else {}
            ax.set_title(caption, fontsize=8, **color)
            if c == 0:
                ax.set_ylabel(row, fontsize=11, fontweight="bold")
    if col_titles is not None:
        # One line of text per column, above the first row: the shared ground truth.
        for c, text in enumerate(col_titles[:ncols]):
            axes[0, c].annotate(
                pretty_class(text), (0.5, 1.0), xycoords="axes fraction", xytext=(0, 16),
                textcoords="offset points", ha="center", va="bottom", fontsize=9, fontweight="bold",
            )
    if title:
        fig.suptitle(title)
    return fig


# --- the explorer's row ----------------------------------------------------------------------


def explorer_figure(
    image: Tensor | np.ndarray,
    feature_map: Tensor | np.ndarray,
    cam: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    true_idx: int,
    map_title: str = "feature map",
    cam_title: str = "Grad-CAM",
    title: str = "",
    top: int = 5,
) -> Figure:
    """Return one row: the input, one feature map (raw values), a Grad-CAM overlay and the top predictions."""
    fig = new_figure(14.0, 3.7 + (0.35 if title else 0))
    ax_img, ax_map, ax_cam, ax_prob = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.2, 1, 1.3]})
    for ax in (ax_img, ax_map, ax_cam):
        blank(ax)
    ax_img.imshow(to_hwc01(image))
    ax_img.set_title(f"input\ntrue: {pretty_class(class_names[true_idx])}", fontsize=9)
    fmap = np.asarray(feature_map.detach().cpu() if isinstance(feature_map, Tensor) else feature_map, dtype=float)
    shown = ax_map.imshow(fmap, cmap=FEATURE_CMAP, interpolation="nearest")
    fig.colorbar(shown, ax=ax_map, shrink=0.8)
    ax_map.set_title(map_title, fontsize=9)
    ax_cam.imshow(cam_overlay(image, cam))
    ax_cam.set_title(cam_title, fontsize=9)
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="stable")
    rank = int(np.where(order == true_idx)[0][0]) + 1
    shown_idx = order[:top][::-1]
    ax_prob.barh([pretty_class(class_names[i]) for i in shown_idx], 100 * probs[shown_idx],
                 color=[BEST_COLOR if i == true_idx else "0.65" for i in shown_idx])
    for y, i in enumerate(shown_idx):
        ax_prob.text(100 * probs[i] + 1, y, f"{100 * probs[i]:.0f}", va="center", fontsize=8)
    note = "true class in green" if rank <= top else f"true class ranked {rank}"
    ax_prob.set(xlim=(0, 110), xlabel="probability (%)", title=f"top {min(top, len(probs))} predictions ({note})")
    ax_prob.title.set_fontsize(9)
    ax_prob.tick_params(axis="y", labelsize=8)
    ax_prob.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
