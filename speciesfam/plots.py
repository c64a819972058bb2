"""Plots people would rather look at than read: class counts before/after cleaning, search progress,
confusion matrix and per-family F1. matplotlib runs headless (Agg).

Each function returns the PNG's bytes (report.html inlines them) and also writes it when given a path.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import warnings
from typing import TYPE_CHECKING, Iterator

import numpy as np

from . import storage
from .layout import METRIC
from .markdown import visible

if TYPE_CHECKING:
    import pandas as pd


def data_uri(png_or_jpeg: bytes, mime: str = "image/png") -> str:
    """The image as a ``data:`` URI, for a page that opens offline from anywhere (report.html)."""
    return f"data:{mime};base64,{base64.b64encode(png_or_jpeg).decode('ascii')}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _drawing() -> Iterator[None]:
    """matplotlib's layout and font warnings held back: with long or exotic family names it says it could not
    tighten the layout, or that a glyph is missing from its font, and still draws the plot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _tick(label) -> str:
    """A family name as a tick label: control characters escaped (a tab is drawn as ``\\t``), and characters the
    plot's font has no glyph for (CJK in DejaVu Sans: drawn as empty boxes, two such families alike) as
    ``\\u718a``; long names cut at 40 characters (the CSVs and tables next to the plots keep every name whole)."""
    drawn = _glyphs()
    text = "".join(c if ord(c) in drawn or c == " " else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else
                   f"\\U{ord(c):08x}" for c in visible(label))  # visible: only printable characters left
    return text if len(text) <= 40 else text[:39] + "\u2026"


@functools.cache
def _glyphs() -> frozenset[int]:
    """The code points the plots' font (matplotlib's default family) draws."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())


def _save(plt, fig, uri: str | None) -> bytes:
    """``fig`` laid out, as PNG bytes, also written to a local path or an object-store URI when given; frees it."""
    buf = io.BytesIO()
    with _drawing():
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    if uri:
        storage.write_bytes(uri, buf.getvalue())
    return buf.getvalue()


def class_counts(before: "pd.Series", after: "pd.Series", path: str | None = None) -> bytes:
    """Images per family before and after cleaning, largest family first."""
    plt = _pyplot()
    order = before.sort_values(ascending=False).index
    # past 60 families no tick labels: 202 drew 6060 x 400 px, shown 45 px tall in the report (round 62); 18 inches
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * min(len(order), 60)), 4))  # keep a readable height on the page
    pos = np.arange(len(order))
    ax.bar(pos - 0.2, before.reindex(order).fillna(0), 0.4, label="before cleaning", color="tab:gray")
    ax.bar(pos + 0.2, after.reindex(order).fillna(0), 0.4, label="after cleaning", color="tab:green")
    if len(order) <= 60:
        ax.set_xticks(pos, [_tick(f) for f in order], rotation=90, fontsize=7)
    else:
        ax.set_xlabel(f"{len(order)} families, largest first (the tables name each)")
    ax.set_ylabel("images")
    ax.set_title("Class distribution")
    ax.legend()
    return _save(plt, fig, path)


def confusion(cm: np.ndarray, labels: list[str], path: str | None = None, title: str = "Confusion matrix",
              other: np.ndarray | None = None) -> bytes:
    """Rows: true families, columns: predicted, each row normalised. ``other``: per row, the images predicted as
    families outside ``labels`` (a subset's matrix), drawn as a last column so each row still sums to its
    images (a family whose errors all went outside the subset showed a blank row: round 62)."""
    plt = _pyplot()
    n = len(labels)
    columns = list(labels)
    if other is not None:
        cm, columns = np.column_stack([cm, other]), [*columns, "(other families)"]
    side = 0.35 * min(n, 40)  # past 40 families no tick labels: 202 drew a 7070 px square in 5 s, 14 inches do
    fig, ax = plt.subplots(figsize=(max(5, side), max(4, side)))
    ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:  # beyond that tick labels are unreadable; the CSVs carry the detail
        ax.set_xticks(range(len(columns)), [_tick(f) for f in columns], rotation=90, fontsize=7)
        ax.set_yticks(range(n), [_tick(f) for f in labels], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:  # small matrices: the counts themselves
        for i in range(n):
            for j in range(len(columns)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7)
    ax.set_title(f"{title} (row-normalised)")
    return _save(plt, fig, path)


def per_class_f1(per_class: "pd.DataFrame", path: str | None = None) -> bytes:
    plt = _pyplot()
    order = per_class.sort_values("f1")
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(order))))
    ax.barh(np.arange(len(order)), order["f1"], color="tab:green")  # positions: names cut alike stay apart
    ax.set_yticks(np.arange(len(order)), [_tick(f) for f in order["family"]])
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("Per-family F1")
    ax.tick_params(axis="y", labelsize=7)
    return _save(plt, fig, path)


def search_timeline(histories: dict[str, "pd.DataFrame"], stopped: set[str], metric: str = METRIC,
                    path: str | None = None, cuts: list[float] = ()) -> bytes:
    """The metric of every trial against seconds of search (wall time, so concurrency and queueing show); a
    trial the scheduler stopped early ends in a red x, one that finished in a dot.

    Args:
        histories: trial id -> its reported results with ``seconds`` (of search) and ``metric``.
        stopped: ids of the trials the scheduler (ASHA) stopped.
        cuts: where idle time (no trial running) was left out of ``seconds``: a dotted line each.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    best_x, best_y = [], []
    for trial_id, hist in histories.items():
        if hist.empty or metric not in hist.columns:
            continue
        line, = ax.plot(hist["seconds"], hist[metric], marker="o", ms=2.5, lw=1, label=trial_id[-14:])
        end_x, end_y = hist["seconds"].iloc[-1], hist[metric].iloc[-1]
        if trial_id in stopped:
            ax.plot(end_x, end_y, "x", color="tab:red", ms=9, mew=2)
        else:
            ax.plot(end_x, end_y, "o", color=line.get_color(), ms=6)
        best_x += list(hist["seconds"])
        best_y += list(hist[metric])
    if best_x:  # the best metric found so far across the search
        order = np.argsort(best_x)
        ax.step(np.asarray(best_x)[order], np.maximum.accumulate(np.nan_to_num(np.asarray(best_y)[order], nan=0)),
                where="post", color="black", lw=1.5, alpha=0.6, label="best so far")
    ax.plot([], [], "x", color="tab:red", ms=9, mew=2, label="stopped by scheduler")
    for x in cuts:
        ax.axvline(x, color="gray", ls=":", lw=1)
    ax.set_xlabel("seconds of search" + (" (dotted: idle time between searches left out)" if cuts else ""))
    ax.set_ylabel(metric)
    ax.set_title("Search progress")
    if len(histories) <= 16:
        ax.legend(fontsize=6, loc="lower right")
    return _save(plt, fig, path)
