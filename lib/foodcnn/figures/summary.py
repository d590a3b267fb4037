"""The summary's figures of a Study: ours beside the published accuracies, the ablation forest plot, learning curves.

The tables they draw from are tables.py's and comparisons.py's; each figure function returns a matplotlib Figure and
has a `describe_` twin that says in words, from the same rows, what it shows (registry.py pairs them).
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


def published_rows(study: Study) -> pd.DataFrame:
    """Return the rows of reports A and B that have a published test accuracy (their table columns)."""
    rows = pd.concat([table(study, r) for r in ("A", "B")], ignore_index=True) if len(study.results) else pd.DataFrame()
    return rows.dropna(subset=["published test %"]).reset_index(drop=True) if len(rows) else rows


def published_figure(study: Study) -> Figure:
    """Return a dumbbell chart: our test accuracy beside the published one, for every row that has both."""
    rows = published_rows(study)
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


def forest_rows(study: Study) -> pd.DataFrame:
    """Return the ablation comparisons that have an interval (comparisons.ablation_table's rows and columns)."""
    t = comparisons.ablation_table(study.results, study.predictions) if len(study.results) else pd.DataFrame()
    return t.dropna(subset=["ci_low_pp"]).reset_index(drop=True) if len(t) else t


def ablation_figure(study: Study) -> Figure:
    """Return a forest plot: each row's test-accuracy change against its parent with its 95 % interval."""
    t = forest_rows(study)
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


def curve_groups(study: Study, per_figure: int = 12) -> list[dict[str, pd.DataFrame]]:
    """Return every run's metrics (seed 0 of each row, labelled by id) in catalogue order, a dozen per figure."""
    items = [(f"{rid} (seed {seed})" if len({s for (i, s) in study.metrics if i == rid}) > 1 else rid, m)
             for (rid, seed), m in study.metrics.items() if len(m)]
    order = {rid: i for i, rid in enumerate(study.results["id"])} if len(study.results) else {}
    items.sort(key=lambda kv: order.get(kv[0].split(" ")[0], 1e9))
    return [dict(items[i:i + per_figure]) for i in range(0, len(items), per_figure)]


def curves_grid_figure(runs: dict[str, pd.DataFrame]) -> Figure:
    """Return small-multiple learning curves (loss | accuracy) of a group of runs, four runs a row."""
    return plots.curves_grid(runs, ncols=4)


# --- the same figures in words ------------------------------------------------------------------


def describe_published(study: Study) -> str:
    """Return the alt text of published_figure: what it plots, the mean of each side and the largest gap."""
    rows = published_rows(study)
    both = rows.dropna(subset=["test %"]) if len(rows) else rows
    if not len(both):
        return "Test accuracy, ours beside the reports': no row has both a finished run and a published figure yet."
    gap = both["test %"] - both["published test %"]
    i = gap.abs().idxmax()
    text = (f"Test accuracy (%) of the {plots.count(len(rows), 'row')} with a published figure, ours beside the "
            f"reports' on a 0 to 100 axis: ours {both['test %'].mean():.1f} % on average, the reports' "
            f"{both['published test %'].mean():.1f} %; largest gap {both.at[i, 'id']}, {gap[i]:+.1f} pp "
            f"({both.at[i, 'test %']:.1f} % against {both.at[i, 'published test %']:.1f} %).")
    if study.classes:
        text += f" Chance is {100 / len(study.classes):.0f} %."
    if study.synthetic:
        text += " Ours ran on synthetic data: the gaps say nothing about the reports."
    return text


def describe_ablation(study: Study) -> str:
    """Return the alt text of ablation_figure: how many changes, the largest gain and loss, the verdicts."""
    t = forest_rows(study)
    if not len(t):
        return "Forest plot of each change against its parent row: no row has both itself and its parent finished."

    def one(r: pd.Series) -> str:
        return f"{r['id']} against {r['parent']} {r['delta_pp']:+.1f} pp [{r['ci_low_pp']:+.1f}, {r['ci_high_pp']:+.1f}]"

    up, down = t.loc[t["delta_pp"].idxmax()], t.loc[t["delta_pp"].idxmin()]
    text = (f"Forest plot of the test-accuracy change of {plots.count(len(t), 'row')} against its parent row, in "
            f"percentage points with 95 % intervals: largest gain {one(up)}, largest loss {one(down)}.")
    if (t["data"] == comparisons.SYNTHETIC).all():
        return text + " Every comparison has a synthetic side: pipeline checks, no verdicts."
    counts = t["verdict"].value_counts()
    return text + (f" {counts.get('better', 0)} better, {counts.get('worse', 0)} worse, "
                   f"{len(t) - counts.get('better', 0) - counts.get('worse', 0)} without a detectable difference "
                   f"or a verdict.")


def describe_curves_grid(runs: dict[str, pd.DataFrame]) -> str:
    """Return the alt text of curves_grid_figure: which runs, and the best and worst best-epoch validation accuracy."""
    if not runs:
        return "Learning curves: no run has recorded an epoch yet."
    best = {name: b for name, m in runs.items() if (b := plots.best_epoch(m)) is not None}
    names = list(runs)
    text = (f"Learning curves of {plots.count(len(runs), 'run')} ({names[0]} to {names[-1]}): train and validation "
            f"loss and accuracy (%) against epoch, one pair of panels per run, the best epoch (lowest validation loss) "
            f"marked")
    if not best:
        return text + "."
    hi = max(best, key=lambda n: best[n]["val_acc"])
    lo = min(best, key=lambda n: best[n]["val_acc"])

    def at(n: str) -> str:
        return f"{100 * best[n]['val_acc']:.1f} % ({n}, epoch {int(best[n]['epoch'])})"

    return text + f"; validation accuracy at the best epoch from {at(lo)} to {at(hi)}."
