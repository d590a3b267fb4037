"""A finished run opened for pictures: found from a notebook's folder, best model and test images kept loaded, labels.

insight.py (figures of runs) and explore.py (the explorer) read runs through this module.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .. import checkpoints
from ..data import subsets, transforms
from ..models import registry
from . import probing, plots as viz
from ..results import runs

# Models and decoded test sets are reused while a notebook or the explorer asks about the same run
# (VGG16 holds ~0.5 GB of weights, so only a couple stay loaded).
_MODELS: OrderedDict[tuple[str, int], nn.Module] = OrderedDict()
_TESTS: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_KEEP = 2
# First-layer filters are small, and a figure and its alt text both read them (VGG16's best.pt is 0.5 GB to load)
_FIRST_CONVS: OrderedDict[tuple[str, int], Tensor] = OrderedDict()
_KEEP_FIRST_CONVS = 256


def _remember(cache: OrderedDict, key: tuple, make: Any, keep: int = _KEEP) -> Any:
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = make()
    while len(cache) > keep:
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


def class_names(run: runs.Run) -> list[str]:
    """Return the run's class names for reading, in label order."""
    return [viz.pretty_class(c) for c in run.result["data"]["classes"]]


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


def first_conv_weight(run: runs.Run) -> Tensor:
    """Return the first conv layer's weight (out, in, kh, kw) from best.pt without building the model."""
    best = run.path / runs.BEST

    def read() -> Tensor:
        state = checkpoints.load(best)["model"]
        # state_dict order is module registration order, so the first 4-D weight is probing.first_conv(model)'s.
        return next(v for k, v in state.items() if k.endswith("weight") and v.ndim == 4).clone()

    return _remember(_FIRST_CONVS, (str(best.resolve()), best.stat().st_mtime_ns), read, keep=_KEEP_FIRST_CONVS)


def _test_split(run: runs.Run) -> tuple[np.ndarray, np.ndarray]:
    p = run.params
    subset = subsets.subset_of(p, locate(p.data_root))
    size = p.resolved_image_size
    # The same file list and size as training, so the decode cache answers; unreadable images are skipped as there.
    decoded = subsets.decode(subset.test, size, cache_dir=locate(p.cache_dir), bad_images="skip", progress=False,
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
    return transforms.normalise(images, *registry.input_normalisation(model))


def cam_layer(run: runs.Run) -> str:
    """Return the run's Grad-CAM target: probing.cam_layer of its model at its input size."""
    return probing.cam_layer(load_model(run), run.params.resolved_image_size)
