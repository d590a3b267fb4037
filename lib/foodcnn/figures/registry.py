"""The report's figures in one place: each name's drawing function and the words that say what it shows.

A figure of the report is two functions in one module of figures/, called with the same arguments: one draws it
(returns a matplotlib Figure), its `describe_` twin returns its alt text, written from the same data: what is
plotted against what, and the numbers a reader looks for. Add the pair to FIGURES and call `show(name, ...)` in the
notebook. `show` returns the figure with its words: a notebook displays it as a PNG whose output metadata carries
them (IPython's convention, as `IPython.display.Image(alt=...)`), and rendering.py makes them the `<img>`'s alt
text and the caption of the HTML report and the PDF.
"""

from __future__ import annotations

import base64
import difflib
from dataclasses import dataclass
from typing import Any, Callable

from matplotlib.figure import Figure

from . import insight, summary


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the report: draw(*args) -> Figure and describe(*args) -> its alt text."""

    draw: Callable[..., Figure]
    describe: Callable[..., str]


FIGURES: dict[str, ReportFigure] = {
    # the summary (summary.ipynb), in its order
    "published": ReportFigure(summary.published_figure, summary.describe_published),
    "curves_grid": ReportFigure(summary.curves_grid_figure, summary.describe_curves_grid),
    "filters_overview": ReportFigure(insight.filters_overview, insight.describe_filters_overview),
    "feature_maps": ReportFigure(insight.feature_maps_figure, insight.describe_feature_maps),
    "side_by_side": ReportFigure(insight.side_by_side, insight.describe_side_by_side),
    "ablation": ReportFigure(summary.ablation_figure, summary.describe_ablation),
    # one run's page (visualise.ipynb)
    "curves": ReportFigure(insight.curves_figure, insight.describe_curves),
    "filters": ReportFigure(insight.filters_figure, insight.describe_filters),
    "confusion": ReportFigure(insight.confusion_figure, insight.describe_confusion),
    "per_class": ReportFigure(insight.per_class_figure, insight.describe_per_class),
    "hardest": ReportFigure(insight.hardest_gallery, insight.describe_hardest),
    "cam": ReportFigure(insight.cam_gallery, insight.describe_cam),
}


@dataclass
class Described:
    """A drawn figure and its alt text; in a notebook, a PNG output that carries the text."""

    figure: Figure
    alt: str

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        # The PNG the inline backend would make of the figure (tight bounding box), plus the words: as the
        # image's "alt" metadata, and as the plain-text form a text-only reader of the notebook gets.
        from IPython.core.pylabtools import print_figure

        png = print_figure(self.figure, "png", bbox_inches="tight")
        if png is None:  # a figure without axes draws nothing
            return {"text/plain": self.alt}, {}
        return ({"image/png": base64.b64encode(png).decode("ascii"), "text/plain": self.alt},
                {"image/png": {"alt": self.alt}})


def show(name: str, *args: Any, **kwargs: Any) -> Described:
    """Return the report figure `name` drawn from these arguments, with its alt text from the same arguments."""
    if name not in FIGURES:
        close = difflib.get_close_matches(name, FIGURES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no report figure {name!r}.{hint} Figures: {', '.join(FIGURES)}")
    entry = FIGURES[name]
    return Described(entry.draw(*args, **kwargs), entry.describe(*args, **kwargs))
