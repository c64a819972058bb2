"""Galleries: labels from the data never become paths; every kind of finding gets its sheet."""

import numpy as np
import pandas as pd
from PIL import Image

from speciesfam import layout
from speciesfam.data.galleries import label_issue_gallery, near_duplicate_gallery, outlier_galleries

EVIL = ["../../../../tmp/x", "a/b", "..", "Felidae"]


def test_hostile_labels_stay_inside_the_gallery_folder(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    rows = pd.DataFrame({"path": paths, "label": [EVIL[i % 4] for i in range(8)], "score": np.arange(8.0),
                         "z": np.arange(8.0), "removed": [i % 3 == 0 for i in range(8)]})
    out = tmp_path / "run" / "gallery"
    written = outlier_galleries(rows, str(out), per_family=3)
    issues = pd.DataFrame({"path": paths[:2], "given_family": EVIL[:2], "suggested_family": EVIL[2:4],
                           "self_confidence": [0.1, 0.2], "rank": [1, 2]})
    written.append(label_issue_gallery(issues, rows, str(out)))
    pairs = pd.DataFrame({"path_a": paths[:2], "path_b": paths[2:4], "family_a": EVIL[:2], "family_b": EVIL[:2],
                          "similarity": [0.99, 0.98], "group": [0, 1]})
    written.append(near_duplicate_gallery(pairs, str(out)))
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == len(written) == 6  # 4 families + label issues + near-duplicates
    assert {f"{layout.label_slug(lab)}.png" for lab in EVIL} | {"label_issues.png", "near_duplicates.png"} == set(files)
    assert all(not f.startswith(".") and "/" not in f for f in files)
    # Nothing was written anywhere else under tmp_path (only the inputs and the gallery folder).
    others = {p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents}
    assert others == {tmp_path / f"img{i}.png" for i in range(8)}
    assert not any(p.name.startswith("x") for p in (tmp_path.parent.glob("*.png")))
    assert label_issue_gallery(issues.iloc[:0], rows, str(out)) is None


def test_no_per_family_gallery_when_none_is_asked_for(tmp_path):
    """`--gallery-per-family 0` wrote a blank 296-byte PNG per family, which clean.md then pointed to."""
    rows = pd.DataFrame({"path": ["a.png"], "label": ["Felidae"], "score": [1.0], "z": [1.0], "removed": [False]})
    assert outlier_galleries(rows, str(tmp_path / "gallery"), per_family=0) == []
    assert not (tmp_path / "gallery").exists()


def test_an_outlier_kept_as_a_label_issue_is_marked_in_its_familys_sheet(tmp_path):
    """It showed as any kept image, though its z-score reached 4243 (round 62): framed orange, as label issues are;
    a removed one red; a kept one unframed."""
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.new("RGB", (20, 20), (255, 255, 255)).save(paths[-1])
    rows = pd.DataFrame({"path": paths, "label": "Felidae", "score": [3.0, 2.0, 1.0], "z": [90.0, 60.0, 0.5],
                         "removed": [True, False, False]})
    sheet = outlier_galleries(rows, str(tmp_path / "g"), per_family=3, thumb=40, label_issues=frozenset(paths[1:2]))
    img = np.asarray(Image.open(sheet[0]).convert("RGB"))
    top = img.shape[0] - 40  # the thumbnails' row, under the captions
    assert [tuple(img[top + 20, x * 40 + 1]) for x in range(3)] == [(220, 0, 0), (255, 140, 0), (255, 255, 255)]
