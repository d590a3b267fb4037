"""Notebooks: committed without outputs, and each parameters cell names exactly the Params fields."""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest

from foodcnn.pipeline import batch
from foodcnn import params

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPERIMENT_NOTEBOOKS = sorted({batch.notebook_for(params.load(f)) for f in batch.catalogue(NOTEBOOKS.parent / "params").values()})


@pytest.mark.parametrize("name", EXPERIMENT_NOTEBOOKS)
def test_parameters_cell_names_exactly_the_dataclass_fields(name):
    inspected = pm.inspect_notebook(str(NOTEBOOKS / name))
    assert set(inspected) == set(params.FIELDS)


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
