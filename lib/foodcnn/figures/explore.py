"""The explorer behind explore.ipynb: which finished runs it offers, its figure, and its JupyterLab widget."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from ..models import registry
from . import probing, filters as viz_inside
from ..results import runs
from . import runview


def finished_runs(runs_dir: str | Path = "runs", profile: str = "", run_dir: str | Path = "") -> list[Path]:
    """Return the finished run directories under runs_dir/profile (`run_dir` first when given)."""
    root = runview.locate(runs_dir) / profile if profile else runview.locate(runs_dir)
    paths = []
    if root.is_dir():
        paths = [p for p in runs.list_runs(root)
                 if runs.read_result(p) is not None and (p / runs.PREDICTIONS).is_file()]
    if str(run_dir):
        first = runview.open_run(run_dir).path
        paths = [first] + [p for p in paths if p.resolve() != first.resolve()]
    return paths


def figure(run: runs.Run, layer_name: str | None = None, image_index: int = 0, channel: int = 0) -> Figure:
    """Return the explorer's picture: one test image, one channel of a conv layer, Grad-CAM there, top predictions."""
    model = runview.load_model(run)
    layer_name = layer_name or runview.cam_layer(run)
    layer = model.get_submodule(layer_name)
    images, labels = runview.test_images(run, [image_index])
    x = runview.model_input(model, images)[0]
    fmap = probing.capture_feature_maps(model, x, {layer_name: layer})[layer_name]
    channel = int(min(max(channel, 0), len(fmap) - 1))
    pred = run.predictions
    guess, true = int(pred["y_pred"][image_index]), int(labels[0])
    cam = probing.grad_cam(model, x, layer, guess)
    names = runview.class_names(run)
    c, h, w = fmap.shape
    verdict = "right" if guess == true else "wrong"
    return viz_inside.explorer_figure(
        images[0], fmap[channel], cam, pred["prob"][image_index].astype(float), names, true,
        map_title=f"{layer_name}: channel {channel} of {c}, {h}x{w}",
        cam_title=f"Grad-CAM at {layer_name}\nfor the prediction: {names[guess]}",
        title=f"{runview.run_label(run)}: test image {image_index}, true {names[true]}, "
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
            options.append((f"{run.params.profile or 'adhoc'}/{runview.run_label(run)}", str(run.path)))
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
        return figure(self.run, self.layer_box.value, self.image_box.value, self.channel_box.value)

    def _pick_run(self) -> None:
        self._quiet = True
        try:
            run = self.run
            model = runview.load_model(run)
            self.layer_box.options = [(f"{i + 1}. {name} ({conv.out_channels} ch)", name)
                                      for i, (name, conv) in enumerate(registry.conv_layers(model))]
            self.layer_box.value = runview.cam_layer(run)
            self.image_box.max = len(run.predictions["keys"]) - 1
            self.image_box.value = min(self.image_box.value, self.image_box.max)
            self._pick_layer()
        finally:
            self._quiet = False

    def _pick_layer(self) -> None:
        conv = runview.load_model(self.run).get_submodule(self.layer_box.value)
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
