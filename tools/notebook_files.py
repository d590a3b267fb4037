"""Writing a notebook file without outputs, with stable cell ids: shared by the notebook builders in tools/."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def save(name: str, cells: list) -> None:
    """Write notebooks/<name> from `cells`, ids numbered so that regenerating gives the same file."""
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {"name": "python"}})
    for i, c in enumerate(nb.cells):
        c["id"] = f"{Path(name).stem}-{i:02d}"
    path = ROOT / "notebooks" / name
    nbformat.write(nb, str(path))
    print("wrote", path.relative_to(ROOT))


def parameters(source: str):
    """Return papermill's `parameters` cell holding `source`."""
    return new_code_cell(source, metadata={"tags": ["parameters"]})
