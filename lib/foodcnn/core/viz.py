"""Figures: first-layer filters, feature maps, curves, confusion, galleries and Grad-CAM overlays, each from data.

What the figures show is computed elsewhere: probing.py looks inside a model (hooks, Grad-CAM), metrics.py sums
up test predictions. Every function here takes tensors, arrays or tables and returns a matplotlib Figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

# One look for every figure: train is blue, validation orange, heatmaps use one colormap.
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
BEST_COLOR = "#2ca02c"
HEATMAP_CMAP = "Blues"
FEATURE_CMAP = "gray"
CAM_CMAP = "jet"
MAX_TILES = 64


def _figure(width: float, height: float) -> Figure:
    # Made by pyplot so a notebook's inline backend is active and shows the returned figure,
    # then closed at once: pyplot keeps no reference (no double display, nothing piles up),
    # while the figure itself stays fully usable (display, savefig).
    fig = plt.figure(figsize=(width, height), layout="constrained", dpi=100)
    plt.close(fig)
    return fig


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _to_hwc01(image: Tensor | np.ndarray) -> np.ndarray:
    """Return a (H, W, 3) float array in [0, 1] from a (3, H, W) tensor or (H, W, 3) array, float or uint8."""
    channels_last = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] in (1, 3)
    x = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image).detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.ndim == 3 and not channels_last:
        x = x.permute(1, 2, 0)
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    return x.clamp(0, 1).numpy()

# --- first-layer filters (SPEC §5) -------------------------------------------------------------

def filter_tiles(weight: Tensor) -> Tensor:
    """Return up to 64 filters of a (out, in, kh, kw) conv weight as (n, kh, kw, 3) RGB tiles in [0, 1]."""
    w = weight.detach().float().cpu()[:MAX_TILES]
    if w.shape[1] != 3:  # not an RGB input: show the mean over input channels as grey
        w = w.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    tiles = w.permute(0, 2, 3, 1)  # (n, kh, kw, 3)
    # SPEC §5: each filter shifted to be non-negative, then divided by its own max.
    flat = tiles.reshape(len(tiles), -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    peak = flat.max(dim=1, keepdim=True).values
    flat = torch.where(peak > 0, flat / peak.clamp_min(1e-12), torch.zeros_like(flat))
    return flat.reshape(tiles.shape).contiguous()


def filter_grid(weight: Tensor, title: str | None = None) -> Figure:
    """Return a figure of up to 64 first-conv filters as RGB tiles on an 8x8 grid."""
    tiles = filter_tiles(weight).numpy()
    n = len(tiles)
    ncols = min(8, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(0.8 * ncols + 0.4, 0.8 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _blank(ax)
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
    fig = _figure(panel * ncols, (panel + 0.45) * nrows + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    items = list(weights.items())
    for i, ax in enumerate(axes.flat):
        _blank(ax)
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
    """Return the (C, H, W) maps each min-max normalised to [0, 1] (constant maps become 0)."""
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
    fig = _figure(4.2 * sum(ratios), 4.6 + (0.3 if title else 0))
    subfigs = list(np.atleast_1d(fig.subfigures(1, panels, wspace=0.03, width_ratios=ratios)))
    if image is not None:
        first = subfigs.pop(0)
        ax = first.subplots()
        _blank(ax)
        ax.imshow(_to_hwc01(image))
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
            _blank(ax)
            if i < len(shown):
                ax.imshow(shown[i], cmap=FEATURE_CMAP, vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.set_visible(False)
        scaling = ", scaled across maps" if across else ""
        subfig.suptitle(f"{label}\n{len(shown)} of {c} maps, {h}x{w}{scaling}", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


# --- training curves (SPEC §3, §5) -------------------------------------------------------------


def _best_row(metrics: pd.DataFrame) -> pd.Series | None:
    val = pd.to_numeric(metrics["val_loss"], errors="coerce")
    return None if val.isna().all() else metrics.loc[val.idxmin()]


def _plot_curves(ax_loss, ax_acc, metrics: pd.DataFrame, legend: bool = True) -> None:
    epoch = metrics["epoch"]
    ax_loss.plot(epoch, metrics["train_loss"], "-o", ms=3, color=TRAIN_COLOR, label="train")
    ax_loss.plot(epoch, metrics["val_loss"], "-o", ms=3, color=VAL_COLOR, label="validation")
    ax_acc.plot(epoch, 100 * metrics["train_acc"], "-o", ms=3, color=TRAIN_COLOR, label="train")
    ax_acc.plot(epoch, 100 * metrics["val_acc"], "-o", ms=3, color=VAL_COLOR, label="validation")
    best = _best_row(metrics)
    if best is not None:
        label = (
            f"best epoch {int(best['epoch'])}: "
            f"val loss {best['val_loss']:.3f}, acc {100 * best['val_acc']:.1f} %"
        )
        for ax in (ax_loss, ax_acc):
            ax.axvline(best["epoch"], color=BEST_COLOR, ls="--", lw=1, label=label)
        ax_loss.plot(best["epoch"], best["val_loss"], "*", ms=11, color=BEST_COLOR)
        ax_acc.plot(best["epoch"], 100 * best["val_acc"], "*", ms=11, color=BEST_COLOR)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if legend:
        ax_loss.legend(frameon=False)


def curves(metrics: pd.DataFrame, title: str = "") -> Figure:
    """Return a loss and an accuracy (%) panel of train/validation curves, best epoch marked."""
    fig = _figure(10, 3.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    _plot_curves(ax_loss, ax_acc, metrics)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return fig


def curves_grid(runs: dict[str, pd.DataFrame], ncols: int = 3, title: str = "") -> Figure:
    """Return small multiples (loss | accuracy per run) for many runs on shared axes."""
    n = len(runs)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _figure(5.2 * ncols, 2.5 * nrows + 0.6)
    subfigs = np.atleast_2d(fig.subfigures(nrows, ncols, wspace=0.02, hspace=0.02))
    losses = [pd.to_numeric(m[c], errors="coerce") for m in runs.values() for c in ("train_loss", "val_loss")]
    top = float(np.nanmax([s.max() for s in losses])) if losses else 1.0
    top = 1.05 * top if np.isfinite(top) and top > 0 else 1.0
    epochs = [m["epoch"].max() for m in runs.values() if len(m)]
    last_epoch = max(epochs) if epochs else 1
    for i, subfig in enumerate(subfigs.flat):
        if i >= n:
            subfig.set_visible(False)
            continue
        name, metrics = list(runs.items())[i]
        ax_loss, ax_acc = subfig.subplots(1, 2)
        _plot_curves(ax_loss, ax_acc, metrics, legend=False)
        ax_loss.set_ylim(0, top)
        ax_acc.set_ylim(0, 100)
        for ax in (ax_loss, ax_acc):
            ax.set_xlim(0.5 if metrics["epoch"].min() >= 1 else -0.5, last_epoch + 0.5)
            ax.tick_params(labelsize=8)
            ax.xaxis.label.set_size(8)
            ax.yaxis.label.set_size(8)
        ax_loss.set_ylabel("loss", fontsize=8)
        ax_acc.set_ylabel("acc. (%)", fontsize=8)
        best = _best_row(metrics)
        note = ""
        if best is not None:
            note = f"  (best val {100 * best['val_acc']:.1f} % @ {int(best['epoch'])})"
        subfig.suptitle(f"{name}{note}", fontsize=10)
    handles = [
        matplotlib.lines.Line2D([], [], color=TRAIN_COLOR, marker="o", ms=3, label="train"),
        matplotlib.lines.Line2D([], [], color=VAL_COLOR, marker="o", ms=3, label="validation"),
        matplotlib.lines.Line2D([], [], color=BEST_COLOR, ls="--", label="best epoch (min val loss)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


# --- confusion and per-class accuracy ----------------------------------------------------------

def confusion_figure(cm: np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix") -> Figure:
    """Return a heatmap of a row-normalised confusion matrix, cells annotated in percent."""
    n = len(class_names)
    size = max(5.0, 0.48 * n + 2.5)
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    percent = 100 * np.asarray(cm, dtype=float)
    # Annotate only cells of at least 1 %, so the diagonal and the real confusions stand out.
    labels = np.where(percent >= 0.5, np.char.mod("%.0f", percent), "") if n <= 30 else False
    names = [_pretty(c) for c in class_names]
    sns.heatmap(
        percent,
        ax=ax,
        cmap=HEATMAP_CMAP,
        vmin=0,
        vmax=100,
        square=True,
        annot=labels,
        fmt="",
        annot_kws={"fontsize": 7 if n > 12 else 9},
        linewidths=0.4,
        linecolor="white",
        xticklabels=names,
        yticklabels=names,
        cbar_kws={"label": "share of the true class (%)", "shrink": 0.7},
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    ax.set_title(f"{title} (rows sum to 100 %)")
    return fig

def per_class_figure(table: pd.DataFrame, title: str = "Per-class accuracy") -> Figure:
    """Return a horizontal bar chart of a per_class_accuracy table, best class on top."""
    rows = table.sort_values("accuracy")
    fig = _figure(6.5, 0.28 * len(rows) + 1.2)
    ax = fig.subplots()
    values = 100 * rows["accuracy"].to_numpy()
    colors = matplotlib.colormaps[HEATMAP_CMAP](0.35 + 0.6 * np.nan_to_num(values) / 100)
    ax.barh([_pretty(c) for c in rows["class"]], values, color=colors)
    mean = 100 * (rows["correct"].sum() / max(rows["n"].sum(), 1))
    ax.axvline(mean, color="0.3", ls="--", lw=1, label=f"overall {mean:.1f} %")
    for y, v in enumerate(values):
        ax.text(v + 1, y, f"{v:.0f}", va="center", fontsize=7)
    ax.set(xlim=(0, 105), xlabel="accuracy (%)", title=title)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(frameon=False, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig

# --- galleries ---------------------------------------------------------------------------------


def image_gallery(
    images: Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title: str = "",
    colors: Sequence[str] | None = None,
) -> Figure:
    """Return a grid of (N, 3, H, W) images (float in [0, 1] or uint8) with one title (and title colour) each."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = _figure(1.9 * ncols, 2.1 * nrows + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _blank(ax)
        if i >= n:
            ax.set_visible(False)
            continue
        ax.imshow(_to_hwc01(images[i]))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8, **({"color": colors[i]} if colors is not None else {}))
    if title:
        fig.suptitle(title)
    return fig


# --- Grad-CAM overlays --------------------------------------------------------------------------


def cam_overlay(image: Tensor, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Return a (H, W, 3) float image in [0, 1]: the image blended with the jet-coloured CAM."""
    rgb = _to_hwc01(image)
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
    fig = _figure(1.9 * ncols + 0.6, 3.9 * blocks + 0.4)
    axes = fig.subplots(2 * blocks, ncols, squeeze=False)
    for ax in axes.flat:
        _blank(ax)
    for i in range(blocks * ncols):
        block, col = divmod(i, ncols)
        top, bottom = axes[2 * block, col], axes[2 * block + 1, col]
        if i >= n:
            top.set_visible(False)
            bottom.set_visible(False)
            continue
        top.imshow(_to_hwc01(images[i]))
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

    ``titles`` holds each cell's caption (e.g. the predicted label, as cam_rows returns);
    ``col_titles`` goes above the first row (e.g. the true labels); ``colors`` colours captions
    (e.g. red for a wrong prediction).
    """
    rows = list(panels)
    ncols = max(len(v) for v in panels.values())
    fig = _figure(2.0 * ncols + 0.8, 2.25 * len(rows) + (0.5 if col_titles is not None else 0.2))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            _blank(ax)
            if c >= len(panels[row]):
                ax.set_visible(False)
                continue
            ax.imshow(_to_hwc01(panels[row][c]))
            caption = titles[row][c] if titles and row in titles else ""
            color = {"color": colors[row][c]} if colors and row in colors else {}
            ax.set_title(caption, fontsize=8, **color)
            if c == 0:
                ax.set_ylabel(row, fontsize=11, fontweight="bold")
    if col_titles is not None:
        # One line of text per column, above the first row: the shared ground truth.
        for c, text in enumerate(col_titles[:ncols]):
            axes[0, c].annotate(
                _pretty(text), (0.5, 1.0), xycoords="axes fraction", xytext=(0, 16),
                textcoords="offset points", ha="center", va="bottom", fontsize=9, fontweight="bold",
            )
    if title:
        fig.suptitle(title)
    return fig


# --- explorer and placeholders -----------------------------------------------------------------


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
    fig = _figure(14.0, 3.7 + (0.35 if title else 0))
    ax_img, ax_map, ax_cam, ax_prob = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.2, 1, 1.3]})
    for ax in (ax_img, ax_map, ax_cam):
        _blank(ax)
    ax_img.imshow(_to_hwc01(image))
    ax_img.set_title(f"input\ntrue: {_pretty(class_names[true_idx])}", fontsize=9)
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
    ax_prob.barh([_pretty(class_names[i]) for i in shown_idx], 100 * probs[shown_idx],
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


def message_figure(text: str, width: float = 6.0, height: float = 1.2) -> Figure:
    """Return a small figure that only says `text` (where there is nothing to plot yet)."""
    fig = _figure(width, height)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, color="0.3", wrap=True)
    return fig
