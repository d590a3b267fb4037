"""Pictures and tables of what trained networks learned and where they look: one run, several runs, a study's picks.

Runs are opened through runview.py; the figures themselves are drawn by plots.py and filters.py. Each figure of
the report has a `describe_` twin (its alt text, from the same data; registry.py pairs them) at the end.
"""

from __future__ import annotations

from collections import Counter
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


def _feature_maps(run: runs.Run, image_index: int) -> tuple[dict[str, Tensor], Tensor, str, int]:
    """Return (maps of the first, a middle and the last conv layer, the test image, its class, the conv count)."""
    model = runview.load_model(run)
    images, labels = runview.test_images(run, [image_index])
    layers = probing.feature_layers(model)
    maps = probing.capture_feature_maps(model, runview.model_input(model, images)[0], layers)
    return maps, images, runview.class_names(run)[int(labels[0])], len(registry.conv_layers(model))


def feature_maps_figure(run: runs.Run, image_index: int = 0, max_maps: int = 64) -> Figure:
    """Return the feature maps of the first, a middle and the last conv layer for one test image (SPEC §5)."""
    maps, images, true_class, n = _feature_maps(run, image_index)
    return viz_inside.feature_map_grid(
        maps, max_maps=max_maps, image=images[0], image_title=f"test image {image_index}\n{true_class}",
        title=f"{runview.run_label(run)}: feature maps of the first, middle (number {n // 2 + 1}) and last of its "
              f"{n} conv layers, each map min-max normalised")


def confusion_figure(run: runs.Run) -> Figure:
    """Return the run's row-normalised test confusion matrix."""
    pred = run.predictions
    names = runview.class_names(run)
    cm = metrics.confusion(pred["y_true"], pred["y_pred"], len(names))
    return viz.confusion_figure(cm, names, title=f"{run.params.id}: test confusion, {len(pred['y_true'])} images")


def per_class_table(run: runs.Run) -> pd.DataFrame:
    """Return the per-class test accuracy table: class, n, correct, accuracy, one row per class."""
    pred = run.predictions
    return metrics.per_class_accuracy(pred["y_true"], pred["y_pred"], runview.class_names(run))


def per_class_figure(run: runs.Run) -> Figure:
    """Return the bar chart of the run's per-class test accuracy, best class on top."""
    return viz.per_class_figure(per_class_table(run), title=f"{run.params.id}: per-class test accuracy")


def per_class(run: runs.Run) -> tuple[pd.DataFrame, Figure]:
    """Return the per-class test accuracy table (one row per class) and its bar chart."""
    return per_class_table(run), per_class_figure(run)


def most_confused(run: runs.Run, k: int = 10) -> pd.DataFrame:
    """Return the k most frequent test mistakes: true, predicted, count and % of the true class."""
    pred = run.predictions
    top = metrics.most_confused(pred["y_true"], pred["y_pred"], runview.class_names(run), k=k)
    top["% of true class"] = 100 * top.pop("share")
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


def _cam_indices(run: runs.Run, k: int, indices: Sequence[int] | None) -> list[int]:
    return list(spread(len(run.predictions["keys"]), k) if indices is None else indices)


def cam_gallery(run: runs.Run, k: int = 8, indices: Sequence[int] | None = None) -> Figure:
    """Return Grad-CAM overlays (last conv layer, predicted class) of k test images spread over the classes."""
    pred = run.predictions
    idx = _cam_indices(run, k, indices)
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


def _shared_images(runs_: Sequence[runs.Run], n_images: int) -> tuple[list[list[str]], list[str]]:
    """Return each run's test keys and up to n_images keys that every run tested, spread over the first's order."""
    keys = [[str(k) for k in run.predictions["keys"]] for run in runs_]
    shared = set.intersection(*(set(k) for k in keys))
    common = [k for k in keys[0] if k in shared]
    if not common:
        raise ValueError("these runs share no test images (different classes or data); compare runs of one profile")
    return keys, [common[i] for i in spread(len(common), n_images)]


def side_by_side(runs_: Sequence[runs.Run], n_images: int = 6) -> Figure:
    """Return the same test images through several models: one row per run, Grad-CAM overlay and prediction per cell."""
    if not runs_:
        return viz.message_figure("no runs to compare")
    keys, chosen = _shared_images(runs_, n_images)
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


# --- the same figures in words (alt text) ------------------------------------------------------


def _share(n: int, of: int) -> str:
    return f"{n} of {of}"


def describe_curves(run: runs.Run) -> str:
    """Return the alt text of curves_figure: the epochs run and the best epoch's validation loss and accuracy."""
    m, label = run.metrics, runview.run_label(run)
    best = viz.best_epoch(m) if len(m) else None
    if best is None:
        return f"Loss and accuracy curves of {label}: no epoch with a validation loss was recorded."
    return (f"Train and validation loss and accuracy (%) against epoch for {label}, over "
            f"{viz.count(len(m), 'epoch')}: the best epoch, {int(best['epoch'])}, has validation loss "
            f"{best['val_loss']:.3f} and validation accuracy {100 * best['val_acc']:.1f} % (train "
            f"{100 * best['train_acc']:.1f} %); its weights were tested.")


def _filter_shape(w: Tensor) -> str:
    out, inp, kh, kw = w.shape
    return f"{min(out, viz_inside.MAX_TILES)} of {out} filters of {kh}x{kw} over {inp} input channels"


def describe_filters(run: runs.Run) -> str:
    """Return the alt text of filters_figure: which layer, how many filters of what size."""
    name, conv = registry.conv_layers(runview.load_model(run))[0]
    return (f"First-layer filters of {runview.run_label(run)}, layer {name}: {_filter_shape(conv.weight)}, each shown "
            f"as an RGB tile shifted to be non-negative and divided by its maximum.")


def describe_filters_overview(runs_: Sequence[runs.Run], ncols: int = 8, panel: float = 1.5, title: str = "") -> str:
    """Return the alt text of filters_overview: the runs, and how many first-layer filters of which sizes."""
    if not runs_:
        return "First-layer filters: no trained models to show."
    shapes = [tuple(runview.first_conv_weight(run).shape) for run in runs_]
    ids = [run.params.id for run in runs_]
    counts = sorted({out for out, *_ in shapes})
    sizes = sorted({f"{kh}x{kw}" for *_, kh, kw in shapes})
    which = ", ".join(ids) if len(ids) <= 8 else f"{ids[0]} to {ids[-1]}"
    per_run = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return (f"First-layer filters of {viz.count(len(runs_), 'run')} ({which}), one mosaic of RGB tiles each: "
            f"{per_run} filters per run, {' or '.join(sizes)} pixels each.")


def describe_feature_maps(run: runs.Run, image_index: int = 0, max_maps: int = 64) -> str:
    """Return the alt text of feature_maps_figure: the image, and each layer's map count and size."""
    maps, _, true_class, n = _feature_maps(run, image_index)
    layers = "; ".join(f"{label} {len(m)} maps of {m.shape[1]}x{m.shape[2]}" for label, m in maps.items())
    return (f"Feature maps of test image {image_index} (true class {true_class}) in {runview.run_label(run)}, "
            f"{viz.count(n, 'conv layer')} in all: {layers}; up to {max_maps} maps shown per layer, each min-max "
            f"normalised.")


def describe_confusion(run: runs.Run) -> str:
    """Return the alt text of confusion_figure: the range of per-class accuracy and the largest confusion."""
    pred, names = run.predictions, runview.class_names(run)
    cm = metrics.confusion(pred["y_true"], pred["y_pred"], len(names))
    diag = np.diag(cm)
    off = cm - np.diag(diag)
    t, p_ = np.unravel_index(int(np.argmax(off)), off.shape)
    worst = f"most often confused: {names[t]} taken for {names[p_]} ({100 * off[t, p_]:.0f} % of {names[t]})" \
        if off[t, p_] > 0 else "no confusions"
    return (f"Confusion matrix of {run.params.id} on {len(pred['y_true'])} test images, true class (rows) against "
            f"predicted class (columns), {len(names)} classes, each row summing to 100 %: the diagonal (per-class "
            f"accuracy) runs from {100 * diag.min():.0f} % ({names[int(diag.argmin())]}) to {100 * diag.max():.0f} % "
            f"({names[int(diag.argmax())]}); {worst}.")


def describe_per_class(run: runs.Run) -> str:
    """Return the alt text of per_class_figure: the best and worst class and the overall accuracy."""
    t = per_class_table(run).dropna(subset=["accuracy"])
    if not len(t):
        return f"Per-class test accuracy of {run.params.id}: no test images."
    best, worst = t.loc[t["accuracy"].idxmax()], t.loc[t["accuracy"].idxmin()]
    overall = 100 * t["correct"].sum() / max(t["n"].sum(), 1)
    return (f"Bar chart of the test accuracy (%) of each of {len(t)} classes for {run.params.id}, best on top: "
            f"{best['class']} {100 * best['accuracy']:.0f} %, worst {worst['class']} {100 * worst['accuracy']:.0f} %; "
            f"overall {overall:.1f} % (dashed line).")


def _mistakes(run: runs.Run, idx: Sequence[int], names: list[str], most: int = 3) -> str:
    """Return the commonest wrong predictions among test images `idx`: "a taken for b (2 times); …; 5 more"."""
    pred = run.predictions
    pairs = Counter(f"{names[int(pred['y_true'][i])]} taken for {names[int(pred['y_pred'][i])]}"
                    for i in idx if pred["y_true"][i] != pred["y_pred"][i])
    top = pairs.most_common(most)
    rest = sum(pairs.values()) - sum(n for _, n in top)
    return "; ".join(f"{pair} ({n} times)" if n > 1 else pair for pair, n in top) + (f"; {rest} more" if rest else "")


def describe_hardest(run: runs.Run, k: int = 16) -> str:
    """Return the alt text of hardest_gallery: how many images, their loss range, how many are wrong."""
    pred, names = run.predictions, runview.class_names(run)
    idx = list(metrics.highest_loss(pred["loss"], k))
    if not idx:
        return f"The test images of {run.params.id} with the highest loss: none."
    wrong = sum(int(pred["y_true"][i] != pred["y_pred"][i]) for i in idx)
    text = (f"The {viz.count(len(idx), 'test image')} on which {run.params.id} had the highest loss "
            f"({float(pred['loss'][idx[0]]):.2f} down to {float(pred['loss'][idx[-1]]):.2f}), each captioned with "
            f"its true class and the prediction: {_share(wrong, len(idx))} wrong")
    return text + (f" ({_mistakes(run, idx, names)})." if wrong else ".")


def describe_cam(run: runs.Run, k: int = 8, indices: Sequence[int] | None = None) -> str:
    """Return the alt text of cam_gallery: the layer, how many images, how many predictions are right."""
    pred, names = run.predictions, runview.class_names(run)
    idx = _cam_indices(run, k, indices)
    right = sum(int(pred["y_true"][i] == pred["y_pred"][i]) for i in idx)
    text = (f"Grad-CAM heat maps of {run.params.id} at {_cam_layer_note(run)} over "
            f"{viz.count(len(idx), 'test image')} spread over the classes, each for the model's own prediction "
            f"(red: evidence for it): {_share(right, len(idx))} predictions right")
    return text + (f"; wrong: {_mistakes(run, idx, names)}." if right < len(idx) else ".")


def describe_side_by_side(runs_: Sequence[runs.Run], n_images: int = 6) -> str:
    """Return the alt text of side_by_side: the shared images' classes and each model's right answers."""
    if not runs_:
        return "The same test images through several models: no runs to compare."
    keys, chosen = _shared_images(runs_, n_images)
    first = runs_[0]
    where = {k: i for i, k in enumerate(keys[0])}
    truth = [runview.class_names(first)[int(first.predictions["y_true"][where[k]])] for k in chosen]
    scores = []
    for run, run_keys in zip(runs_, keys):
        at = {k: i for i, k in enumerate(run_keys)}
        p = run.predictions
        right = sum(int(p["y_true"][at[k]] == p["y_pred"][at[k]]) for k in chosen)
        scores.append(f"{run.params.id} {_share(right, len(chosen))}")
    return (f"The same {viz.count(len(chosen), 'test image')} ({', '.join(truth)}) through "
            f"{viz.count(len(runs_), 'model')}, one row per model, each cell the Grad-CAM heat map for that model's "
            f"prediction; right predictions: {', '.join(scores)}.")
