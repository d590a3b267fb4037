"""Write the visualisation notebooks (visualise.ipynb, explore.ipynb) without outputs: `python tools/viz_notebooks.py`.

tools/make_notebooks.py calls `build()` too, so one command regenerates every notebook.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # notebook_files, wherever this is run from

from nbformat.v4 import new_code_cell, new_markdown_cell  # noqa: E402

from notebook_files import parameters, save  # noqa: E402


def visualise() -> None:
    save("visualise.ipynb", [
        new_markdown_cell(
            "# Inside one network\n\n"
            "What one trained run learned and where it looks: learning curves, first-layer filters, feature maps, "
            "the confusion matrix, per-class accuracy, the most-confused pairs, the hardest test images and "
            "Grad-CAM. `python -m foodcnn report` executes this notebook for the best run of each model family "
            "(`reports/visualise-<profile>-<id>.html`). To look at another run, set `run_dir` below (for example "
            "`runs/demo/a_baseline/seed0`) and run all cells; list more run directories in `compare_dirs` to see "
            "the same test images through several models at the end."),
        parameters('run_dir = ""\ncompare_dirs = []\nmax_images = 8'),
        new_code_cell("%matplotlib inline\nfrom IPython.display import Markdown, display\n"
                      "from foodcnn.figures import insight, registry, runview\n"
                      "from foodcnn.results import tables\n\n"
                      "run = runview.open_run(run_dir)\n"
                      "display(Markdown(runview.describe(run)))\n"
                      "tables.run_card(run.result)"),
        new_markdown_cell("## Learning curves\n\nTrain (blue) and validation (orange) loss and accuracy per epoch. "
                          "The dashed line marks the best epoch (lowest validation loss): every figure below uses "
                          "the weights of that epoch."),
        new_code_cell('registry.show("curves", run)'),
        new_markdown_cell("## First-layer filters\n\nEvery filter of the first convolution, shifted to be "
                          "non-negative and divided by its maximum, shown as an RGB tile (SPEC §5). Trained filters "
                          "show colour blobs, edges and stripes; filters that barely moved from their random start "
                          "look like noise."),
        new_code_cell('registry.show("filters", run)'),
        new_markdown_cell("## Feature maps\n\nThe first test image (left) through the network: the outputs of the "
                          "first, a middle and the last convolution, each map min-max normalised (bright = strong "
                          "response). Early maps still look like the image; later ones are smaller and more abstract."),
        new_code_cell('registry.show("feature_maps", run, image_index=0)'),
        new_markdown_cell("## Confusion matrix\n\nOne row per true class, one column per predicted class; each row "
                          "sums to 100 %. A strong diagonal is good; bright cells off it are classes the model "
                          "mixes up."),
        new_code_cell('registry.show("confusion", run)'),
        new_markdown_cell("## Per-class accuracy\n\nTest accuracy of each class, best on top; the dashed line is the "
                          "overall accuracy."),
        new_code_cell('registry.show("per_class", run)'),
        new_markdown_cell("## Most-confused pairs\n\nThe most frequent mistakes: how many test images of the true "
                          "class went to the predicted one, and what share of the true class that is."),
        new_code_cell("tables.styled(insight.most_confused(run))"),
        new_markdown_cell("## Hardest test images\n\nThe test images with the highest loss, the ones the model was "
                          "most confidently wrong about: true class, then the prediction and its probability "
                          "(✗ and red when wrong)."),
        new_code_cell('registry.show("hardest", run, k=2 * max_images)'),
        new_markdown_cell("## Where the network looks (Grad-CAM)\n\nGrad-CAM weights the maps of the last convolution "
                          "by the gradient of the predicted class's score: red regions pushed the prediction most, "
                          "blue ones not at all. At small inputs the last maps can be 1x1, which cannot say where, so "
                          "the last convolution with a map of at least 4x4 is used (the title names it). The images "
                          "are spread over the test set, about one per class."),
        new_code_cell('registry.show("cam", run, k=max_images)'),
        new_markdown_cell("## Side by side\n\nThe same test images through this run and each run in "
                          "`compare_dirs`: one row per model, each cell its Grad-CAM and its prediction (✗ and red "
                          "when wrong), the true classes above. Nothing is drawn when `compare_dirs` is empty."),
        new_code_cell("if compare_dirs:\n"
                      "    compared = runview.open_runs([run_dir, *compare_dirs])\n"
                      '    display(registry.show("side_by_side", compared, n_images=max_images))'),
    ])


def explore() -> None:
    save("explore.ipynb", [
        new_markdown_cell(
            "# Explore a trained network\n\n"
            "Pick a run, a convolution layer, a test image and a channel. The figure shows the image, that "
            "channel's feature map (raw values), Grad-CAM at that layer for the model's prediction (red = evidence "
            "for it) and the five most probable classes, the true one in green. The layer list runs from the "
            "first convolution to the last; it starts at the layer the report's Grad-CAM figures use (the last "
            "one whose map is at least 4x4).\n\n"
            "Open this notebook in JupyterLab (`make lab`) and run all cells: the controls need a live kernel. "
            "`runs_dir`/`profile` choose which runs are listed; `run_dir` puts one run first."),
        parameters('runs_dir = "runs"\nprofile = "demo"\nrun_dir = ""'),
        new_code_cell("%matplotlib inline\nfrom foodcnn.figures import explore\n\n"
                      "explorer = explore.Explorer(explore.finished_runs(runs_dir, profile, run_dir))\n"
                      "explorer.widget"),
        new_markdown_cell("## The first selection, as a plain figure\n\nExported pages (HTML, PDF) cannot run the "
                          "controls above, so here is the explorer's first selection drawn once."),
        new_code_cell("explorer.figure()"),
    ])


def build() -> None:
    """Write both notebooks."""
    visualise()
    explore()


if __name__ == "__main__":
    build()
