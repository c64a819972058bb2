"""Per-family outlier detectors on L2-normalised embeddings.

Each detector maps an (n, d) array to n scores, higher = more unusual for its family. ``flag`` turns
scores into removals: the top ``contamination`` fraction of each family, never taking a family below
``min_per_family`` images.
"""

from __future__ import annotations

import numpy as np

from ..registry import DETECTORS


@DETECTORS.register("isolation_forest")
def isolation_forest(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    return -IsolationForest(n_estimators=200, random_state=seed).fit(x).score_samples(x)


@DETECTORS.register("lof")
def local_outlier_factor(x: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.neighbors import LocalOutlierFactor

    lof = LocalOutlierFactor(n_neighbors=max(2, min(20, len(x) - 1))).fit(x)
    return -lof.negative_outlier_factor_


@DETECTORS.register("centroid")
def centroid_distance(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Robust z-score of the cosine distance to the family's median embedding."""
    centre = np.median(x, axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    dist = 1.0 - x @ centre
    mad = 1.4826 * np.median(np.abs(dist - np.median(dist)))
    return (dist - np.median(dist)) / max(mad, 1e-6)


def flag(scores: np.ndarray, contamination: float, min_keep: int) -> np.ndarray:
    """Boolean mask of the rows to remove: the highest-scoring ``contamination`` share, capped so that at
    least ``min_keep`` rows stay."""
    n = len(scores)
    n_remove = min(int(np.floor(n * contamination + 1e-9)), max(0, n - min_keep))
    mask = np.zeros(n, dtype=bool)
    if n_remove > 0:
        mask[np.argsort(-scores, kind="stable")[:n_remove]] = True
    return mask


def score_families(labels: np.ndarray, x: np.ndarray, detector: str, seed: int = 0) -> np.ndarray:
    """Scores of every row against its own family (families of < 3 rows score 0: nothing to compare)."""
    fn = DETECTORS.get(detector)
    scores = np.zeros(len(labels), dtype=np.float64)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) >= 3:
            scores[idx] = fn(x[idx], seed=seed)
    return scores
