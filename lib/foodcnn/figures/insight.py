"""Pictures and tables of what trained networks learned and where they look: one run, several runs, a study's picks.

Runs are opened through runview.py; the figures themselves are drawn by viz.py and viz_inside.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import Tensor

from ..results import metrics, runs
from ..models import registry
from . import probing, plots as viz, filters as viz_inside
from ..results import tables
from . import runview

RIGHT, WRONG = "#1a7f37", "#c62828"  # caption colours: correct / wrong prediction
VISUALISE = "visualise.ipynb"


def spread(n: int, k: int) -> np.ndarray:
    """Return up to k indices spread evenly over range(n) (the test set is sorted by class: one per class or so)."""
    if n <= 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _caption(run: runs.Run, names: list[str], i: int) -> tuple[str, str]:
    """Return test image i's caption, "✓ predicted class (probability %)" (✗ when wrong), and its colour."""
    pred = run.predictions
    true, guess = int(pred["y_true"][i]), int(pred["y_pred"][i])
    ok = true == guess
    prob = float(pred["prob"][i, guess])
    return f"{'✓' if ok else '✗'} {names[guess]} ({100 * prob:.0f} %)", RIGHT if ok else WRONG


# --- one run -----------------------------------------------------------------------------------


def curves_figure(run: runs.Run) -> Figure:
    """Return the run's loss and accuracy curves, best epoch marked."""
    return viz.curves(run.metrics, title=runview.run_label(run))


def filters_figure(run: runs.Run) -> Figure:
    """Return the run's first-layer filters as RGB tiles (SPEC §5), layer and shape in the title."""
    model = runview.load_model(run)
    name, conv = registry.conv_layers(model)[0]
    w = conv.weight
    out, _, kh, kw = w.shape
    return viz_inside.filter_grid(w, title=f"{runview.run_label(run)}\nfirst conv layer {name}: "
                                           f"{min(out, viz_inside.MAX_TILES)} of {out} filters, {kh}x{kw}")


def filters_overview(runs_: Sequence[runs.Run], ncols: int = 8, panel: float = 1.5, title: str = "") -> Figure:
    """Return one mosaic of first-layer filters per run (small multiples), titled by run id."""
    weights = {}
    for run in runs_:
        name = run.params.id if run.params.seed == 0 else f"{run.params.id} s{run.params.seed}"
        weights[name] = runview.first_conv_weight(run)
    return viz_inside.filters_overview(weights, ncols=ncols, panel=panel, title=title)


def feature_maps_figure(run: runs.Run, image_index: int = 0, max_maps: int = 64) -> Figure:
    """Return the feature maps of the first, a middle and the last conv layer for one test image (SPEC §5)."""
    model = runview.load_model(run)
    images, labels = runview.test_images(run, [image_index])
    layers = probing.feature_layers(model)
    maps = probing.capture_feature_maps(model, runview.model_input(model, images)[0], layers)
    n = len(registry.conv_layers(model))
    names = runview.class_names(run)
    return viz_inside.feature_map_grid(
        maps, max_maps=max_maps, image=images[0], image_title=f"test image {image_index}\n{names[int(labels[0])]}",
        title=f"{runview.run_label(run)}: feature maps of the first, middle (number {n // 2 + 1}) and last of its "
              f"{n} conv layers, each map min-max normalised")


def confusion_figure(run: runs.Run) -> Figure:
    """Return the run's row-normalised test confusion matrix."""
    pred = run.predictions
    names = runview.class_names(run)
    cm = metrics.confusion(pred["y_true"], pred["y_pred"], len(names))
    return viz.confusion_figure(cm, names, title=f"{run.params.id}: test confusion, {len(pred['y_true'])} images")


def per_class(run: runs.Run) -> tuple[pd.DataFrame, Figure]:
    """Return the per-class test accuracy table (one row per class) and its bar chart."""
    pred = run.predictions
    table = metrics.per_class_accuracy(pred["y_true"], pred["y_pred"], runview.class_names(run))
    return table, viz.per_class_figure(table, title=f"{run.params.id}: per-class test accuracy")


def most_confused(run: runs.Run, k: int = 10) -> pd.DataFrame:
    """Return the k most frequent test mistakes: true, predicted, count and % of the true class."""
    pred = run.predictions
    top = metrics.most_confused(pred["y_true"], pred["y_pred"], runview.class_names(run), k=k)
    top["% of true class"] = (100 * top.pop("share")).round(1)
    return top


def hardest_gallery(run: runs.Run, k: int = 16) -> Figure:
    """Return the k highest-loss test images with their true and predicted classes."""
    pred = run.predictions
    idx = metrics.highest_loss(pred["loss"], k)
    images, labels = runview.test_images(run, idx)
    names = runview.class_names(run)
    titles, colors = [], []
    for i, true in zip(idx, labels.tolist()):
        caption, color = _caption(run, names, i)
        titles.append(f"true: {names[true]}\n{caption}\nloss {float(pred['loss'][i]):.2f}")
        colors.append(color)
    return viz.image_gallery(images, titles, ncols=8, colors=colors,
                             title=f"{run.params.id}: the {len(idx)} test images with the highest loss "
                                   f"(true class, then the prediction; ✗ = wrong)")


def _cams(run: runs.Run, indices: Sequence[int], layer: str | None = None) -> tuple[Tensor, list[np.ndarray]]:
    """Return (uint8 images, Grad-CAM maps at `layer` (default cam_layer) for the stored predicted class)."""
    model = runview.load_model(run)
    images, _ = runview.test_images(run, indices)
    x = runview.model_input(model, images)
    target = model.get_submodule(layer or runview.cam_layer(run))
    y_pred = run.predictions["y_pred"]
    cams = [probing.grad_cam(model, x[j], target, int(y_pred[i])) for j, i in enumerate(indices)]
    return images, cams


def _cam_layer_note(run: runs.Run) -> str:
    layer, (last, _) = runview.cam_layer(run), registry.conv_layers(runview.load_model(run))[-1]
    if layer == last:
        return f"the last conv layer ({last})"
    side = probing.MIN_CAM_SIDE
    return f"{layer} (the last conv layer with a map of at least {side}x{side})"


def cam_gallery(run: runs.Run, k: int = 8, indices: Sequence[int] | None = None) -> Figure:
    """Return Grad-CAM overlays (last conv layer, predicted class) of k test images spread over the classes."""
    pred = run.predictions
    idx = list(spread(len(pred["keys"]), k) if indices is None else indices)
    images, cams = _cams(run, idx)
    names = runview.class_names(run)
    titles, colors = [], []
    for i in idx:
        caption, color = _caption(run, names, i)
        titles.append(f"true: {names[int(pred['y_true'][i])]}\n{caption}")
        colors.append(color)
    return viz_inside.cam_figure(images, cams, titles, ncols=8, colors=colors,
                                 title=f"{run.params.id}: Grad-CAM at {_cam_layer_note(run)} for the predicted class")


# --- several runs ------------------------------------------------------------------------------


def side_by_side(runs_: Sequence[runs.Run], n_images: int = 6) -> Figure:
    """Return the same test images through several models: one row per run, Grad-CAM overlay and prediction per cell."""
    if not runs_:
        return viz.message_figure("no runs to compare")
    keys = [[str(k) for k in run.predictions["keys"]] for run in runs_]
    shared = set.intersection(*(set(k) for k in keys))
    common = [k for k in keys[0] if k in shared]
    if not common:
        raise ValueError("these runs share no test images (different classes or data); compare runs of one profile")
    chosen = [common[i] for i in spread(len(common), n_images)]
    panels: dict[str, list[np.ndarray]] = {}
    titles: dict[str, list[str]] = {}
    colors: dict[str, list[str]] = {}
    for run, run_keys in zip(runs_, keys):
        where = {k: i for i, k in enumerate(run_keys)}
        idx = [where[k] for k in chosen]
        images, cams = _cams(run, idx)
        names = runview.class_names(run)
        row = f"{run.params.id}\n{run.params.model}" + (f" s{run.params.seed}" if run.params.seed else "")
        panels[row], titles[row], colors[row] = [], [], []
        for image, cam, i in zip(images, cams, idx):
            caption, color = _caption(run, names, i)
            panels[row].append(viz_inside.cam_overlay(image, cam))
            titles[row].append(caption)
            colors[row].append(color)
    first = runs_[0]
    where = {k: i for i, k in enumerate(keys[0])}
    truth = [runview.class_names(first)[int(first.predictions["y_true"][where[k]])] for k in chosen]
    side = probing.MIN_CAM_SIDE
    return viz_inside.side_by_side(panels, titles, col_titles=truth, colors=colors,
                                   title=f"The same test images through each model: Grad-CAM for its prediction "
                                         f"(✗ = wrong) at its last conv layer with a map of at least {side}x{side}; "
                                         f"true classes above")


def representatives(study_results: pd.DataFrame) -> list[str]:
    """Return the id of the best finished seed-0 run (highest test accuracy) of each model family present."""
    need = {"id", "seed", "model", "status", "test_acc"}
    if not len(study_results) or not need <= set(study_results.columns):
        return []
    df = study_results[(study_results["seed"] == 0) & study_results["status"].isin(runs.FINISHED)
                       & study_results["test_acc"].notna()]
    order = registry.in_order() + [m for m in dict.fromkeys(df["model"]) if m not in registry.in_order()]
    out = []
    for family in order:
        rows = df[df["model"] == family]
        if len(rows):
            out.append(str(rows.loc[rows["test_acc"].astype(float).idxmax(), "id"]))  # ties: catalogue order
    return out


def representative_runs(study: tables.Study) -> list[runs.Run]:
    """Return the runs `representatives` picks from a report.Study, in family order."""
    res = study.results
    return [runs.open_run(res[(res["id"] == rid) & (res["seed"] == 0)].iloc[0]["path"])
            for rid in representatives(res)]


def all_runs(study: tables.Study) -> list[runs.Run]:
    """Return every finished seed-0 run of a report.Study that has a best checkpoint, in catalogue order."""
    if not len(study.results):
        return []
    rows = study.results[study.results["seed"] == 0]
    return [runs.open_run(p) for p in rows["path"] if (Path(p) / runs.BEST).is_file()]


def feature_map_figures(runs_: Sequence[runs.Run], image_index: int = 0) -> list[Figure]:
    """Return feature_maps_figure of each run."""
    return [feature_maps_figure(run, image_index) for run in runs_]


def page_name(profile: str, rid: str) -> str:
    """Return the file name (without suffix) of a run's visualisation page in reports/."""
    return f"visualise-{profile}-{rid}"


def visualisation_links(study: tables.Study) -> str:
    """Return Markdown linking each representative to its visualisation page (beside the summary in reports/)."""
    ids = representatives(study.results)
    if not ids:
        return "No finished runs to visualise yet."
    res = study.results[study.results["seed"] == 0].set_index("id")
    lines = [f"- **{res.loc[rid, 'model']}**: [{rid}]({page_name(study.profile, rid)}.html), "
             f"test accuracy {100 * float(res.loc[rid, 'test_acc']):.1f} %" for rid in ids]
    return ("The best run of each model family (highest test accuracy, seed 0) has its own page with curves, "
            "filters, feature maps, confusion matrix, per-class accuracy, hardest images and Grad-CAM:\n\n"
            + "\n".join(lines))
