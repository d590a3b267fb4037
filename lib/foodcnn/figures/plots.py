"""Figures of a run's outcome (curves, confusion, per-class accuracy, galleries) and the look every figure shares.

The look (colours, a figure that a notebook shows once, blank image axes, images as (H, W, 3) in [0, 1], class
names for reading) is used by viz_inside.py too, which draws what is inside a network. What the figures show is
computed elsewhere: probing.py looks inside a model (hooks, Grad-CAM), metrics.py sums up test predictions. Every
figure function takes tensors, arrays or tables and returns a matplotlib Figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..data.synth import CLASS_PREFIX

# One look for every figure: train is blue, validation orange, heatmaps use one colormap.
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
BEST_COLOR = "#2ca02c"
HEATMAP_CMAP = "Blues"
FEATURE_CMAP = "gray"
CAM_CMAP = "jet"


def new_figure(width: float, height: float) -> Figure:
    """Return an empty constrained-layout figure of this size (inches) that pyplot does not hold on to."""
    # Made by pyplot so a notebook's inline backend is active and shows the returned figure,
    # then closed at once: pyplot keeps no reference (no double display, nothing piles up),
    # while the figure itself stays fully usable (display, savefig).
    fig = plt.figure(figsize=(width, height), layout="constrained", dpi=100)
    plt.close(fig)
    return fig


def pretty_class(name: str) -> str:
    """Return a class name for reading: the synthetic dataset's prefix dropped, underscores as spaces."""
    return name.removeprefix(CLASS_PREFIX).replace("_", " ")


def count(n: int, noun: str) -> str:
    """Return "1 run" or "3 runs": a count and its noun, for titles and alt text."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def blank(ax) -> None:
    """Remove an image axis's ticks and frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def to_hwc01(image: Tensor | np.ndarray) -> np.ndarray:
    """Return a (H, W, 3) float array in [0, 1] from a (3, H, W) tensor or (H, W, 3) array, float or uint8."""
    channels_last = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] in (1, 3)
    x = torch.as_tensor(np.asarray(image) if isinstance(image, np.ndarray) else image).detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.ndim == 3 and not channels_last:
        x = x.permute(1, 2, 0)
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    return x.clamp(0, 1).numpy()


def message_figure(text: str, width: float = 6.0, height: float = 1.2) -> Figure:
    """Return a small figure that only says `text` (where there is nothing to plot yet)."""
    fig = new_figure(width, height)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, color="0.3", wrap=True)
    return fig


# --- training curves (SPEC §3, §5) -------------------------------------------------------------


def best_epoch(metrics: pd.DataFrame) -> pd.Series | None:
    """Return the metrics row of the epoch with the lowest validation loss (the tested weights), None if none."""
    val = pd.to_numeric(metrics["val_loss"], errors="coerce")
    return None if val.isna().all() else metrics.loc[val.idxmin()]


def _plot_curves(ax_loss, ax_acc, metrics: pd.DataFrame, legend: bool = True) -> None:
    epoch = metrics["epoch"]
    ax_loss.plot(epoch, metrics["train_loss"], "-o", ms=3, color=TRAIN_COLOR, label="train")
    ax_loss.plot(epoch, metrics["val_loss"], "-o", ms=3, color=VAL_COLOR, label="validation")
    ax_acc.plot(epoch, 100 * metrics["train_acc"], "-o", ms=3, color=TRAIN_COLOR, label="train")
    ax_acc.plot(epoch, 100 * metrics["val_acc"], "-o", ms=3, color=VAL_COLOR, label="validation")
    best = best_epoch(metrics)
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
    fig = new_figure(10, 3.8)
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
    fig = new_figure(5.2 * ncols, 2.5 * nrows + 0.6)
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
        best = best_epoch(metrics)
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
    import seaborn as sns  # here, not at the top: every training notebook imports viz, few draw a heatmap

    n = len(class_names)
    size = max(5.0, 0.48 * n + 2.5)
    fig = new_figure(size + 1.0, size)
    ax = fig.subplots()
    percent = 100 * np.asarray(cm, dtype=float)
    # Annotate only cells of at least 1 %, so the diagonal and the real confusions stand out.
    labels = np.where(percent >= 0.5, np.char.mod("%.0f", percent), "") if n <= 30 else False
    names = [pretty_class(c) for c in class_names]
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
    fig = new_figure(6.5, 0.28 * len(rows) + 1.2)
    ax = fig.subplots()
    values = 100 * rows["accuracy"].to_numpy()
    colors = matplotlib.colormaps[HEATMAP_CMAP](0.35 + 0.6 * np.nan_to_num(values) / 100)
    ax.barh([pretty_class(c) for c in rows["class"]], values, color=colors)
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
    fig = new_figure(1.9 * ncols, 2.1 * nrows + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        blank(ax)
        if i >= n:
            ax.set_visible(False)
            continue
        ax.imshow(to_hwc01(images[i]))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8, **({"color": colors[i]} if colors is not None else {}))
    if title:
        fig.suptitle(title)
    return fig
