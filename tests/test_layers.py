"""The library's packages: each module imports only from its own package or those below, and no imports go round in a circle.

A module's package is the folder it lives in under lib/foodcnn, in this order from the ground up:
data -> models -> params -> stats -> results -> training -> figures -> pipeline. Two files at the top of lib/foodcnn stand
below them all (atomic: atomic writes; checkpoints: the checkpoint file format; typecheck: YAML values against type hints), with the package's own __init__;
params.py (also at the top) validates model names against the registry, so it stands above models; __main__
(`python -m foodcnn`) belongs to pipeline. A module placed anywhere else fails the test with a message that names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "foodcnn"
SHARED = "shared"  # small helpers at the top of lib/foodcnn that every package may use
ORDER = (SHARED, "data", "models", "params", "stats", "results", "training", "figures", "pipeline")
FOLDERS = tuple(layer for layer in ORDER if (PACKAGE / layer).is_dir())
TOP_LEVEL = {"__init__": SHARED, "atomic": SHARED, "checkpoints": SHARED, "typecheck": SHARED, "params": "params",
             "__main__": "pipeline"}


def layer_of(name: str) -> str | None:
    """Return the layer of a module named by its dotted path under lib/foodcnn, or None when it is outside every layer."""
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    folder = name.split(".")[0]
    return folder if folder in FOLDERS else None


def module_name(path: Path) -> str:
    """Return the dotted name of a library file under PACKAGE ("train", "engine.train"; a package's __init__ by its folder)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    """Return every module of the library by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """Return (library module, line) for every import of the library in one file, at any depth (lazy ones too)."""
    is_package = path.name == "__init__.py" and name != "__init__"
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = []

    def resolve(dotted: str, line: int) -> None:
        target = dotted if dotted in known else "__init__" if dotted == "" else None
        if target is None and dotted.rpartition(".")[0] in known:  # `from .pkg import name`: the name is an attribute
            target = dotted.rpartition(".")[0]
        if target is not None and target != name:
            found.append((target, line))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join(base + (node.module.split(".") if node.module else []))
            elif node.module and (node.module == "foodcnn" or node.module.startswith("foodcnn.")):
                stem = node.module.removeprefix("foodcnn").lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{stem}.{alias.name}" if stem else alias.name
                resolve(sub if sub in known else stem, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("foodcnn."):
                    resolve(alias.name.removeprefix("foodcnn."), node.lineno)
    return found


def graph() -> dict[str, list[tuple[str, int]]]:
    """Return each library module's imports of other library modules."""
    mods = library_modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in library_modules() if layer_of(name) is None)
    assert not unplaced, (f"lib/foodcnn modules outside the layer folders: {', '.join(unplaced)}. Move each into one "
                          f"of lib/foodcnn/{{{','.join(FOLDERS)}}}/ (what it may import decides which)")


def test_no_module_imports_a_higher_layer():
    rank = {layer: i for i, layer in enumerate(ORDER)}
    upward = []
    for name, targets in graph().items():
        here = layer_of(name)
        if here is None:
            continue  # reported by test_every_module_has_a_layer
        for target, line in targets:
            there = layer_of(target)
            if there is not None and rank[there] > rank[here]:
                upward.append(f"{name.replace('.', '/')}.py:{line} imports {target} ({here} -> {there})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = {name: sorted({t for t, _ in targets}) for name, targets in graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles among library modules:\n" + "\n".join(cycles)


@pytest.mark.parametrize("source, expected", [
    ("from . import models, viz\n", ["models", "viz"]),
    ("from .atomic import atomic_write_text\n", ["atomic"]),
    ("def f():\n    from . import __version__\n", ["__init__"]),
    ("import foodcnn.report\nfrom foodcnn import data\n", ["report", "data"]),
    ("import numpy\nfrom torch import nn\n", []),
])
def test_imports_are_read_at_any_depth(tmp_path, source, expected):
    # the checks above are only as good as this reader: it must see lazy imports inside functions too
    (tmp_path / "probe.py").write_text(source)
    known = {"__init__", "probe", "models", "viz", "atomic", "report", "data"}
    assert [t for t, _ in imports("probe", tmp_path / "probe.py", known)] == expected


def test_the_readme_layout_names_every_module_in_its_folder():
    # the README's "Library layout" is how a newcomer finds a module: it must match the tree
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    section = readme[readme.index("Library layout:"):]
    section = section[:section.index("\n## ")]
    bullets = {}
    for part in section.split("\n- **`")[1:]:
        folder, _, text = part.partition("/`**")
        bullets[folder] = text
    assert sorted(bullets) == sorted(FOLDERS)
    missing = [f"{folder}/{path.name}" for folder in FOLDERS for path in sorted((PACKAGE / folder).glob("*.py"))
               if path.name != "__init__.py" and f"`{path.name}`" not in bullets[folder]]
    assert not missing, "README.md's library layout does not name: " + ", ".join(missing)


def test_the_readme_where_things_live_table_matches_the_tree():
    # one row per library package and per top-level folder of the project, and no row for a folder that is gone
    root = PACKAGE.parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Where things live"):]
    rows = [line.split("|")[1].strip().strip("`").rstrip("/") for line in section.split("\n## ")[0].splitlines()
            if line.startswith("| `")]
    assert [r for r in rows if not (root / r).is_dir()] == []
    packages = {f"lib/foodcnn/{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    ignored = {line.strip().strip("/") for line in (root / ".gitignore").read_text().splitlines()}  # data/, runs/ ...
    folders = {p.name for p in root.iterdir()
               if p.is_dir() and not p.name.startswith(".") and p.name not in ignored and p.name != "lib"}
    assert set(rows) == packages | folders
