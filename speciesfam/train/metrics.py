"""Validation metrics over the whole validation set: macro-F1 (the target), accuracy, top-5, per-class F1.

Computed with counts (``np.bincount``), not scikit-learn's ``f1_score``: a probe epoch takes ~0.1 s and
``f1_score`` plus a full ``argsort`` of the probabilities took ~50 ms of it on 1,802 x 202 (benchmarks/
RESULTS.md, "Search speed"). ``tests/test_metrics.py`` checks these against scikit-learn's definitions.
"""

from __future__ import annotations

import numpy as np

from ..layout import METRIC


def f1_per_class(pred: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(F1 per class id, mask of classes present in ``y`` or ``pred``); F1 is 0 where nothing was right."""
    true = np.bincount(y, minlength=num_classes)
    guessed = np.bincount(pred, minlength=num_classes)
    hit = np.bincount(y[pred == y], minlength=num_classes)
    denom = true + guessed  # = 2 tp + fp + fn
    f1 = np.divide(2.0 * hit, denom, out=np.zeros(num_classes), where=denom > 0)
    return f1, denom > 0


def classification_metrics(probs: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, float]:
    """Macro-F1 over the classes present in ``y`` or predicted (an absent class counts as F1 0 only if it was
    predicted), accuracy and top-5 accuracy. Equals ``sklearn.metrics.f1_score(y, argmax, labels=present,
    average="macro", zero_division=0)``."""
    y = np.asarray(y, dtype=np.int64)
    pred = probs.argmax(axis=1)
    f1, present = f1_per_class(pred, y, max(num_classes, probs.shape[1]))
    k = min(5, probs.shape[1])
    # top-k membership without sorting: the true class's probability beats all but fewer than k others
    true_p = np.take_along_axis(probs, y[:, None], axis=1)
    top5 = (probs > true_p).sum(axis=1) < k
    return {
        METRIC: float(f1[present].mean()) if present.any() else 0.0,
        "val_accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "val_top5": float(top5.mean()) if len(y) else 0.0,
    }


def per_class_f1(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, float]:
    """F1 of every label the macro-F1 counts: in ``y`` or predicted. A label with no val image that was never
    predicted has none (it read as F1 0.000 in the model card beside a macro-F1 of 1.000 that left it out)."""
    f1, present = f1_per_class(probs.argmax(axis=1), np.asarray(y, dtype=np.int64), len(labels))
    return {lab: float(s) for lab, s, p in zip(labels, f1, present) if p}
