"""Clean that takes images out of a family (near-duplicate drops, outliers, files gone since catalog): never below
the family's minimum, a copy under another family kept, and a family left with no image in a split named with
the cause (hostile tester, 2026-12-03)."""

import os

import numpy as np
import pandas as pd
from PIL import Image

from speciesfam import layout
from speciesfam.config import CleanConfig
from speciesfam.data.catalog import run_catalog
from speciesfam.data.clean import run_clean

from noise_families import HIST, noise_families


def test_near_dedupe_never_takes_a_family_below_its_minimum(tmp_path, ray_session):
    """`--dedupe near` left a family of 12 with 1 image although --min-per-family promised 6."""
    root = tmp_path / "img"
    noise_families(root, {"B": 8})
    (root / "A").mkdir()
    rng = np.random.default_rng(1)
    for k in range(12):  # greys a little noise apart (other bytes, the same colours): one near-duplicate group
        grey = 100 + rng.integers(0, 3, (32, 32, 3))
        Image.fromarray(grey.astype(np.uint8)).save(root / "A" / f"{k}.png")
    run_catalog(str(root), str(tmp_path / "run"))
    cleaned = run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, dedupe="near", min_per_family=6,
                                                           near_duplicate_threshold=0.99, contamination=0.0,
                                                           removal="quota", label_issues=False))
    a = cleaned[cleaned["label"] == "A"]
    assert (a["status"] == layout.OK).sum() == 6 and (a["status"] == layout.DUPLICATE).sum() == 6
    assert a.loc[a["status"] == layout.DUPLICATE, "reason"].str.startswith("near-duplicate of").all()


def test_near_dedupe_keeps_an_image_and_its_copy_under_another_family(tmp_path, ray_session):
    """`--dedupe near` dropped a correctly labelled original as a near-duplicate of its re-encoded copy filed under
    another family (the copy had as many pixels and the first path), so the mislabelled copy was trained on."""
    root = tmp_path / "img"
    rng = np.random.default_rng(2)
    for family in ("A", "B"):
        (root / family).mkdir(parents=True)
        for k in range(8):  # a colour each (histograms far apart), a little noise
            base = rng.integers(20, 235, 3)
            pixels = base + rng.integers(-3, 4, (32, 32, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(root / family / f"{k}.png")
    copy = np.asarray(Image.open(root / "A" / "5.png")).copy()
    copy[0, 0] = 0  # other bytes, the same image to the eye and to the embedder
    Image.fromarray(copy).save(root / "B" / "0-copy.png")
    run_catalog(str(root), str(tmp_path / "run"))
    cleaned = run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, dedupe="near", min_per_family=2,
                                                           near_duplicate_threshold=0.99, contamination=0.0,
                                                           removal="quota", label_issues=False))
    status = cleaned.set_index(cleaned["path"].map(lambda p: os.path.relpath(p, root)))["status"]
    assert status["A/5.png"] == status["B/0-copy.png"] == layout.OK
    pairs = pd.read_csv(tmp_path / "run" / layout.NEAR_DUPLICATES)
    across = pairs[pairs["family_a"] != pairs["family_b"]]
    assert {"A/5.png", "B/0-copy.png"} <= set(across["path_a"].map(lambda p: os.path.relpath(p, root))) | set(
        across["path_b"].map(lambda p: os.path.relpath(p, root)))
    assert f"{len(across)} pair{'s' * (len(across) > 1)} of two families (never dropped" in \
        (tmp_path / "run" / "clean.md").read_text()


def test_a_family_that_lost_every_train_image_is_named():
    """A family ended with train 0, val 1, test 1 and no warning: only val and test were checked."""
    import pandas as pd

    from speciesfam.data.clean import split_lost

    before = pd.DataFrame({"label": ["Tiny"] * 3 + ["Big"] * 3, "split": ["train", "val", "test"] * 2,
                           "status": layout.OK, "reason": ""})
    after = before.assign(status=[layout.REMOVED_STATUS] + [layout.OK] * 5, reason=["outlier: z 9.1"] + [""] * 5)
    assert split_lost(before, after) == {"train": ["Tiny"]}
    # its cause, from what became of its rows there: removals were blamed on near-duplicates (round 37)
    from speciesfam.data.clean import lost_cause

    nothing = pd.Series(False, index=before.index)
    assert lost_cause("train", {"Tiny"}, before, after, nothing) == \
        {"outlier removals (raise --outlier-z, or --min-per-family)": ["Tiny"]}
    # a label issue's removal: the outliers' setting did not apply to it (round 48)
    issue = after.assign(reason=["label issue: given Tiny, looks like Big"] + [""] * 5)
    assert lost_cause("train", {"Tiny"}, before, issue, nothing) == \
        {"label-issue removals (leave out --drop-label-issues, or raise --min-per-family)": ["Tiny"]}
    dropped = before.assign(status=[layout.DUPLICATE] + [layout.OK] * 5)
    assert list(lost_cause("train", {"Tiny"}, before, dropped, nothing))[0].startswith("near-duplicate drops (raise ")
    moved = before.assign(split=["val", "val", "test", "train", "val", "test"])
    assert list(lost_cause("train", {"Tiny"}, before, moved, nothing))[0].startswith("near-duplicate groups moved")
    # moved with its group, then dropped: moved is what took it (--dedupe none would not have kept it)
    both = moved.assign(status=[layout.DUPLICATE] + [layout.OK] * 5)
    assert list(lost_cause("train", {"Tiny"}, before, both, nothing))[0].startswith("near-duplicate groups moved")
    # two families, two causes: each named with its own, not both with both (round 38)
    gone = nothing.copy()
    gone.iloc[3] = True
    two = after.assign(status=[layout.REMOVED_STATUS, "ok", "ok", "unreadable", "ok", "ok"])
    causes = lost_cause("train", {"Tiny", "Big"}, before, two, gone)
    assert causes == {"images gone, changed or undecodable since catalog (re-run catalog)": ["Big"],
                      "outlier removals (raise --outlier-z, or --min-per-family)": ["Tiny"]}
    from speciesfam.data.clean_report import lost_lines

    assert lost_lines({"split_lost": {"train": ["Big", "Tiny"]}, "split_lost_cause": {"train": causes}}) == [
        "2 families have no train images left ('Big', 'Tiny'): images gone, changed or undecodable since catalog "
        "(re-run catalog) took them from 'Big'; outlier removals (raise --outlier-z, or "
        "--min-per-family) took them from 'Tiny', so no model learns them"]


def test_a_family_whose_train_images_are_gone_is_blamed_on_the_files_and_the_folds_said_are_those_used(
        tmp_path, ray_session, capsys):
    """Tiny's train image deleted after catalog: clean blamed its own removals and near-duplicate groups and
    advised --near-duplicate-threshold; clean.md said '1 families' and a 1000-fold regression that ran 2-fold
    (hostile tester)."""
    from speciesfam.config import CatalogConfig

    noise_families(tmp_path / "img", {"A": 8, "B": 8, "Tiny": 3})
    manifest = run_catalog(str(tmp_path / "img"), str(tmp_path / "run"), CatalogConfig(min_images=3))
    tiny = manifest[(manifest["label"] == "Tiny") & (manifest["split"] == "train")]
    for path in tiny["path"]:
        os.unlink(path)
    capsys.readouterr()
    run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, min_per_family=1, label_issue_folds=1000,
                                             near_duplicate_threshold=0.9999))
    said = capsys.readouterr().out
    assert "clean: warning: 1 family has no train images left ('Tiny'): images gone, changed or undecodable " \
        "since catalog (re-run catalog) took them all, so no model learns them; see clean.md" in said, said
    assert "near-duplicate" not in said.split("clean: warning:")[1]
    md = (tmp_path / "run" / "clean.md").read_text()
    assert "**warning**: 1 family has no train images left (`Tiny`): images gone, changed or undecodable since " \
        "catalog (re-run catalog) took them all, so no model learns them" in md  # it said 'lost in cleaning'
    assert "a 2-fold logistic regression (1000 folds asked for; capped at the smallest checked family's 2 images)" \
        in md
    from speciesfam.tune.checks import check_learnable

    cleaned = pd.read_parquet(tmp_path / "run" / layout.CLEAN_MANIFEST)
    # what tune says before its search: it trained such a head unsaid
    assert check_learnable(cleaned, "m") == ["A", "B", "Tiny"]
    assert capsys.readouterr().out == ("tune: warning: 1 family has no usable train image ('Tiny'): no model learns "
                                       "it; see clean.md, or re-run catalog (and clean) to split its images anew\n")
