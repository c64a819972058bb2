"""Per-family outlier detectors on L2-normalised embeddings, and the policy that turns scores into removals.

Each detector maps an (n, d) array to n scores, higher = more unusual for its family. ``plan_removals``
removes, per family, either every image whose robust z-score (median/MAD units) exceeds a threshold
(``removal="threshold"``, the default: calibrated, so a clean family loses nothing and a dirty one loses all
its outliers) or the top ``contamination`` share (``removal="quota"``); never taking a family below
``min_per_family`` images. benchmarks/clean_quality.py measures both.
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
    """Cosine distance to the family's median embedding (``plan_removals`` takes its robust z-score, so
    removal.csv shows both: the distance as ``score``, the z as ``z``; it held the z twice)."""
    return 1.0 - x @ median_direction(x)


def median_direction(x: np.ndarray) -> np.ndarray:
    """The unit vector along the element-wise median of a family's embeddings (its robust centre)."""
    centre = np.median(x, axis=0)
    return centre / max(float(np.linalg.norm(centre)), 1e-12)


def centroid_z_against(labels: np.ndarray, x: np.ndarray, rows: np.ndarray, families: np.ndarray) -> np.ndarray:
    """Robust z-score of each ``x[rows[k]]``'s cosine distance to the median embedding of ``families[k]``,
    in that family's own median/MAD units: how well an image would fit a family it is not labelled with."""
    out = np.full(len(rows), np.inf)
    for fam in np.unique(families):
        members = x[labels == fam]
        if len(members) < 3:
            continue
        centre = median_direction(members)
        med, scale = location_scale(1.0 - members @ centre)
        k = np.flatnonzero(families == fam)
        out[k] = (1.0 - x[rows[k]] @ centre - med) / scale
    return out


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
            scores[idx] = _family_scores(fn, detector, lab, x[idx], seed)
    return scores


def _family_scores(fn, detector: str, family: str, x: np.ndarray, seed: int) -> np.ndarray:
    """``fn``'s scores of one family, checked: a user's ``module:attr`` that fails or gives other than one
    finite score per image stops clean in one line naming the family."""
    from ..errors import SpeciesfamError

    where = f"detector={detector!r} on family {str(family)!r} ({len(x)} embeddings of {x.shape[1]} values)"
    try:
        out = np.asarray(fn(x, seed=seed), dtype=np.float64)
    except Exception as err:
        if ":" not in detector:
            raise  # a registered detector failing is a bug: keep its traceback
        raise SpeciesfamError(f"{where} failed: {type(err).__name__}: {err}") from None
    if out.shape != (len(x),) or not np.isfinite(out).all():
        raise SpeciesfamError(f"{where} gave {'non-finite scores' if out.shape == (len(x),) else f'shape {out.shape}'}"
                              f"; a detector gives one finite score per embedding")
    return out


# Zero-shot prompts: an image is a non-photo when the CLIP softmax over all prompts puts more than the
# threshold on the OTHER prompts together.
PHOTO_PROMPTS = ("a photo of an animal", "a photo of a plant", "a photo of a fungus", "a photo of an insect")
OTHER_PROMPTS = ("a map", "a drawing", "a page of text", "a specimen label", "a diagram", "a logo")


def zero_shot_other(image_emb: np.ndarray, text_emb: np.ndarray, n_photo: int) -> tuple[np.ndarray, np.ndarray]:
    """(probability of a non-photo prompt, index of the most likely non-photo prompt) per image.

    Embeddings are L2-normalised; 100 is CLIP's logit scale."""
    logits = 100.0 * image_emb @ text_emb.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    other = probs[:, n_photo:]
    return other.sum(axis=1), other.argmax(axis=1)


def robust_z(scores: np.ndarray) -> np.ndarray:
    """(score - median) / (1.4826 * MAD): a z-score that the outliers themselves barely move.

    1.4826 makes the MAD a consistent estimate of the standard deviation for normal data; the floor keeps a
    family of identical images from dividing by zero."""
    med, scale = location_scale(scores)
    return (scores - med) / scale


def location_scale(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 * MAD floored at 1e-6): robust_z's units."""
    med = float(np.median(values))
    return med, max(1.4826 * float(np.median(np.abs(values - med))), 1e-6)


def plan_removals(labels: np.ndarray, scores: np.ndarray, *, removal: str = "threshold", outlier_z: float = 5.0,
                  contamination: float = 0.05, min_keep: int = 6, zs_prob: np.ndarray | None = None,
                  zs_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Rows to remove, and each row's robust z-score within its family.

    Per family: zero-shot non-photos first (most certain first), then the outliers of the ``removal``
    policy (``threshold``: robust z-score > ``outlier_z``; ``quota``: the top ``contamination`` share), most
    unusual first; the list is cut so that the family keeps at least ``min_keep`` rows."""
    remove = np.zeros(len(labels), dtype=bool)
    z = np.zeros(len(labels), dtype=np.float64)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        z[idx] = robust_z(scores[idx])
    hit = rule_hits(labels, scores, z, removal=removal, outlier_z=outlier_z, contamination=contamination)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        outliers = idx[hit[idx]]
        order = list(outliers[np.argsort(-scores[outliers], kind="stable")])
        if zs_prob is not None:
            nonphoto = idx[zs_prob[idx] > zs_threshold]
            nonphoto = list(nonphoto[np.argsort(-zs_prob[nonphoto], kind="stable")])
            order = nonphoto + [i for i in order if i not in set(nonphoto)]
        remove[order[: max(0, len(idx) - min_keep)]] = True
    return remove, z


def rule_hits(labels: np.ndarray, scores: np.ndarray, z: np.ndarray, *, removal: str = "threshold",
              outlier_z: float = 5.0, contamination: float = 0.05) -> np.ndarray:
    """The rows the outlier rule takes before any floor: robust z-score > ``outlier_z`` (``threshold``), or the
    top ``contamination`` share of each family's scores (``quota``). ``plan_removals`` cuts them to keep
    ``min_keep`` per family; clean says which of them that floor kept."""
    if removal != "quota":
        return z > outlier_z
    hit = np.zeros(len(labels), dtype=bool)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        hit[idx[flag(scores[idx], contamination, 0)]] = True
    return hit
