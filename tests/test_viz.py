"""Tests for foodcnn.figures.plots: class names for reading, curves, confusion and per-class figures, galleries."""

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from foodcnn.data import synth
from foodcnn.figures import plots


def test_pretty_class_drops_the_synthetic_prefix():
    assert plots.pretty_class("synthetic_apple_pie") == "apple pie"
    assert plots.pretty_class(synth.class_names(1)[0]) == "apple pie"
    assert plots.pretty_class("hot_dog") == "hot dog"


# --- curves, confusion ------------------------------------------------------------------------


def test_confusion_and_per_class_figures():
    cm = np.eye(4)[[0, 1, 2, 0]]
    assert isinstance(plots.confusion_figure(cm, ["a", "b", "c", "d"]), Figure)
    big = np.full((20, 20), 1 / 20)
    assert isinstance(plots.confusion_figure(big, [f"class_{i}" for i in range(20)]), Figure)
    table = pd.DataFrame({"class": ["a", "b"], "n": [4, 5], "correct": [1, 5], "accuracy": [0.25, 1.0]})
    assert isinstance(plots.per_class_figure(table), Figure)


def metrics_frame(epochs: int = 6, best: int = 4) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    val_loss = 2.0 - 0.1 * e
    val_loss[best:] += 0.3  # epoch `best` has the minimum
    return pd.DataFrame({
        "epoch": e, "train_loss": 2.2 - 0.2 * e, "val_loss": val_loss,
        "train_acc": 0.1 * e, "val_acc": 0.08 * e,
    })


def test_curves_marks_best_epoch():
    fig = plots.curves(metrics_frame(best=4), title="run")
    assert isinstance(fig, Figure)
    ax_loss = fig.axes[0]
    vlines = [line for line in ax_loss.lines if line.get_linestyle() == "--"]
    assert vlines and vlines[0].get_xdata()[0] == 4
    assert isinstance(plots.curves_grid({f"run{i}": metrics_frame() for i in range(5)}), Figure)


# --- galleries ---------------------------------------------------------------------------------


def test_gallery():
    images = torch.rand(5, 3, 16, 16)
    assert isinstance(plots.image_gallery(images, [str(i) for i in range(5)], ncols=3), Figure)
    as_uint8 = (images * 255).to(torch.uint8)
    assert isinstance(plots.image_gallery(as_uint8, None), Figure)
