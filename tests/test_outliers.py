"""Per-family outlier detectors find planted outliers; the removal policies never empty a family below its minimum."""

import numpy as np
import pytest

from speciesfam.data.outliers import centroid_z_against, flag, plan_removals, robust_z, score_families


def family_embeddings(seed=0, n=30):
    rng = np.random.default_rng(seed)
    labels, xs, planted = [], [], []
    for fam in range(3):
        centre = rng.normal(size=32)
        x = centre + 0.1 * rng.normal(size=(n, 32))
        x[0] = -centre + 0.1 * rng.normal(size=32)  # the planted outlier of this family
        planted.append(fam * n)
        labels += [fam] * n
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


@pytest.mark.parametrize("n", [8, 14, 120])
def test_threshold_removes_exactly_the_planted_outliers_at_any_family_size(n):
    """The calibrated rule takes the one outlier from a family of 8 and of 120 alike; a 5% quota takes
    nothing from the small family and good images from the large one."""
    labels, x, planted = family_embeddings(n=n)
    scores = score_families(labels, x, "centroid")
    removed, z = plan_removals(labels, scores, removal="threshold", outlier_z=5.0, min_keep=3)
    assert np.flatnonzero(removed).tolist() == planted
    assert (z[planted] > 5).all()
    quota, _ = plan_removals(labels, scores, removal="quota", contamination=0.05, min_keep=3)
    assert quota.sum() == 3 * int(np.floor(n * 0.05))


def test_robust_z_ignores_the_outliers_themselves():
    z = robust_z(np.array([1.0, 1.1, 0.9, 1.05, 0.95, 50.0, 60.0]))
    assert abs(z[0]) < 1 and z[5] > 100 and z[6] > z[5]
    assert np.isfinite(robust_z(np.ones(5))).all()  # identical scores: no division by zero


def test_policies_never_empty_a_family_below_its_minimum():
    labels = np.zeros(10, int)
    scores = np.r_[np.zeros(6), 100.0, 200.0, 300.0, 400.0]  # 4 extreme outliers
    removed, _ = plan_removals(labels, scores, removal="threshold", outlier_z=5.0, min_keep=8)
    assert np.flatnonzero(removed).tolist() == [8, 9]  # the two most extreme, then the minimum stops it
    assert plan_removals(labels, scores, removal="threshold", min_keep=10)[0].sum() == 0
    assert plan_removals(labels, scores, removal="quota", contamination=0.4, min_keep=7)[0].sum() == 3


def test_flag_respects_min_per_family():
    scores = np.arange(10, dtype=float)
    assert flag(scores, 0.4, min_keep=8).sum() == 2
    assert flag(scores, 0.4, min_keep=10).sum() == 0
    assert flag(scores, 0.0, min_keep=1).sum() == 0


def test_fit_to_another_family():
    labels, x, planted = family_embeddings()
    rows = np.array([planted[0], 5, 35])  # family 0's outlier, a member of family 0, a member of family 1
    z = centroid_z_against(labels, x, rows, np.array([1, 1, 1]))
    assert z[0] > 5 and z[1] > 5 and z[2] < 5


def test_zero_shot_probability_and_removal_order():
    from speciesfam.data.outliers import zero_shot_other

    text = np.eye(4)[[0, 1, 2, 3]]  # prompts 0,1 are photos; 2,3 are non-photos
    images = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0], [0.7, 0.7, 0, 0]])
    prob, which = zero_shot_other(images / np.linalg.norm(images, axis=1, keepdims=True), text, n_photo=2)
    assert prob[0] < 0.01 and prob[1] > 0.99 and prob[2] > 0.99 and prob[3] < 0.01
    assert which[1] == 0 and which[2] == 1
    labels = np.zeros(10, int)
    scores = np.arange(10, dtype=float)  # row 9 is the strongest outlier
    zs = np.zeros(10)
    zs[[2, 5]] = [0.9, 0.8]
    removed, _ = plan_removals(labels, scores, removal="quota", contamination=0.1, min_keep=7, zs_prob=zs)
    assert np.flatnonzero(removed).tolist() == [2, 5, 9]  # non-photos first, then the top outlier
    assert plan_removals(labels, scores, removal="quota", contamination=0.1, min_keep=9, zs_prob=zs)[0].sum() == 1


def test_an_outliers_reason_never_reads_its_z_at_the_threshold():
    """'robust z-score 5.0 > 5' was written of an image at z 5.04 (hostile tester round 36)."""
    from speciesfam.data.clean import above

    assert [above(z, 5) for z in (5.04, 5.0000001, 7.26, 4.2, float("inf"))] == \
        ["5.04", "5.0000001", "7.3", "4.2", "inf"]
