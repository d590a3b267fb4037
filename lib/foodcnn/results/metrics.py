"""Per-image test outcomes summed up: confusion matrix, per-class accuracy, most-confused pairs, hardest images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def confusion(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Return the (num_classes, num_classes) confusion matrix, rows (true class) summing to 1."""
    true = np.asarray(y_true, dtype=int)
    pred = np.asarray(y_pred, dtype=int)
    counts = np.zeros((num_classes, num_classes), dtype=float)
    np.add.at(counts, (true, pred), 1)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


def per_class_accuracy(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """Return a table with one row per class: class, n, correct, accuracy (in [0, 1])."""
    true = np.asarray(y_true, dtype=int)
    pred = np.asarray(y_pred, dtype=int)
    k = len(class_names)
    n = np.bincount(true, minlength=k)
    correct = np.bincount(true[true == pred], minlength=k)
    acc = np.divide(correct, n, out=np.full(k, np.nan), where=n > 0)
    return pd.DataFrame({"class": list(class_names), "n": n, "correct": correct, "accuracy": acc})


def most_confused(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    k: int = 10,
) -> pd.DataFrame:
    """Return the k most frequent mistakes as columns true, predicted, count, share (of the true class)."""
    true = np.asarray(y_true, dtype=int)
    pred = np.asarray(y_pred, dtype=int)
    wrong = true != pred
    pairs = pd.DataFrame({"t": true[wrong], "p": pred[wrong]})
    counts = pairs.value_counts().rename("count").reset_index()
    per_class = np.bincount(true, minlength=len(class_names))
    counts["share"] = counts["count"] / per_class[counts["t"].to_numpy()]
    counts = counts.sort_values(["count", "t", "p"], ascending=[False, True, True]).head(k)
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame(
        {
            "true": names[counts["t"].to_numpy()],
            "predicted": names[counts["p"].to_numpy()],
            "count": counts["count"].to_numpy(),
            "share": counts["share"].to_numpy(),
        }
    )


def highest_loss(losses: np.ndarray, k: int = 16) -> np.ndarray:
    """Return the indices of the k largest losses, largest first."""
    values = np.asarray(losses, dtype=float)
    return np.argsort(-values, kind="stable")[:k]
