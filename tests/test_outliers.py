"""Per-family outlier detectors find planted outliers and never empty a family below its minimum."""

import numpy as np
import pytest

from speciesfam.data.outliers import flag, score_families


def family_embeddings(seed=0):
    rng = np.random.default_rng(seed)
    labels, xs, planted = [], [], []
    for fam in range(3):
        centre = rng.normal(size=32)
        x = centre + 0.1 * rng.normal(size=(30, 32))
        x[0] = -centre + 0.1 * rng.normal(size=32)  # the planted outlier of this family
        planted.append(fam * 30)
        labels += [fam] * 30
        xs.append(x)
    x = np.concatenate(xs)
    return np.array(labels), x / np.linalg.norm(x, axis=1, keepdims=True), planted


@pytest.mark.parametrize("detector", ["isolation_forest", "lof", "centroid"])
def test_planted_outliers_score_highest(detector):
    labels, x, planted = family_embeddings()
    scores = score_families(labels, x, detector)
    for fam, idx in enumerate(planted):
        fam_scores = scores[labels == fam]
        assert np.argmax(fam_scores) == 0, (detector, fam)
    removed = flag(scores[labels == 0], contamination=0.04, min_keep=5)
    assert removed[0] and removed.sum() == 1


def test_flag_respects_min_per_family():
    scores = np.arange(10, dtype=float)
    assert flag(scores, 0.4, min_keep=8).sum() == 2
    assert flag(scores, 0.4, min_keep=10).sum() == 0
    assert flag(scores, 0.0, min_keep=1).sum() == 0


def test_zero_shot_probability_and_removal_order():
    from speciesfam.data.outliers import plan_removals, zero_shot_other

    text = np.eye(4)[[0, 1, 2, 3]]  # prompts 0,1 are photos; 2,3 are non-photos
    images = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0], [0.7, 0.7, 0, 0]])
    prob, which = zero_shot_other(images / np.linalg.norm(images, axis=1, keepdims=True), text, n_photo=2)
    assert prob[0] < 0.01 and prob[1] > 0.99 and prob[2] > 0.99 and prob[3] < 0.01
    assert which[1] == 0 and which[2] == 1
    labels = np.zeros(10, int)
    scores = np.arange(10, dtype=float)  # row 9 is the strongest outlier
    zs = np.zeros(10)
    zs[[2, 5]] = [0.9, 0.8]
    removed = plan_removals(labels, scores, contamination=0.1, min_keep=7, zs_prob=zs, threshold=0.5)
    assert np.flatnonzero(removed).tolist() == [2, 5, 9]  # non-photos first, then the top outlier
    assert plan_removals(labels, scores, 0.1, 9, zs, 0.5).sum() == 1  # the family minimum caps it
