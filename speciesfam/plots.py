"""Plots people would rather look at than read: class counts before/after cleaning, search progress,
confusion matrix and per-family F1. matplotlib runs headless (Agg)."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import numpy as np

from . import storage

if TYPE_CHECKING:
    import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, uri: str) -> None:
    """Write ``fig`` as PNG to a local path or an object-store URI, then free it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    storage.write_bytes(uri, buf.getvalue())


def class_counts(before: "pd.Series", after: "pd.Series", path: str) -> None:
    """Images per family before and after cleaning, largest family first."""
    plt = _pyplot()
    order = before.sort_values(ascending=False).index
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(order)), 4))
    pos = np.arange(len(order))
    ax.bar(pos - 0.2, before.reindex(order).fillna(0), 0.4, label="before cleaning", color="tab:gray")
    ax.bar(pos + 0.2, after.reindex(order).fillna(0), 0.4, label="after cleaning", color="tab:green")
    if len(order) <= 60:
        ax.set_xticks(pos, order, rotation=90, fontsize=7)
    ax.set_ylabel("images")
    ax.set_title("Class distribution")
    ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)


def search_progress(results, path: str, metric: str = "val_macro_f1") -> None:
    """Metric against seconds since each trial started, one line per trial; a trial that ASHA stopped at a
    rung ends early, marked with an x."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        hist = r.metrics_dataframe
        if hist is not None and metric in hist.columns:
            line, = ax.plot(hist["time_total_s"], hist[metric], marker="o", ms=3,
                            label=os.path.basename(r.path).lstrip("_")[:28])
            ax.plot(hist["time_total_s"].iloc[-1], hist[metric].iloc[-1], "x", color=line.get_color(), ms=8)
    ax.set_xlabel("seconds since trial start")
    ax.set_ylabel(metric)
    ax.set_title("Search progress (x: last epoch of each trial)")
    if 0 < len(ax.get_legend_handles_labels()[0]) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    _save(plt, fig, path)


def confusion(cm: np.ndarray, labels: list[str], path: str) -> None:
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * n), max(4, 0.35 * n)))
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:  # beyond that tick labels are unreadable; the CSVs carry the detail
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row-normalised)")
    fig.tight_layout()
    _save(plt, fig, path)


def per_class_f1(per_class: "pd.DataFrame", path: str) -> None:
    plt = _pyplot()
    order = per_class.sort_values("f1")
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(order))))
    ax.barh(order["family"], order["f1"], color="tab:green")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("Per-family F1")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    _save(plt, fig, path)
