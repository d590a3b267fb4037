"""Tests for foodcnn.results.metrics: confusion matrix, per-class accuracy, most-confused pairs, hardest images."""

import numpy as np

from foodcnn.results import metrics


def test_confusion_known_matrix():
    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 2, 1, 0, 2]
    cm = metrics.confusion(y_true, y_pred, 4)
    expected = np.array([
        [0.5, 0.25, 0.25, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0],
    ])
    np.testing.assert_allclose(cm, expected)
    np.testing.assert_allclose(cm[:3].sum(axis=1), 1)
    rng = np.random.default_rng(0)
    big = metrics.confusion(rng.integers(0, 20, 500), rng.integers(0, 20, 500), 20)
    np.testing.assert_allclose(big.sum(axis=1), 1)


def test_per_class_accuracy_and_most_confused():
    names = ["apple_pie", "baklava", "churros"]
    y_true = [0] * 4 + [1] * 5 + [2] * 2
    y_pred = [0, 1, 1, 1] + [1, 1, 2, 0, 0] + [2, 2]
    table = metrics.per_class_accuracy(y_true, y_pred, names)
    assert list(table.columns) == ["class", "n", "correct", "accuracy"]
    assert table["n"].tolist() == [4, 5, 2]
    np.testing.assert_allclose(table["accuracy"], [0.25, 0.4, 1.0])
    top = metrics.most_confused(y_true, y_pred, names, k=2)
    assert list(top.columns) == ["true", "predicted", "count", "share"]
    assert top.iloc[0].tolist() == ["apple_pie", "baklava", 3, 0.75]
    assert top.iloc[1].tolist() == ["baklava", "apple_pie", 2, 0.4]
    assert len(metrics.most_confused(y_true, y_pred, names)) == 3  # only real mistakes


def test_highest_loss():
    losses = np.array([0.1, 3.0, 0.5, 2.0, 0.2])
    assert metrics.highest_loss(losses, k=3).tolist() == [1, 3, 2]
