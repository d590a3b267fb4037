"""Tests for foodcnn.stats.pairing: two rows lined up image by image, by the keys their predictions saved."""

import numpy as np
import pytest

from foodcnn.stats import pairing, comparisons as stats
from foodcnn.stats.pairing import PairingError, Scored

KEYS = np.array([f"c{i % 4}/{1000 + i}" for i in range(40)])
Y = np.arange(40) % 4


def _run(right: np.ndarray, keys: np.ndarray = KEYS, y: np.ndarray = Y, skipped: frozenset = frozenset()) -> Scored:
    return Scored(y, np.where(right, y, (y + 1) % 4), keys, skipped)


def test_runs_are_lined_up_by_key_not_by_position():
    rng = np.random.default_rng(0)
    child, parent = rng.random(40) < 0.7, rng.random(40) < 0.4
    order = rng.permutation(40)  # the parent saved its images in another order
    preds = {("c", 0): _run(child), ("p", 0): _run(parent[order], KEYS[order], Y[order])}
    a = pairing.align("c", "p", preds)
    assert np.array_equal(a.child[0], child) and np.array_equal(a.parent[0], parent) and a.note == ""


def test_a_key_mismatch_is_an_error_naming_both_runs():
    # same labels, other images: the subsample of a class differs (what load_subset once did for another
    # max_train_per_class); labels alone would pass
    other = np.array([k.replace("/1", "/2") for k in KEYS])
    preds = {("b_custom5", 0): _run(np.ones(40, bool)), ("b_baseline", 0): _run(np.ones(40, bool), other)}
    with pytest.raises(PairingError) as e:
        pairing.align("b_custom5", "b_baseline", preds)
    assert "b_custom5 seed 0 and b_baseline seed 0 were not tested on the same images" in str(e.value)
    assert "40 of b_baseline seed 0's test images (e.g. c0/2000)" in str(e.value)
    with pytest.raises(PairingError, match="b_custom5 seed 0 and b_baseline seed 0"):
        stats.compare("b_custom5", "b_baseline", preds)


def test_one_extra_image_is_a_mismatch_unless_the_run_skipped_it_as_unreadable():
    child, parent = np.ones(40, bool), np.zeros(40, bool)
    short = _run(parent[1:], KEYS[1:], Y[1:])
    with pytest.raises(PairingError, match=r"1 of c seed 0's test images \(e.g. c0/1000\)"):
        pairing.align("c", "p", {("c", 0): _run(child), ("p", 0): short})
    skipped = short._replace(skipped=frozenset({"c0/1000"}))
    a = pairing.align("c", "p", {("c", 0): _run(child), ("p", 0): skipped})
    assert a.child.shape == a.parent.shape == (1, 39)
    assert a.note == "compared on the 39 of 40 test images every run scored (p seed 0 skipped 1 unreadable test image(s))"
    c = stats.compare("c", "p", {("c", 0): _run(child), ("p", 0): skipped})
    assert c.n_images == 39 and c.delta == 1.0 and c.note == a.note


def test_the_same_images_labelled_differently_are_an_error():
    preds = {("c", 0): _run(np.ones(40, bool)), ("p", 0): _run(np.ones(40, bool), y=(Y + 1) % 4)}
    with pytest.raises(PairingError, match="label the same test images differently"):
        pairing.align("c", "p", preds)


def test_a_damaged_file_with_fewer_predictions_than_keys_is_an_error():
    bad = Scored(Y, Y[:30], KEYS)
    with pytest.raises(PairingError, match="p seed 0 has 40 image keys, 40 labels and 30 predictions"):
        pairing.align("c", "p", {("c", 0): _run(np.ones(40, bool)), ("p", 0): bad})


def test_runs_pair_by_seed_and_say_which_were_left_out():
    preds = {("c", s): _run(np.ones(40, bool)) for s in (0, 1, 2)} | {("p", s): _run(np.zeros(40, bool)) for s in (1, 2, 5)}
    a = pairing.align("c", "p", preds)
    assert (a.child_seeds, a.parent_seeds, a.n_seeds_child, a.n_seeds_parent) == ([1, 2], [1, 2], 3, 3)
    assert a.note == "runs without a partner left out: c seed 0, p seed 5"
    one = pairing.align("c", "p", {("c", 1): preds[("c", 1)], **{k: v for k, v in preds.items() if k[0] == "p"}})
    assert one.child.shape[0] == 1 and one.note == "runs without a partner left out: p seeds 2, 5"
    assert not pairing.has_predictions("x", preds) and pairing.has_predictions("p", preds)
    with pytest.raises(KeyError, match="no saved predictions for 'x'"):
        pairing.align("c", "x", preds)
