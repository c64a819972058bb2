"""Label issues: images whose family label is probably wrong, found by confident learning (cleanlab).

Out-of-fold class probabilities come from a cross-validated logistic regression on the (L2-normalised)
embeddings: every image is scored by a model that never saw it, so a mislabelled image cannot vouch for its
own label. ``cleanlab.filter.find_label_issues`` then estimates the joint distribution of given and true labels
from those probabilities and flags the images it attributes to label noise, ranked by self-confidence (the
probability the model gives the *given* label: low = suspicious).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

ISSUE_COLUMNS = ["path", "given_family", "suggested_family", "self_confidence", "rank"]

# Inverse regularisation of the logistic regression. Embeddings are unit vectors, so the default C=1 shrinks
# every logit towards the class prior: small families then get low probabilities for their own members and
# cleanlab flags them wholesale. benchmarks/clean_quality.py measured C in {1, 10}: see RESULTS.md.
LOGREG_C = 10.0


def out_of_fold_probabilities(labels: np.ndarray, x: np.ndarray, folds: int = 5, seed: int = 0,
                              c: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(classes, (n, k) out-of-fold probabilities) of a stratified k-fold logistic regression.

    The number of folds is capped by the smallest family (every fold needs each family in its training part).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes, y = np.unique(labels, return_inverse=True)
    k = fold_count(labels, folds)
    model = LogisticRegression(C=LOGREG_C if c is None else c, max_iter=2000)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return classes, cross_val_predict(model, x, y, cv=cv, method="predict_proba")


def fold_count(labels: np.ndarray, folds: int) -> int:
    """The folds used: ``folds``, capped by the smallest family's image count."""
    return int(min(folds, np.unique(np.asarray(labels), return_counts=True)[1].min()))


def find_label_issues(paths: np.ndarray, labels: np.ndarray, x: np.ndarray, folds: int = 5,
                      filter_by: str = "prune_by_noise_rate", seed: int = 0, c: float | None = None) -> "pd.DataFrame":
    """The suspected label issues (``ISSUE_COLUMNS``), most suspicious first (``rank`` 1).

    Families of one image are left out (nothing to cross-validate); with fewer than 2 families left the result
    is empty. ``attrs["folds"]``: the folds used (0 when nothing was checked); ``attrs["left_out"]``: the
    one-image families left out.
    """
    import pandas as pd

    labels = np.asarray(labels).astype(str)
    fams, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, fams[counts >= 2])  # a family of one image cannot be cross-validated: left out
    if len(fams[counts >= 2]) < 2:
        none = pd.DataFrame(columns=ISSUE_COLUMNS)
        none.attrs["folds"] = 0
        return none
    from cleanlab.filter import find_label_issues as cl_find  # only when there is something to check

    paths, labels, x = np.asarray(paths)[keep], labels[keep], x[keep]
    classes, probs = out_of_fold_probabilities(labels, x, folds=folds, seed=seed, c=c)
    y = np.searchsorted(classes, labels)
    # n_jobs=1: cleanlab's process pool forks, and a fork of a process with Ray's threads can deadlock (a test run
    # hung in the pool's shutdown); 12,000 x 202: 0.30 s in one process, 0.29 s in two
    ranked = cl_find(labels=y, pred_probs=probs, filter_by=filter_by, return_indices_ranked_by="self_confidence",
                     n_jobs=1)
    ranked = np.asarray(ranked, dtype=int)
    other = probs[ranked].copy()
    other[np.arange(len(ranked)), y[ranked]] = -1.0  # suggest the most likely family other than the given one
    found = pd.DataFrame({
        "path": np.asarray(paths)[ranked],
        "given_family": labels[ranked],
        "suggested_family": classes[other.argmax(axis=1)] if len(ranked) else [],
        "self_confidence": probs[ranked, y[ranked]],
        "rank": np.arange(1, len(ranked) + 1),
    }, columns=ISSUE_COLUMNS)
    found.attrs.update(folds=fold_count(labels, folds), left_out=int((counts < 2).sum()))
    return found
