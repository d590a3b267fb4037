"""Notebooks: committed without outputs, and each parameters cell names exactly the Params fields."""

from __future__ import annotations

import json
import re
from pathlib import Path

import papermill as pm
import pytest
import torchvision

from foodcnn import params
from foodcnn.models import registry
from foodcnn.models.smallcnn import SmallCNN
from foodcnn.pipeline import batch

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPERIMENT_NOTEBOOKS = sorted({batch.notebook_for(params.load(f)) for f in batch.catalogue(NOTEBOOKS.parent / "params").values()})


@pytest.mark.parametrize("name", EXPERIMENT_NOTEBOOKS)
def test_parameters_cell_names_exactly_the_dataclass_fields(name):
    inspected = pm.inspect_notebook(str(NOTEBOOKS / name))
    assert set(inspected) == set(params.FIELDS)


def parameters_cell(name: str) -> dict:
    """Return the values the committed notebook's `parameters` cell assigns (what Run All starts from)."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    values: dict = {}
    exec("".join(cell["source"]), {}, values)
    return values


def is_timm_efficientnet(model) -> bool:
    from timm.models.efficientnet import EfficientNet

    return isinstance(model, EfficientNet)


# What each experiment notebook builds when run by hand, as a user opening it by its name expects.
BUILDS = {
    "baseline.ipynb": lambda p, m: isinstance(m, SmallCNN) and p.model == "baseline",
    "custom.ipynb": lambda p, m: isinstance(m, SmallCNN) and p.model != "baseline",
    "vgg.ipynb": lambda p, m: isinstance(m, torchvision.models.VGG) and p.model in ("vgg16", "vgg16_bn"),
    "resnet.ipynb": lambda p, m: isinstance(m, torchvision.models.ResNet) and p.model == "resnet18",
    "transfer.ipynb": lambda p, m: is_timm_efficientnet(m) and p.model == "efficientnet_lite0",
}


def test_every_experiment_notebook_has_an_expected_model():
    assert set(BUILDS) == set(EXPERIMENT_NOTEBOOKS)


@pytest.mark.parametrize("name", EXPERIMENT_NOTEBOOKS)
def test_defaults_are_a_catalogue_row_of_the_notebooks_kind(name, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no ImageNet weights: pretrained "auto" builds from random init
    p = params.from_mapping(parameters_cell(name), source=name)
    rows = batch.catalogue(NOTEBOOKS.parent / "params")
    assert p.id in rows and p.profile, "the defaults name a catalogue row and a profile"
    # resolved by the library from the row's file and the profile, not numbers copied by hand
    assert p.to_dict() == params.load(rows[p.id], profile=p.profile).to_dict()
    assert batch.notebook_for(p) == name  # the batch runs this row in this very notebook
    assert BUILDS[name](p, registry.build_from_params(p))
    assert p.epochs <= 5 and p.max_train_per_class and p.resolved_image_size <= 128, "a CPU-sized run"


@pytest.mark.parametrize("name", EXPERIMENT_NOTEBOOKS)
def test_first_cell_names_rows_this_notebook_runs(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    first = "".join(nb["cells"][0]["source"])
    rows = batch.catalogue(NOTEBOOKS.parent / "params")
    named = {rid for rid in re.findall(r"`(?:params/)?([a-z]_[\w.]+?)(?:\.yaml)?`", first) if rid in rows}
    named |= {rid for rid in re.findall(r"--profile \w+ ([a-z]_[\w.]+)`", first) if rid in rows}
    assert len(named) >= 2, "the default row and an example of another"
    for rid in named:
        assert batch.notebook_for(params.load(rows[rid])) == name, rid


def test_every_kind_has_a_notebook():
    assert set(EXPERIMENT_NOTEBOOKS) >= {"baseline.ipynb", "custom.ipynb", "vgg.ipynb", "resnet.ipynb"}


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebooks_are_generated_from_the_builder():
    # tools/make_notebooks.py writes them; a hand edit that drifts from it would be lost on regeneration
    import subprocess
    import sys

    root = NOTEBOOKS.parent
    before = {p.name: p.read_text() for p in NOTEBOOKS.glob("*.ipynb")}
    subprocess.run([sys.executable, str(root / "tools" / "make_notebooks.py")], check=True, capture_output=True)
    after = {p.name: p.read_text() for p in NOTEBOOKS.glob("*.ipynb")}
    assert after == before
