"""Planted dirt of each kind is found through the whole Ray pipeline (catalog -> clean), open_clip ViT-S-32 with
random weights: planted outliers (a map, a specimen label, a drawing), a swapped label and two re-encoded,
resized copies. Every removed or flagged row has a reason; no family falls below its minimum; no
near-duplicate group straddles train/val/test."""

import io
import json

import pandas as pd
import pytest
from PIL import Image

from speciesfam import layout
from speciesfam.config import CleanConfig
from speciesfam.data.catalog import run_catalog
from speciesfam.data.clean import run_clean

# Random weights make every embedding alike (median cosine 0.5, top 1% of pairs > 0.99): only a near-exact copy
# clears 0.999 (the planted copies measured 0.9995 and 0.9998, the next pair 0.998).
CFG = dict(model="ViT-S-32", pretrained=None, batch_size=16, min_per_family=6, near_duplicate_threshold=0.999)
SWAP = ("Felidae/felidae_005.jpg", "Ranidae/swap_felidae_005.jpg")
COPIES = [("Felidae/felidae_002.jpg", "Felidae/copy_felidae_002.jpg"),
          ("Salmonidae/salmonidae_003.jpg", "Salmonidae/copy_salmonidae_003.jpg")]


@pytest.fixture(scope="module")
def dirty(tmp_path_factory, ray_session):
    from speciesfam.data.synthetic import make_collection

    root = tmp_path_factory.mktemp("dirty")
    images = root / "images"
    planted = make_collection(images, counts={"Felidae": 16, "Ranidae": 14, "Salmonidae": 12}, grayscale=0,
                              extras=False, size=64, seed=3)
    (images / SWAP[0]).rename(images / SWAP[1])  # a Felidae image filed under Ranidae
    for src, dst in COPIES:  # 80% size, JPEG quality 70: a re-upload
        img = Image.open(images / src).convert("RGB")
        buf = io.BytesIO()
        img.resize((int(img.width * 0.8), int(img.height * 0.8))).save(buf, "JPEG", quality=70)
        (images / dst).write_bytes(buf.getvalue())
    run = root / "run"
    manifest = run_catalog(str(images), str(run))
    # Put each copy in another split than its original, so clean has to move it.
    for src, dst in COPIES:
        s = manifest.loc[manifest["path"].str.endswith(src), "split"].iloc[0]
        manifest.loc[manifest["path"].str.endswith(dst), "split"] = "test" if s != "test" else "train"
    manifest.to_parquet(run / layout.MANIFEST)
    from speciesfam import stages  # recorded as catalog's output: an edited table is refused (a stopped catalog)

    stages.finish(str(run), "catalog", **{k: v for k, v in stages.load(str(run), "catalog").items()
                                          if k in ("config", "summary", "run_id")})
    return run, manifest, planted


def rel(path):
    return "/".join(path.rsplit("/", 2)[-2:])


def test_default_clean_finds_each_kind_with_reasons(dirty):
    run, manifest, planted = dirty
    cleaned = run_clean(str(run), CleanConfig(**CFG, dedupe="near"))
    assert len(cleaned) == len(manifest)
    status = dict(zip(cleaned["path"].map(rel), cleaned["status"]))
    # Outliers: removed by the calibrated threshold, each with its score and rule.
    assert all(status[p] == "removed" for p in planted["outliers"]), status
    removed = pd.read_csv(run / layout.REMOVED)
    assert set(planted["outliers"]) <= set(removed["path"].map(rel))
    assert removed["reason"].str.len().gt(0).all() and removed["z"].notna().all()
    # Label issue: reported with the family it came from, kept (report only by default).
    issues = pd.read_csv(run / layout.LABEL_ISSUES)
    assert list(issues.columns) == ["path", "given_family", "suggested_family", "self_confidence", "rank"]
    hit = issues[issues["path"].map(rel) == SWAP[1]]
    assert len(hit) == 1 and hit["suggested_family"].iloc[0] == "Felidae" and status[SWAP[1]] == "ok"
    assert (issues["given_family"] != issues["suggested_family"]).all()
    # Near-duplicates: both pairs listed; the smaller copy dropped as a duplicate of its original.
    pairs = pd.read_csv(run / layout.NEAR_DUPLICATES)
    found = {frozenset((rel(a), rel(b))) for a, b in zip(pairs["path_a"], pairs["path_b"])}
    assert {frozenset(c) for c in COPIES} <= found and (pairs["similarity"] >= 0.999).all()
    for src, dst in COPIES:
        assert status[src] == "ok" and status[dst] == "duplicate"
        row = cleaned[cleaned["path"].map(rel) == dst].iloc[0]
        assert rel(row["duplicate_of"]) == src and row["reason"].startswith("near-duplicate of")
    # No group straddles splits (the fixture put each copy in another split than its original).
    grouped = cleaned[cleaned["near_duplicate_group"] >= 0]
    assert len(grouped) >= 4 and (grouped.groupby("near_duplicate_group")["split"].nunique() == 1).all()
    # Every row that is not usable says why; every family keeps its minimum.
    assert cleaned.loc[cleaned["status"] != "ok", "reason"].fillna("").str.len().gt(0).all()
    assert (cleaned[cleaned["status"] == "ok"].groupby("label").size() >= CFG["min_per_family"]).all()
    # Reports: all three kinds in clean.md, galleries and the stage record.
    md = (run / layout.CLEAN_MD).read_text()
    assert all(s in md for s in ("## Taken out", "## Label issues", "## Near-duplicates", "robust z-score"))
    gallery = {p.name for p in (run / layout.GALLERY).glob("*.png")}
    assert {"label_issues.png", "near_duplicates.png"} <= gallery
    assert {f"{layout.label_slug(f)}.png" for f in ("Felidae", "Ranidae", "Salmonidae")} <= gallery
    summary = json.loads((run / layout.STAGES / "clean.json").read_text())["summary"]
    assert summary["outlier_rule"].startswith("threshold") and summary["near_duplicates"]["dropped"] == 2
    assert summary["label_issues"] == len(issues)
    # an outlier kept as a label issue says so, with its z-score and what removes it (ok, no reason: round 62)
    relabeled = cleaned["reason"].fillna("").str.match(r"kept as a label issue: an outlier of its family \(robust "
                                                       r"z-score [\d.]+\) that fits '.+': fix its label, or "
                                                       r"--drop-label-issues removes it$")
    assert relabeled.sum() == summary["outliers_kept_as_label_issues"] > 0
    assert (cleaned.loc[relabeled, "status"] == "ok").all() and cleaned.loc[relabeled, "label_issue"].all()


def test_drop_label_issues_and_the_family_minimum(dirty):
    run, manifest, planted = dirty
    cleaned = run_clean(str(run), CleanConfig(**CFG, drop_label_issues=True))  # embeddings cached: fast
    row = cleaned[cleaned["path"].map(rel) == SWAP[1]].iloc[0]
    assert row["status"] == "removed" and row["reason"].startswith("label issue: given Ranidae, looks like Felidae")
    removed = pd.read_csv(run / layout.REMOVED)
    assert "cleanlab" in set(removed["detector"])
    # A minimum above some family sizes: nothing is removed from those, the others keep at least the minimum.
    cleaned = run_clean(str(run), CleanConfig(**{**CFG, "min_per_family": 14}, drop_label_issues=True))
    before = manifest[manifest["status"] == "ok"].groupby("label").size()
    after = cleaned[cleaned["status"] == "ok"].groupby("label").size()
    assert (after >= before.clip(upper=14)).all(), (before, after)
    # each label issue the floor kept is said (status ok with an empty reason: round 39), counted and listed
    issues = pd.read_csv(run / layout.LABEL_ISSUES)
    flagged = cleaned[cleaned["path"].isin(issues["path"]) & (cleaned["status"] == "ok")]
    assert len(flagged), "the floor kept no label issue: the test shows nothing"
    assert flagged["reason"].str.contains(r"label issue: given .+, looks like .+: --min-per-family 14 keeps that "
                                          r"many of its family$").all(), flagged["reason"].tolist()
    summary = json.loads((run / layout.STAGES / "clean.json").read_text())["summary"]
    assert summary["label_issues_kept_by_floor"] == len(flagged)
    md = (run / layout.CLEAN_MD).read_text()
    assert f"; {len(flagged)} more are kept, so that each family keeps --min-per-family 14 images" in md
    assert "## Kept by --min-per-family" in md and all(p in md for p in flagged["path"])
    # every image the floor kept counted once (an outlier that is also a kept label issue was counted twice), and
    # no outlier 'kept as a label issue' that --drop-label-issues then removed (round 40)
    floor_kept = (cleaned["status"] == "ok") & cleaned["reason"].fillna("").str.startswith("kept, though")
    assert summary["outliers_kept_by_floor"] + summary["label_issues_kept_by_floor"] == floor_kept.sum()
    still = (cleaned["status"] == "ok") & cleaned["label_issue"].astype(bool)
    assert summary["outliers_kept_as_label_issues"] <= still.sum()
