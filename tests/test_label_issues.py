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


def test_outliers_the_rule_took_but_kept_as_label_issues_are_counted_and_said(tmp_path):
    """With --removal quota, clean.md said 'the top 49% scores of every family' while half the families kept all
    their images: the outliers cleanlab also flagged, and which fit their suggested family, were put back unsaid
    (hostile tester)."""
    import pandas as pd

    from speciesfam import stages, summaries
    from speciesfam.config import CleanConfig
    from speciesfam.data.clean import label_issue_table

    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 20 + ["b"] * 20)
    x = np.concatenate([rng.normal(size=(20, 8)) + 4 * np.eye(8)[0], rng.normal(size=(20, 8)) - 4 * np.eye(8)[0]])
    labels[[0, 1]] = "b"  # two a-images filed under b: the outlier rule takes them out of b
    emb = pd.DataFrame({"path": [f"img{i}" for i in range(40)], "label": labels, "detector": "centroid",
                        "removed": [i in (0, 1, 39) for i in range(40)], "reason": ""})
    issues = label_issue_table(emb, x, CleanConfig(removal="quota"))
    assert {"img0", "img1"} <= set(issues["path"]) and len(issues.attrs["outliers_kept"]) == 2
    assert not emb.loc[[0, 1], "removed"].any() and emb.loc[39, "removed"]  # kept; b's own outlier still out
    # said in the summary line and in clean.md (run_clean records attrs["outliers_kept"] in its summary)
    (tmp_path / "img").mkdir()
    pd.DataFrame({"path": emb["path"], "label": labels, "status": "ok"}).to_parquet(tmp_path / "clean_manifest.parquet")
    issues.to_csv(tmp_path / "label_issues.csv", index=False)
    stages.finish(str(tmp_path), "clean", summary={"outliers_kept_as_label_issues": 2})
    assert summaries.summary_line(str(tmp_path), "clean").endswith(
        f"; {len(issues)} label issues flagged (2 of them outliers kept: each fits its suggested family)")
    from speciesfam.data.clean_report import clean_report

    manifest = pd.DataFrame({"path": emb["path"], "label": labels, "status": "ok", "split": "train"})
    removed = pd.DataFrame(columns=["path", "family", "score", "z", "detector", "reason"])
    pairs = pd.DataFrame(columns=["path_a", "path_b", "similarity"])
    summary = {"outliers_removed": 1, "outliers_kept_as_label_issues": 2, "label_issues_dropped": 0,
               "near_duplicates": {"pairs": 0, "groups": 0, "moved_to_group_split": 0, "dropped": 0}}
    md = clean_report(manifest, manifest, removed, issues, pairs, CleanConfig(removal="quota", zero_shot=False),
                      summary)
    assert "- outliers: 1 removed; rule quota: the top 5% centroid scores of every family (min 6 kept per family); " \
           "2 more that the rule took are kept as label issues (cleanlab flagged them too, and each sits inside " \
           "its suggested family: see Label issues)\n" in md, md[:800]


def test_a_label_issue_removed_already_by_zero_shot_keeps_its_removal_reason():
    """--zero-shot --drop-label-issues: an image zero-shot took out that cleanlab also flagged, in a family at the
    --min-per-family floor, was given the reason 'kept, though label issue ...' while removed (docs auditor)."""
    import pandas as pd

    from speciesfam.data.clean import drop_label_issues

    emb = pd.DataFrame({"path": ["a", "b", "c", "d"], "label": ["X", "X", "X", "Y"],
                        "removed": [True, False, False, False], "detector": ["zero_shot", "", "", ""],
                        "reason": ["zero-shot: looks like 'a map' (p=0.91)", "", "", ""]})
    issues = pd.DataFrame({"rank": [1, 2], "path": ["a", "b"], "given_family": ["X", "X"],
                           "suggested_family": ["Y", "Y"], "self_confidence": [0.1, 0.2]})
    kept = drop_label_issues(emb, issues, min_keep=2)  # X keeps 2 of its 3: b stays, said; a was out already
    assert kept == {"b": "label issue: given X, looks like Y (self-confidence 0.20, rank 2)"}
    assert emb.loc[0, ["removed", "detector", "reason"]].tolist() == [True, "zero_shot",
                                                                       "zero-shot: looks like 'a map' (p=0.91)"]
    assert not emb.loc[1, "removed"]
