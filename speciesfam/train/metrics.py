"""Validation metrics over the whole validation set: macro-F1 (the target), accuracy, top-5, per-class F1."""

from __future__ import annotations

import numpy as np

from ..layout import METRIC


def classification_metrics(probs: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, float]:
    """Macro-F1 over all ``num_classes`` classes (absent classes count as F1 0 only if predicted)."""
    from sklearn.metrics import f1_score

    pred = probs.argmax(axis=1)
    k = min(5, num_classes)
    topk = np.argsort(-probs, axis=1)[:, :k]
    present = np.union1d(np.unique(y), np.unique(pred))
    return {
        METRIC: float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "val_accuracy": float((pred == y).mean()),
        "val_top5": float((topk == y[:, None]).any(axis=1).mean()),
    }


def per_class_f1(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    scores = f1_score(y, probs.argmax(axis=1), labels=list(range(len(labels))), average=None, zero_division=0)
    return {lab: float(s) for lab, s in zip(labels, scores)}
