"""The summary's figures of a Study: ours beside the published accuracies, the ablation forest plot, learning curves.

The tables they draw from are report.py's and stats.py's; each function returns a matplotlib Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..stats import comparisons
from . import plots
from ..results.tables import Study, table


def _canvas(n_rows: int, inches_per_row: float, margin: float, empty: str) -> tuple[Figure, Axes | None]:
    """Return a figure tall enough for n_rows rows and its axes; with no rows, the figure says `empty` and no axes."""
    fig = plt.figure(figsize=(8, max(2.5, inches_per_row * n_rows + margin)))
    plt.close(fig)  # the caller returns it: a notebook shows it once, as the cell's value, not again as a pyplot figure
    ax = fig.add_subplot(111)
    if n_rows:
        return fig, ax
    ax.text(0.5, 0.5, empty, ha="center", va="center")
    ax.axis("off")
    return fig, None


def published_figure(study: Study) -> Figure:
    """Return a dumbbell chart: our test accuracy beside the published one, for every row that has both."""
    rows = pd.concat([table(study, r) for r in ("A", "B")], ignore_index=True) if len(study.results) else pd.DataFrame()
    rows = rows.dropna(subset=["published test %"]) if len(rows) else rows
    fig, ax = _canvas(len(rows), 0.28, 1, "no runs with published figures yet")
    if ax is None:
        return fig
    y = np.arange(len(rows))[::-1]
    ax.hlines(y, rows["test %"], rows["published test %"], color="#bbb", lw=2)
    ax.scatter(rows["published test %"], y, color="#555", label="published", zorder=3)
    ax.scatter(rows["test %"], y, color="#d55e00", label="foodcnn (this run)", zorder=3)
    if study.classes:
        ax.axvline(100 / len(study.classes), color="#999", ls=":", lw=1, label="chance")
    ax.set_yticks(y, rows["id"])
    ax.set_xlabel("test accuracy (%)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Test accuracy: ours vs the reports" + (" (ours on synthetic data: not comparable)"
                                                           if study.synthetic else ""))
    fig.tight_layout()
    return fig


def ablation_figure(study: Study) -> Figure:
    """Return a forest plot: each row's test-accuracy change against its parent with its 95 % interval."""
    t = comparisons.ablation_table(study.results, study.predictions) if len(study.results) else pd.DataFrame()
    t = t.dropna(subset=["ci_low_pp"]) if len(t) else t
    fig, ax = _canvas(len(t), 0.3, 1.2, "no row has both itself and its parent finished")
    if ax is None:
        return fig
    y = np.arange(len(t))[::-1]
    colours = t["verdict"].map({"better": "#009e73", "worse": "#d55e00"}).fillna("#777777")
    ax.errorbar(t["delta_pp"], y, xerr=[t["delta_pp"] - t["ci_low_pp"], t["ci_high_pp"] - t["delta_pp"]],
                fmt="none", ecolor="#999", capsize=3)
    ax.scatter(t["delta_pp"], y, c=colours, zorder=3)
    ax.axvline(0, color="#333", lw=1)
    ax.set_yticks(y, [f"{c} vs {p}" for c, p in zip(t["id"], t["parent"])])
    ax.set_xlabel("test accuracy change against the parent row (percentage points, 95 % interval)")
    ax.set_title(forest_title(t["data"]))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def forest_title(kinds: pd.Series) -> str:
    """Return the forest plot's title: a pipeline check when every comparison has a synthetic side."""
    if len(kinds) and (kinds == comparisons.SYNTHETIC).all():
        return ("Pipeline check on synthetic data: no verdicts\n"
                "(test accuracy change against the parent, 95 % interval)")
    title = "Which changes are distinguishable from noise? (green better, red worse, grey cannot tell)"
    if (kinds != comparisons.REAL).any():
        title += "\ngrey also: rows on synthetic or unrecorded data, no verdict"
    return title


def curve_figures(study: Study, per_figure: int = 12) -> list[Figure]:
    """Return small-multiple learning-curve figures of every run (seed 0 of each row), a dozen per figure."""
    items = [(f"{rid} (seed {seed})" if len({s for (i, s) in study.metrics if i == rid}) > 1 else rid, m)
             for (rid, seed), m in study.metrics.items() if len(m)]
    order = {rid: i for i, rid in enumerate(study.results["id"])} if len(study.results) else {}
    items.sort(key=lambda kv: order.get(kv[0].split(" ")[0], 1e9))
    return [plots.curves_grid(dict(items[i:i + per_figure]), ncols=4) for i in range(0, len(items), per_figure)]
