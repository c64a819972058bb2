"""Label issues (cleanlab on out-of-fold logistic-regression probabilities) find planted label swaps."""

import numpy as np

from speciesfam.data.label_issues import ISSUE_COLUMNS, find_label_issues


def test_swapped_labels_are_found_with_their_true_family():
    rng = np.random.default_rng(0)
    sizes = {"a": 60, "b": 30, "c": 12}  # imbalanced, like real collections
    centres = {k: rng.normal(size=24) for k in sizes}
    labels = np.concatenate([[k] * n for k, n in sizes.items()])
    true = labels.copy()
    x = np.stack([centres[k] + 0.3 * rng.normal(size=24) for k in labels])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    swapped = [0, 1, 2, 60, 61, 90]
    labels[swapped] = ["b", "c", "b", "a", "c", "a"]
    issues = find_label_issues(np.array([f"img{i}" for i in range(len(x))]), labels, x)
    assert list(issues.columns) == ISSUE_COLUMNS
    found = {int(p[3:]) for p in issues["path"]}
    assert set(swapped) <= found and len(found) <= len(swapped) + 3
    truth = {f"img{i}": true[i] for i in swapped}
    hits = issues[issues["path"].isin(truth)]
    assert (hits["suggested_family"] == hits["path"].map(truth)).all()
    assert (issues["given_family"] != issues["suggested_family"]).all()
    assert issues["rank"].tolist() == list(range(1, len(issues) + 1))
    assert issues["self_confidence"].is_monotonic_increasing  # ranked by self-confidence, lowest first


def test_too_few_images_to_cross_validate_gives_an_empty_table():
    x = np.eye(3)
    assert find_label_issues(np.array(["p", "q", "r"]), np.array(["a", "a", "b"]), x).empty


def test_a_family_of_one_image_does_not_switch_the_others_off():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(10, 8)) + 3 * np.eye(8)[0], rng.normal(size=(10, 8)) - 3 * np.eye(8)[0],
                        rng.normal(size=(1, 8))])
    labels = np.array(["a"] * 10 + ["b"] * 10 + ["lonely"])
    labels[0] = "b"  # a swap
    issues = find_label_issues(np.array([f"img{i}" for i in range(21)]), labels, x)
    assert "img0" in set(issues["path"]) and "img20" not in set(issues["path"])
    # clean.md says which folds ran and that a family was left out (it read 'capped at the smallest family's 9
    # images' beside a family of one; hostile tester)
    from speciesfam.data.clean_report import folds_text

    assert (issues.attrs["folds"], issues.attrs["left_out"]) == (5, 1)
    assert folds_text(1000, 9, 1) == ("a 9-fold logistic regression (1000 folds asked for; capped at the smallest "
                                      "checked family's 9 images); 1 family of one image left out (nothing to "
                                      "cross-validate)")
