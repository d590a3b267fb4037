"""Run directories turned into pictures of what the networks learned and where they look, plus a JupyterLab explorer."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from ..core import checkpoints, data, metrics, models, probing, runs, transforms, viz
from . import report

RIGHT, WRONG = "#1a7f37", "#c62828"  # caption colours: correct / wrong prediction
# Grad-CAM needs a map that can say "where": at the demo profile's small inputs the last conv layer of
# several models is 1x1 or 2x2, so the target is the last conv layer with at least this many rows and
# columns (at 224 px that is the last conv layer of every model, as in the Grad-CAM paper).
MIN_CAM_SIDE = 4
VISUALISE = "visualise.ipynb"

# Models and decoded test sets are reused while a notebook or the explorer asks about the same run
# (VGG16 holds ~0.5 GB of weights, so only a couple stay loaded).
_MODELS: OrderedDict[tuple[str, int], nn.Module] = OrderedDict()
_TESTS: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_KEEP = 2


def _remember(cache: OrderedDict, key: tuple, make: Any) -> Any:
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > _KEEP:
        cache.popitem(last=False)
    return value


# --- opening runs ------------------------------------------------------------------------------


def locate(path: str | Path) -> Path:
    """Return `path`, or that relative path under a parent of the working directory (kernels run in notebooks/)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    for base in Path.cwd().parents:
        if (base / path).exists():
            return base / path
    return path


def open_run(run_dir: str | Path) -> runs.Run:
    """Return the finished run in `run_dir` (found via `locate`), with a clear error when it is not one."""
    if not str(run_dir):
        raise ValueError("run_dir is empty: set it to a run directory such as runs/demo/a_baseline/seed0 "
                         "(papermill: -p run_dir runs/demo/a_baseline/seed0)")
    run = runs.open_run(locate(run_dir))
    if run.result is None or not (run.path / runs.PREDICTIONS).is_file():
        raise ValueError(f"{run.path} has not finished (no result.json or predictions.npz): nothing to show yet")
    return run


def open_runs(run_dirs: Sequence[str | Path]) -> list[runs.Run]:
    """Return the finished runs of `run_dirs`, each directory once, in the given order."""
    seen: dict[Path, runs.Run] = {}
    for d in run_dirs:
        run = open_run(d)
        seen.setdefault(run.path.resolve(), run)
    return list(seen.values())


def finished_runs(runs_dir: str | Path = "runs", profile: str = "", run_dir: str | Path = "") -> list[Path]:
    """Return the finished run directories under runs_dir/profile (`run_dir` first when given)."""
    root = locate(runs_dir) / profile if profile else locate(runs_dir)
    paths = []
    if root.is_dir():
        paths = [p for p in runs.list_runs(root)
                 if runs.read_result(p) is not None and (p / runs.PREDICTIONS).is_file()]
    if str(run_dir):
        first = open_run(run_dir).path
        paths = [first] + [p for p in paths if p.resolve() != first.resolve()]
    return paths


def pretty_class(name: str) -> str:
    """Return a class name for reading: a leading "synthetic_" dropped, underscores as spaces."""
    return name.removeprefix("synthetic_").replace("_", " ")


def class_names(run: runs.Run) -> list[str]:
    """Return the run's class names for reading, in label order."""
    return [pretty_class(c) for c in run.result["data"]["classes"]]


def run_label(run: runs.Run) -> str:
    """Return "id (model, N px)", plus the seed when it is not 0."""
    p = run.params
    seed = f", seed {p.seed}" if p.seed else ""
    return f"{p.id} ({p.model}, {p.resolved_image_size} px{seed})"


def describe(run: runs.Run) -> str:
    """Return one Markdown line: which run, its model, input size, weights and test accuracy."""
    r, p = run.result, run.params
    acc = f"{100 * r['test_acc']:.1f} %" if r.get("test_acc") is not None else "—"
    change = f" — {p.change}" if p.change else ""
    return (f"**{p.id}**{change}: `{p.model}` at {p.resolved_image_size} px, weights {r.get('weights_source', '?')}, "
            f"freeze `{p.freeze}`; test accuracy **{acc}** on {len(run.predictions['keys'])} test images "
            f"(best epoch {r.get('best_epoch')}). Run directory: `{run.path}`.")


# --- the run's model and test images -----------------------------------------------------------


def load_model(run: runs.Run) -> nn.Module:
    """Return the run's best model on the CPU in eval mode (the last two are kept loaded)."""
    best = run.path / runs.BEST
    return _remember(_MODELS, (str(best.resolve()), best.stat().st_mtime_ns), run.model)


def _test_split(run: runs.Run) -> tuple[np.ndarray, np.ndarray]:
    p = run.params
    subset = data.subset_of(p, locate(p.data_root))
    size = p.resolved_image_size
    # The same file list and size as training, so the decode cache answers; unreadable images are skipped as there.
    decoded = data.decode(subset.test, size, cache_dir=locate(p.cache_dir), bad_images="skip", progress=False,
                          desc=f"decode test @{size}px")
    where = {k: i for i, k in enumerate(decoded.keys)}
    keys = [str(k) for k in run.predictions["keys"]]
    missing = [k for k in keys if k not in where]
    if missing:
        raise ValueError(f"{run.path}: {len(missing)} test image(s) of predictions.npz are no longer readable in "
                         f"{subset.root} (e.g. {missing[0]}): the dataset changed after the run")
    order = np.array([where[k] for k in keys], dtype=np.int64)
    return decoded.images, order


def test_images(run: runs.Run, indices: Sequence[int] | np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """Return (uint8 images (N, 3, S, S) at the run's input size, labels) of its test set, in predictions.npz order."""
    pred = run.path / runs.PREDICTIONS
    images, order = _remember(_TESTS, (str(pred.resolve()), pred.stat().st_mtime_ns), lambda: _test_split(run))
    chosen = order if indices is None else order[np.asarray(indices, dtype=np.int64)]
    labels = run.predictions["y_true"].astype(np.int64)
    picked = labels if indices is None else labels[np.asarray(indices, dtype=np.int64)]
    return torch.from_numpy(np.ascontiguousarray(images[chosen])), torch.from_numpy(picked)


def model_input(model: nn.Module, images: Tensor) -> Tensor:
    """Return uint8 images normalised the way this model was trained (ImageNet or the model's own mean/std)."""
    return transforms.normalise(images, *models.input_normalisation(model))


def cam_layer(run: runs.Run) -> str:
    """Return the Grad-CAM target of a run: its last conv layer with a map of at least MIN_CAM_SIDE x MIN_CAM_SIDE."""
    model = load_model(run)
    convs = dict(models.conv_layers(model))
    size = run.params.resolved_image_size
    shapes = probing.capture_feature_maps(model, torch.zeros(3, size, size), convs)
    names = list(convs)
    wide = [n for n in names if min(shapes[n].shape[-2:]) >= MIN_CAM_SIDE]
    return wide[-1] if wide else names[-1]


def spread(n: int, k: int) -> np.ndarray:
    """Return up to k indices spread evenly over range(n) (the test set is sorted by class: one per class or so)."""
    if n <= 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _caption(names: list[str], true: int, pred: int, prob: float) -> tuple[str, str]:
    ok = true == pred
    return f"{'✓' if ok else '✗'} {names[pred]} ({100 * prob:.0f} %)", RIGHT if ok else WRONG


# --- one run -----------------------------------------------------------------------------------


def curves_figure(run: runs.Run) -> Figure:
    """Return the run's loss and accuracy curves, best epoch marked."""
    return viz.curves(run.metrics, title=run_label(run))


def first_conv_weight(run: runs.Run) -> Tensor:
    """Return the first conv layer's weight (out, in, kh, kw) from best.pt without building the model."""
    state = checkpoints.load(run.path / runs.BEST)["model"]
    # state_dict order is module registration order, so the first 4-D weight is probing.first_conv(model)'s.
    return next(v for k, v in state.items() if k.endswith("weight") and v.ndim == 4)


def filters_figure(run: runs.Run) -> Figure:
    """Return the run's first-layer filters as RGB tiles (SPEC §5), layer and shape in the title."""
    model = load_model(run)
    name, conv = models.conv_layers(model)[0]
    w = conv.weight
    out, _, kh, kw = w.shape
    return viz.filter_grid(w, title=f"{run_label(run)}\nfirst conv layer {name}: "
                                    f"{min(out, viz.MAX_TILES)} of {out} filters, {kh}x{kw}")


def filters_overview(runs_: Sequence[runs.Run], ncols: int = 8, panel: float = 1.5, title: str = "") -> Figure:
    """Return one mosaic of first-layer filters per run (small multiples), titled by run id."""
    weights = {}
    for run in runs_:
        name = run.params.id if run.params.seed == 0 else f"{run.params.id} s{run.params.seed}"
        weights[name] = first_conv_weight(run)
    return viz.filters_overview(weights, ncols=ncols, panel=panel, title=title)


def feature_maps_figure(run: runs.Run, image_index: int = 0, max_maps: int = 64) -> Figure:
    """Return the feature maps of the first, a middle and the last conv layer for one test image (SPEC §5)."""
    model = load_model(run)
    images, labels = test_images(run, [image_index])
    layers = probing.feature_layers(model)
    maps = probing.capture_feature_maps(model, model_input(model, images)[0], layers)
    n = len(models.conv_layers(model))
    names = class_names(run)
    return viz.feature_map_grid(
        maps, max_maps=max_maps, image=images[0], image_title=f"test image {image_index}\n{names[int(labels[0])]}",
        title=f"{run_label(run)}: feature maps of the first, middle (number {n // 2 + 1}) and last of its {n} "
              f"conv layers, each map min-max normalised")


def confusion_figure(run: runs.Run) -> Figure:
    """Return the run's row-normalised test confusion matrix."""
    pred = run.predictions
    names = class_names(run)
    cm = metrics.confusion(pred["y_true"], pred["y_pred"], len(names))
    return viz.confusion_figure(cm, names, title=f"{run.params.id}: test confusion, {len(pred['y_true'])} images")


def per_class(run: runs.Run) -> tuple[pd.DataFrame, Figure]:
    """Return the per-class test accuracy table (one row per class) and its bar chart."""
    pred = run.predictions
    table = metrics.per_class_accuracy(pred["y_true"], pred["y_pred"], class_names(run))
    return table, viz.per_class_figure(table, title=f"{run.params.id}: per-class test accuracy")


def most_confused(run: runs.Run, k: int = 10) -> pd.DataFrame:
    """Return the k most frequent test mistakes: true, predicted, count and % of the true class."""
    pred = run.predictions
    top = metrics.most_confused(pred["y_true"], pred["y_pred"], class_names(run), k=k)
    top["% of true class"] = (100 * top.pop("share")).round(1)
    return top


def hardest_gallery(run: runs.Run, k: int = 16) -> Figure:
    """Return the k highest-loss test images with their true and predicted classes."""
    pred = run.predictions
    idx = metrics.highest_loss(pred["loss"], k)
    images, labels = test_images(run, idx)
    names = class_names(run)
    titles, colors = [], []
    for i, true in zip(idx, labels.tolist()):
        guess = int(pred["y_pred"][i])
        caption, color = _caption(names, true, guess, float(pred["prob"][i, guess]))
        titles.append(f"true: {names[true]}\n{caption}\nloss {float(pred['loss'][i]):.2f}")
        colors.append(color)
    return viz.image_gallery(images, titles, ncols=8, colors=colors,
                             title=f"{run.params.id}: the {len(idx)} test images with the highest loss "
                                   f"(true class, then the prediction; ✗ = wrong)")


def _cams(run: runs.Run, indices: Sequence[int], layer: str | None = None) -> tuple[Tensor, list[np.ndarray]]:
    """Return (uint8 images, Grad-CAM maps at `layer` (default cam_layer) for the stored predicted class)."""
    model = load_model(run)
    images, _ = test_images(run, indices)
    x = model_input(model, images)
    target = model.get_submodule(layer or cam_layer(run))
    y_pred = run.predictions["y_pred"]
    cams = [probing.grad_cam(model, x[j], target, int(y_pred[i])) for j, i in enumerate(indices)]
    return images, cams


def _cam_layer_note(run: runs.Run) -> str:
    layer, (last, _) = cam_layer(run), models.conv_layers(load_model(run))[-1]
    if layer == last:
        return f"the last conv layer ({last})"
    return f"{layer} (the last conv layer with a map of at least {MIN_CAM_SIDE}x{MIN_CAM_SIDE})"


def cam_gallery(run: runs.Run, k: int = 8, indices: Sequence[int] | None = None) -> Figure:
    """Return Grad-CAM overlays (last conv layer, predicted class) of k test images spread over the classes."""
    pred = run.predictions
    idx = list(spread(len(pred["keys"]), k) if indices is None else indices)
    images, cams = _cams(run, idx)
    names = class_names(run)
    titles, colors = [], []
    for i in idx:
        true, guess = int(pred["y_true"][i]), int(pred["y_pred"][i])
        caption, color = _caption(names, true, guess, float(pred["prob"][i, guess]))
        titles.append(f"true: {names[true]}\n{caption}")
        colors.append(color)
    return viz.cam_figure(images, cams, titles, ncols=8, colors=colors,
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
        pred, names = run.predictions, class_names(run)
        row = f"{run.params.id}\n{run.params.model}" + (f" s{run.params.seed}" if run.params.seed else "")
        panels[row], titles[row], colors[row] = [], [], []
        for image, cam, i in zip(images, cams, idx):
            guess = int(pred["y_pred"][i])
            caption, color = _caption(names, int(pred["y_true"][i]), guess, float(pred["prob"][i, guess]))
            panels[row].append(viz.cam_overlay(image, cam))
            titles[row].append(caption)
            colors[row].append(color)
    first = runs_[0]
    where = {k: i for i, k in enumerate(keys[0])}
    truth = [class_names(first)[int(first.predictions["y_true"][where[k]])] for k in chosen]
    return viz.side_by_side(panels, titles, col_titles=truth, colors=colors,
                            title=f"The same test images through each model: Grad-CAM for its prediction (✗ = wrong) "
                                  f"at its last conv layer with a map of at least {MIN_CAM_SIDE}x{MIN_CAM_SIDE}; "
                                  f"true classes above")


def representatives(study_results: pd.DataFrame) -> list[str]:
    """Return the id of the best finished seed-0 run (highest test accuracy) of each model family present."""
    need = {"id", "seed", "model", "status", "test_acc"}
    if not len(study_results) or not need <= set(study_results.columns):
        return []
    df = study_results[(study_results["seed"] == 0) & study_results["status"].isin(runs.FINISHED)
                       & study_results["test_acc"].notna()]
    order = models.in_order() + [m for m in dict.fromkeys(df["model"]) if m not in models.in_order()]
    out = []
    for family in order:
        rows = df[df["model"] == family]
        if len(rows):
            out.append(str(rows.loc[rows["test_acc"].astype(float).idxmax(), "id"]))  # ties: catalogue order
    return out


def representative_runs(study: report.Study) -> list[runs.Run]:
    """Return the runs `representatives` picks from a report.Study, in family order."""
    res = study.results
    return [runs.open_run(res[(res["id"] == rid) & (res["seed"] == 0)].iloc[0]["path"])
            for rid in representatives(res)]


def all_runs(study: report.Study) -> list[runs.Run]:
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


def visualisation_links(study: report.Study) -> str:
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


# --- the explorer ------------------------------------------------------------------------------


def explore_figure(run: runs.Run, layer_name: str | None = None, image_index: int = 0, channel: int = 0) -> Figure:
    """Return the explorer's picture: one test image, one channel of a conv layer, Grad-CAM there, top predictions."""
    model = load_model(run)
    layer_name = layer_name or cam_layer(run)
    layer = model.get_submodule(layer_name)
    images, labels = test_images(run, [image_index])
    x = model_input(model, images)[0]
    fmap = probing.capture_feature_maps(model, x, {layer_name: layer})[layer_name]
    channel = int(min(max(channel, 0), len(fmap) - 1))
    pred = run.predictions
    guess, true = int(pred["y_pred"][image_index]), int(labels[0])
    cam = probing.grad_cam(model, x, layer, guess)
    names = class_names(run)
    c, h, w = fmap.shape
    verdict = "right" if guess == true else "wrong"
    return viz.explorer_figure(
        images[0], fmap[channel], cam, pred["prob"][image_index].astype(float), names, true,
        map_title=f"{layer_name}: channel {channel} of {c}, {h}x{w}",
        cam_title=f"Grad-CAM at {layer_name}\nfor the prediction: {names[guess]}",
        title=f"{run_label(run)}: test image {image_index}, true {names[true]}, "
              f"predicted {names[guess]} ({100 * float(pred['prob'][image_index, guess]):.0f} %, {verdict})")


class Explorer:
    """A JupyterLab explorer: pick a run, a conv layer, a test image and a channel; the figure follows."""

    def __init__(self, run_dirs: Sequence[str | Path]):
        import ipywidgets as w

        if not run_dirs:
            raise ValueError("no finished runs to explore: run `python -m foodcnn batch --profile demo` first, "
                             "or set runs_dir/profile/run_dir")
        options = []
        for d in run_dirs:
            run = runs.open_run(d)
            options.append((f"{run.params.profile or 'adhoc'}/{run_label(run)}", str(run.path)))
        style, wide = {"description_width": "80px"}, w.Layout(width="460px")
        self.run_box = w.Dropdown(options=options, description="run", style=style, layout=wide)
        self.layer_box = w.Dropdown(description="conv layer", style=style, layout=wide)
        self.image_box = w.IntSlider(description="test image", min=0, style=style, layout=wide, continuous_update=False)
        self.channel_box = w.IntSlider(description="channel", min=0, style=style, layout=wide, continuous_update=False)
        # The picture is an Image widget updated with PNG bytes, not an Output widget: under load, papermill
        # (nbclient 0.11, ipykernel 7) intermittently stalls on a figure displayed inside an Output widget.
        self.picture = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.message = w.Label()
        self._quiet = False
        self._pick_run()
        self.run_box.observe(self._on_run, names="value")
        self.layer_box.observe(self._on_layer, names="value")
        self.image_box.observe(self._draw, names="value")
        self.channel_box.observe(self._draw, names="value")
        self.widget = w.VBox([w.HBox([self.run_box, self.layer_box]), w.HBox([self.image_box, self.channel_box]),
                              self.message, self.picture])
        self._draw()

    @property
    def run(self) -> runs.Run:
        """Return the selected run."""
        return runs.open_run(self.run_box.value)

    def figure(self) -> Figure:
        """Return the figure of the current selection (also the static copy for exported pages)."""
        return explore_figure(self.run, self.layer_box.value, self.image_box.value, self.channel_box.value)

    def _pick_run(self) -> None:
        self._quiet = True
        try:
            run = self.run
            model = load_model(run)
            self.layer_box.options = [(f"{i + 1}. {name} ({conv.out_channels} ch)", name)
                                      for i, (name, conv) in enumerate(models.conv_layers(model))]
            self.layer_box.value = cam_layer(run)
            self.image_box.max = len(run.predictions["keys"]) - 1
            self.image_box.value = min(self.image_box.value, self.image_box.max)
            self._pick_layer()
        finally:
            self._quiet = False

    def _pick_layer(self) -> None:
        conv = load_model(self.run).get_submodule(self.layer_box.value)
        self.channel_box.max = conv.out_channels - 1
        self.channel_box.value = min(self.channel_box.value, self.channel_box.max)

    def _on_run(self, _change: Any = None) -> None:
        self._pick_run()
        self._draw()

    def _on_layer(self, _change: Any = None) -> None:
        if self._quiet:
            return
        self._quiet = True
        try:
            self._pick_layer()
        finally:
            self._quiet = False
        self._draw()

    def _draw(self, _change: Any = None) -> None:
        if self._quiet:
            return
        import io

        try:
            buf = io.BytesIO()
            self.figure().savefig(buf, format="png", dpi=100)
        except Exception as e:  # shown beside the controls: a callback's traceback would only reach the log
            self.message.value = f"could not draw this selection: {type(e).__name__}: {e}"
            return
        self.message.value = ""
        self.picture.value = buf.getvalue()
