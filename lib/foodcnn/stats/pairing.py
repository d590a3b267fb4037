"""Two rows' test predictions lined up image by image: the same image keys on both sides, or a clear error.

A paired test (inference.py) is only paired when both sides scored the same images. Labels alone cannot show it
(two subsamples of a class carry the same label), so runs are matched by the image keys predictions.npz stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Scored(NamedTuple):
    """One run's test predictions: labels, predictions and image keys in one order, and the images it skipped."""

    y_true: np.ndarray
    y_pred: np.ndarray
    keys: np.ndarray  # "class/id" of each test image (predictions.npz "keys")
    skipped: frozenset[str] = frozenset()  # images the run could not read (result.json "bad_images")


Predictions = Mapping[tuple[str, int], Scored]


class PairingError(ValueError):
    """Two runs that a comparison pairs were not tested on the same images."""


@dataclass(frozen=True)
class Aligned:
    """Both sides' correctness on the images every run scored: (runs, images) matrices, row k of each one seed."""

    child: np.ndarray
    parent: np.ndarray
    child_seeds: list[int]  # the seeds of child's rows
    parent_seeds: list[int]
    n_seeds_child: int  # every run the side saved, paired or not
    n_seeds_parent: int
    note: str  # "" or what was left out (unreadable images, runs without a partner)


def runs_of(exp_id: str, predictions: Predictions) -> dict[int, Scored]:
    """Return the saved predictions of every run of one experiment id, keyed by seed."""
    return {seed: predictions[(i, seed)] for (i, seed) in sorted(predictions) if i == exp_id}


def has_predictions(exp_id: str, predictions: Predictions) -> bool:
    """Return whether any run of exp_id saved its test predictions."""
    return any(i == exp_id for i, _ in predictions)


def _name(run: tuple[str, int]) -> str:
    return f"{run[0]} seed {run[1]}"


def _seeds(exp_id: str, seeds: list[int]) -> str:
    """Return "a_baseline seed 1" or "a_baseline seeds 1, 2"."""
    return f"{exp_id} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def align(child_id: str, parent_id: str, predictions: Predictions) -> Aligned:
    """Return child and parent correctness on the same test images, paired by seed.

    Runs pair by the seeds both sides ran (in sorted order when they share none); a run without a partner is left
    out and named in the note. Every run must hold the same image keys. Where a run lacks images that it recorded as
    unreadable (skipped at decoding), all runs are compared on the images every run scored, and the note says so;
    any other difference raises PairingError naming both runs.
    """
    sides = {i: runs_of(i, predictions) for i in (child_id, parent_id)}
    for exp_id, runs in sides.items():
        if not runs:
            raise KeyError(f"no saved predictions for {exp_id!r}")
    everyone = [((i, s), r) for i, runs in sides.items() for s, r in runs.items()]
    keys = {run: np.asarray(r.keys).astype(str) for run, r in everyone}
    for run, r in everyone:
        if not (len(keys[run]) == len(r.y_true) == len(r.y_pred)):
            raise PairingError(f"run {_name(run)} has {len(keys[run])} image keys, {len(r.y_true)} labels and "
                               f"{len(r.y_pred)} predictions")
    held = {run: set(k) for run, k in keys.items()}
    union = set().union(*held.values())
    for run, r in everyone:
        missing = union - held[run] - set(r.skipped)
        if missing:
            other = next(o for o, k in held.items() if missing & k)
            example = sorted(missing & held[other])[0]
            raise PairingError(
                f"runs {_name(run)} and {_name(other)} were not tested on the same images: {len(missing)} of "
                f"{_name(other)}'s test images (e.g. {example}) are not among {_name(run)}'s; a paired test needs "
                f"both rows run with the same data, classes, max_test_per_class and split_seed")
    first = next(iter(keys))
    common = [k for k in keys[first] if all(k in h for h in held.values())]
    correct: dict[tuple[str, int], np.ndarray] = {}
    reference: np.ndarray | None = None
    for run, r in everyone:
        where = {k: j for j, k in enumerate(keys[run])}
        idx = np.array([where[k] for k in common], dtype=np.int64)
        y_true, y_pred = np.asarray(r.y_true)[idx], np.asarray(r.y_pred)[idx]
        if reference is None:
            reference = y_true
        elif not np.array_equal(y_true, reference):
            raise PairingError(f"runs {_name(run)} and {_name(everyone[0][0])} label the same test images "
                               "differently (another class list or order)")
        correct[run] = y_pred == y_true
    notes = [f"{_name(run)} skipped {len(union - held[run])} unreadable test image(s)"
             for run, _ in everyone if len(held[run]) < len(union)]
    if notes:
        notes = [f"compared on the {len(common)} of {len(union)} test images every run scored ({'; '.join(notes)})"]
    c_seeds, p_seeds = list(sides[child_id]), list(sides[parent_id])
    shared = [s for s in c_seeds if s in sides[parent_id]]
    pairs = [(s, s) for s in shared] if shared else list(zip(c_seeds, p_seeds))
    unpaired = [_seeds(i, [s for s in seeds if s not in used])
                for i, seeds, used in ((child_id, c_seeds, {a for a, _ in pairs}), (parent_id, p_seeds, {b for _, b in pairs}))
                if set(seeds) - used]
    if unpaired:
        notes.append(f"runs without a partner left out: {', '.join(unpaired)}")
    return Aligned(np.stack([correct[(child_id, a)] for a, _ in pairs]),
                   np.stack([correct[(parent_id, b)] for _, b in pairs]),
                   [a for a, _ in pairs], [b for _, b in pairs], len(c_seeds), len(p_seeds), "; ".join(notes))
