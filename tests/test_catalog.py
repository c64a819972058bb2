"""Catalog: nothing lost, duplicates never cross splits, stratified splits, small-family policy, errors."""

import os

import pandas as pd
import pytest

from speciesfam.config import CatalogConfig, ConfigError
from speciesfam.data.catalog import build_manifest, class_weights, run_catalog
from speciesfam.errors import SourceError


def test_every_row_has_a_status_and_nothing_is_lost(collection, tmp_path):
    root, planted = collection
    files = [p for p in root.rglob("*") if p.is_file()]
    m = run_catalog(str(root), str(tmp_path))
    assert len(m) == len(files)
    assert set(m["status"]) <= {"ok", "duplicate", "unreadable", "too_small"}
    bad = m[m["status"] == "unreadable"]
    assert {p.split("/", 1)[0] + "/" + p.split("/")[-1] for p in planted["corrupt"]} == {
        f"{r.label}/{r.path.rsplit('/', 1)[-1]}" for r in bad.itertuples()}
    assert bad["reason"].str.contains("truncated").all()
    assert pd.read_csv(tmp_path / "unreadable.csv")["path"].tolist() == bad["path"].tolist()
    assert (tmp_path / "catalog.md").read_text().count("|") > 10
    assert "### duplicate (" in (tmp_path / "catalog.md").read_text()  # Not used lists every status but ok


def test_a_piped_catalog_says_how_far_it_got(collection, monkeypatch, capsys):
    """Piped (a batch job, `ray job submit`), the bar is off and a 12k-image catalog said nothing until it ended."""
    from speciesfam import console

    root, _ = collection
    monkeypatch.setattr(console, "PROGRESS_EVERY_S", 0.0)  # a line after every file but the last
    m = build_manifest(str(root))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"catalog: {i}/{len(m)} files read" for i in range(1, len(m))]


def test_duplicates_never_cross_splits(collection):
    root, planted = collection
    m = build_manifest(str(root))
    dup = m[m["status"] == "duplicate"]
    assert len(dup) == len(planted["duplicates"])
    split_of = dict(zip(m["path"], m["split"]))
    for r in dup.itertuples():
        assert r.split == split_of[r.duplicate_of]
        assert r.reason == f"same bytes as {r.duplicate_of}"  # the kept copy by name (it said 'duplicate_of')
    assert not m[m["status"] == "ok"]["sha256"].duplicated().any()


def test_a_manifest_keeps_the_earliest_row_of_an_image_and_marks_the_later_copies(collection, tmp_path):
    """Of two rows holding the same bytes, the later one by path was kept: 'zz_original.jpg' listed first became
    the duplicate of 'aa_copy.jpg' listed after it (round 68); the README says 'an earlier row'."""
    import shutil

    root, _ = collection
    images = sorted((root / "Felidae").glob("*.jpg"))[:6]
    shutil.copyfile(images[0], tmp_path / "zz_original.jpg")
    shutil.copyfile(images[0], tmp_path / "aa_copy.jpg")
    rows = [tmp_path / "zz_original.jpg", tmp_path / "aa_copy.jpg", *images[1:]]
    pd.DataFrame({"path": [str(p) for p in rows], "label": "Felidae"}).to_csv(tmp_path / "m.csv", index=False)
    m = build_manifest(str(tmp_path / "m.csv"), CatalogConfig(min_images=3)).set_index("path")
    assert m.loc[str(tmp_path / "zz_original.jpg"), "status"] == "ok"
    assert m.loc[str(tmp_path / "aa_copy.jpg"), ["status", "reason"]].tolist() == [
        "duplicate", f"same bytes as {tmp_path / 'zz_original.jpg'}"]


def test_the_same_image_under_two_families_is_a_conflict_not_a_duplicate(collection, tmp_path):
    import shutil

    root, planted = collection
    copy = shutil.copytree(root, tmp_path / "c")
    planted_files = {p for v in planted.values() for p in v for p in ([p] if isinstance(p, str) else p)}
    felid = next(p for p in sorted((copy / "Felidae").glob("*.jpg")) if f"Felidae/{p.name}" not in planted_files)
    shutil.copyfile(felid, copy / "Ranidae" / "is_it_a_frog.jpg")  # one image, two families
    m = build_manifest(str(copy)).set_index("path")
    clash = m.loc[[str(felid), str(copy / "Ranidae" / "is_it_a_frog.jpg")]]
    assert (clash["status"] == "conflict").all() and clash["split"].isna().all()  # neither trains nor scores
    assert (clash["reason"] == "the same image (bytes) is under 2 different labels: 'Felidae', 'Ranidae'").all()
    assert (m["status"] == "duplicate").sum() == len(planted["duplicates"])  # same-family copies: still duplicates
    # a manifest listing the clashing image twice under one label: the repeat is a conflict too, not a duplicate
    pd.DataFrame({"path": [str(felid), str(felid), str(copy / "Ranidae" / "is_it_a_frog.jpg")],
                  "label": ["Felidae", "Felidae", "Ranidae"]}).to_csv(tmp_path / "m.csv", index=False)
    m = build_manifest(str(tmp_path / "m.csv"))
    assert m["status"].tolist() == ["conflict"] * 3 and m["duplicate_of"].isna().all(), m
    # a path listed under two labels, and a byte copy of it under one of them: the copy is a clash too
    frog = copy / "Ranidae" / "is_it_a_frog.jpg"
    pd.DataFrame({"path": [str(felid), str(felid), str(frog)], "label": ["Felidae", "Ranidae", "Felidae"]}
                 ).to_csv(tmp_path / "m2.csv", index=False)
    m = build_manifest(str(tmp_path / "m2.csv")).set_index("path")
    assert (m["status"] == "conflict").all(), m
    assert m.loc[str(frog), "reason"] == "the same image (bytes) is under 2 different labels: 'Felidae', 'Ranidae'"
    assert m.loc[str(felid), "reason"].str.startswith("path listed 2 times with 2 different labels").all()


def test_stratified_split_is_seeded_and_every_family_in_every_split(collection):
    root, _ = collection
    a, b = build_manifest(str(root), CatalogConfig(seed=3)), build_manifest(str(root), CatalogConfig(seed=3))
    assert a["split"].tolist() == b["split"].tolist()
    ok = a[a["status"] == "ok"]
    assert (ok.groupby("label")["split"].nunique() == 3).all()
    assert build_manifest(str(root), CatalogConfig(seed=4))["split"].tolist() != a["split"].tolist()


def test_group_split_keeps_each_group_in_one_split(collection, tmp_path):
    root, _ = collection
    files = sorted(p for p in root.rglob("*.jpg"))
    manifest = pd.DataFrame({"path": [str(p.relative_to(root)) for p in files],
                             "label": [p.parent.name for p in files],
                             "group": [f"{p.parent.name}-sp{i % 4}" for i, p in enumerate(files)]})
    manifest.to_csv(root / "list.csv", index=False)
    m = build_manifest(str(root / "list.csv"), CatalogConfig(group_split=True, min_images=3))
    ok = m[m["status"] == "ok"]
    assert (ok.groupby("group")["split"].nunique() == 1).all()
    (root / "list.csv").unlink()


def test_small_families_are_reported_not_dropped(collection):
    root, _ = collection
    m = build_manifest(str(root), CatalogConfig(min_images=10))
    small = m[m["status"] == "too_small"]
    assert set(small["label"]) == {"Salmonidae"} and small["split"].isna().all()
    assert "min_images=10" in small["reason"].iloc[0]


def test_balanced_class_weights(collection):
    root, _ = collection
    w = class_weights(build_manifest(str(root)))
    assert w["Salmonidae"] > w["Ranidae"] > w["Felidae"]


def test_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        build_manifest(str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="does not exist"):
        build_manifest(str(tmp_path / "nowhere.csv"))
    (tmp_path / "bad.csv").write_text("file,family\na.jpg,x\n")
    with pytest.raises(SourceError, match="lacks column"):
        build_manifest(str(tmp_path / "bad.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no files"):
        build_manifest(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="val_fraction=0.7"):
        CatalogConfig(val_fraction=0.7).validate()
    for name in ("list.tsv", "notes.txt"):  # was a NotADirectoryError traceback (hostile tester)
        (tmp_path / name).write_text("path\tlabel\n")
        with pytest.raises(SourceError, match="is a file, not a folder: .* manifest named \\*.csv"):
            build_manifest(str(tmp_path / name))


def test_blank_and_whitespace_lines_of_a_csv_manifest_get_rows(collection, tmp_path):
    """Observed (hostile tester): a line of spaces in a CSV manifest had no row and no count (pandas skips blank
    lines); each line after the header is now a row with a status, a blank line an invalid one that says so."""
    root, _ = collection
    files = sorted(root.rglob("*.jpg"))[:6]
    lines = [f"{p},{p.parent.name}" for p in files]
    text = "path,label\n" + "\n".join([*lines[:3], "   ", "", ",", "  ,Felidae", *lines[3:]]) + "\n"
    (tmp_path / "gaps.csv").write_text(text)
    m = build_manifest(str(tmp_path / "gaps.csv"), CatalogConfig(min_images=3))
    assert len(m) == m.attrs["rows_read"] == 10 and sorted(m["source_row"]) == list(range(10))
    invalid = m.sort_values("source_row").loc[m["status"] == "invalid"]
    assert invalid["source_row"].tolist() == [3, 4, 5, 6]
    assert invalid["reason"].tolist() == ["blank line: no path and no label"] * 3 + ["path is only whitespace"]


def test_an_upper_case_manifest_extension_is_a_manifest(collection, tmp_path):
    root, _ = collection
    files = sorted(root.rglob("*.jpg"))
    pd.DataFrame({"path": [str(p) for p in files], "label": [p.parent.name for p in files]}).to_csv(
        tmp_path / "MANIFEST.CSV", index=False)
    m = build_manifest(str(tmp_path / "MANIFEST.CSV"), CatalogConfig(min_images=3))
    assert len(m) == len(files) and m.attrs["rows_read"] == len(files)


def test_a_csv_with_any_line_ends_is_read(tmp_path):
    """A CSV saved with old Mac line ends (CR only) ended catalog, evaluate and predict with a traceback from
    the csv module (hostile tester); pandas reads it, and so must the header check."""
    from speciesfam.data.text_table import read_text_table

    for end in (b"\r", b"\r\n", b"\n"):
        (tmp_path / "m.csv").write_bytes(end.join([b"path,label", b"a.jpg,Felidae", b"b.jpg,007", b""]))
        assert read_text_table(str(tmp_path / "m.csv")) == {"path": ["a.jpg", "b.jpg"], "label": ["Felidae", "007"]}


def test_unreadable_manifest_files_are_one_line_errors(tmp_path, capsys):
    import re

    from speciesfam.cli import main

    # every data row one field too many: pandas would take the first field as a row index and shift the rest
    files = {"ragged.csv": b"path,label\na.jpg,x\nb.jpg,y,z\n", "empty.csv": b"",
             "shifted.csv": b"path,label\na.jpg,Felidae,extra\nb.jpg,Canidae,more\n",
             "latin1.csv": "path,label\na.jpg,F\u00e9lidae\n".encode("latin-1"), "junk.parquet": b"junk",
             "folder.csv": None, "twice.csv": b"path,label,label\na.jpg,Felidae,Canidae\n",
             "semi.csv": b"path;label\na.jpg;Felidae\n", "crragged.csv": b"path,label\ra.jpg,x\rb.jpg,y,z\r",
             "case.csv": b"Path, label \na.jpg,Felidae\n",  # a spreadsheet's capitals and a stray space
             # after a quoted cell holding a newline, pandas' record numbers are not the file's lines (it said
             # "line 4" for line 5)
             "newline.csv": b'path,label\n"a\nb.jpg",Felidae\nc.jpg,Canidae\nd.jpg,Ursidae,extra,more\n',
             "unclosed.csv": b'path,label\n"a\nb.jpg",Felidae\n"c.jpg,Canidae\nd.jpg,Ursidae\n',
             "utf16.csv": "path,label\na.jpg,Felidae\n".encode("utf-16"),  # a spreadsheet's 'Unicode text'
             # without its mark: valid UTF-8 (NUL is), so it was read and refused for its header 'p\x00a\x00...'
             "utf16le.csv": "path,label\na.jpg,Felidae\n".encode("utf-16-le"),
             "utf16be.csv": "path,label\na.jpg,Felidae\n".encode("utf-16-be"),
             "nul.csv": b"path,label\na.jpg,Fel\x00idae\n",
             # ';'-separated, a path holding a comma: it was told to quote fields, not that its separator is ';' (round 56)
             "semicomma.csv": b"path;label\n/a/b,c.jpg;Felidae\n",
             "sepragged.csv": b"sep=,\r\npath,label\r\na.jpg,Felidae,extra\r\n",  # a spreadsheet's separator line
             # under pandas' Python parser (a separator of two bytes or more): 'unexpected end of data' (round 60)
             "wideunclosed.csv": "sep=\uff1b\npath\uff1blabel\na.jpg\uff1bA\n\"b.jpg\uff1bB\nc.jpg\uff1bC\n".encode(),
             # a stray quote in a file over 128 KiB: Python's csv (finding the line) raised 'field larger than field
             # limit (131072)', a traceback (round 64)
             "bigunclosed.csv": ("path,label\n" + "a.jpg,A\n" * 4 + '"b.jpg,B\n' + "c.jpg,Felidae\n" * 12000).encode()}
    expected = {"twice.csv": "has more than one column named 'label'; keep one", "ragged.csv": "not a well-formed CSV .*line 3", "empty.csv": "is empty: a manifest needs a header",
                "shifted.csv": "not a well-formed CSV .line 2 has 3 fields, the header 2",
                "latin1.csv": r"not UTF-8 text \(line 2.*save it as UTF-8", "junk.parquet": "cannot be read as Parquet",
                "utf16.csv": r"is UTF-16 text \(it starts with UTF-16's byte-order mark\); save it as UTF-8",
                "folder.csv": "cannot be read as a manifest file",
                "utf16le.csv": r"looks like UTF-16 text without a byte-order mark \(little-endian: every other byte is "
                               r"0\); save it as UTF-8",
                "utf16be.csv": r"without a byte-order mark \(big-endian",
                "nul.csv": r"holds NUL bytes \(the first at byte 20\): it is not a text file; save it as UTF-8",
                "semi.csv": r"found \['path;label'\] \(its header is separated by ';': save it comma-separated, or make its first line sep=;\)$",
                "crragged.csv": "not a well-formed CSV .*line 3",
                "newline.csv": r"not a well-formed CSV \(line 5 has 4 fields, the header 2\)",
                "unclosed.csv": r"not a well-formed CSV \(a quote opened on line 4 is never closed\); close it",
                "semicomma.csv": r"not a well-formed CSV \(line 2 has 2 fields, the header 1\); its header is separated "
                                 r"by ';': save it comma-separated, or make its first line sep=;$",
                "sepragged.csv": r"not a well-formed CSV \(line 3 has 3 fields, the header 2\); quote fields that "
                                 "contain commas",  # the file's own line 3
                "wideunclosed.csv": r"\(a quote opened on line 4 is never closed\); close it",
                "bigunclosed.csv": r"\(a quote opened on line 6 is never closed\); close it",
                "case.csv": r"found \['Path', ' label '\] \(column names are exact: give --path-column Path, "
                            r"--label-column ' label '\)$"}
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays([pa.array(["a.jpg"])] * 3, names=["path", "label", "label"]), buf)
    files["twice.parquet"] = buf.getvalue().to_pybytes()
    expected["twice.parquet"] = expected["twice.csv"]
    for name, data in files.items():
        if data is None:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(data)
        assert main(["catalog", str(tmp_path / name), "--workdir", str(tmp_path / f"run-{name}")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(expected[name], err), err
        assert not (tmp_path / f"run-{name}").exists()


def test_a_workdir_inside_the_image_folder_is_refused_before_anything_is_written(collection, tmp_path, capsys):
    """Else the next catalog takes the run's own galleries and plots for a family and its logs for images."""
    import shutil

    from speciesfam.cli import main

    root = tmp_path / "images"
    shutil.copytree(collection[0], root)
    (root / "Ranidae" / "run").mkdir()
    (root / "stages").mkdir()  # a family of that name made the image folder pass for a run folder
    shutil.copyfile(next((root / "Felidae").glob("*.jpg")), root / "stages" / "a.jpg")
    shutil.move(str(root / "Ranidae"), str(tmp_path / "ext"))  # a family folder linked from elsewhere
    (root / "Ranidae").symlink_to(tmp_path / "ext")
    files = sorted(root.rglob("*"))
    for workdir in (root / "run", root, root / "Felidae" / "run", root / "Ranidae" / "run", tmp_path / "ext" / "r"):
        assert main(["catalog", str(root), "--workdir", str(workdir)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--workdir {workdir} is inside the image folder {root}" in err, err
        assert f"--workdir {root}-run" in err  # the fix, spelled out
    # nothing written: a refused command wrote report.html and logs/catalog.log there, which the next catalog
    # listed as a file in no family and an unreadable image (hostile tester); likewise a later stage run on a
    # family's folder, and a catalog of a manifest that does not exist into an existing folder
    assert main(["clean", "--workdir", str(root / "Felidae")]) == 2
    assert main(["clean", "--workdir", str(root)]) == 2 and main(["export", "--workdir", str(root)]) == 2
    assert main(["catalog", str(tmp_path / "nope.csv"), "--workdir", str(root / "Ranidae" / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(root.rglob("*")) == files
    # a user's own manifest named as catalog's, in --workdir: catalog replaced it; clean named it a manifest not
    # written by catalog, yet left its report and logs beside it (hostile tester)
    mine = tmp_path / "mine"
    mine.mkdir()
    pd.DataFrame({"path": [str(p) for p in sorted((root / "Felidae").glob("*.jpg"))], "label": "Felidae"}).to_parquet(
        mine / "manifest.parquet")
    before = (mine / "manifest.parquet").read_bytes()
    assert main(["clean", "--workdir", str(mine)]) == 2 and main(["tune", "probe", "--workdir", str(mine)]) == 2
    assert main(["catalog", str(mine / "manifest.parquet"), "--workdir", str(mine)]) == 2
    assert f"{mine / 'manifest.parquet'} is a file the run writes in --workdir {mine} (its manifest.parquet): " \
           "catalog would replace it" in capsys.readouterr().err
    assert os.listdir(mine) == ["manifest.parquet"] and (mine / "manifest.parquet").read_bytes() == before
    # another source into that folder: its manifest.parquet (and a report.html of the user's) were replaced, exit 0
    (mine / "report.html").write_text("my own page")
    assert main(["catalog", str(root), "--workdir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert f"--workdir {mine} is no speciesfam run folder, yet holds 'manifest.parquet', 'report.html': a run writes " \
           f"files of those names (or clears the folder they are in), so it would replace them. Give a new or empty " \
           f"folder, e.g. --workdir " \
           f"{mine / 'run'}" in err, err
    assert sorted(os.listdir(mine)) == ["manifest.parquet", "report.html"]
    assert (mine / "manifest.parquet").read_bytes() == before and (mine / "report.html").read_text() == "my own page"
    (mine / "logs").mkdir()  # a folder of such a name is only written into: no refusal for it
    (mine / "manifest.parquet").unlink()
    (mine / "report.html").unlink()
    # ... but clean deletes the PNGs in gallery/, export replaces bundle/, each stage rewrites stages/*.json
    for made in ("gallery/my plot.png", "bundle/notes.txt", "stages/clean.json"):
        (mine / made).parent.mkdir()
        (mine / made).write_text("mine")
        assert main(["catalog", str(root), "--workdir", str(mine)]) == 2
        assert f"is no speciesfam run folder, yet holds {made!r}: a run writes a file of that name" in \
            capsys.readouterr().err
        (mine / made).unlink()
        (mine / made).parent.rmdir()
    assert main(["catalog", str(root), "--workdir", str(mine)]) == 0
    assert main(["catalog", str(root), "--workdir", str(mine)]) == 0  # its own run folder: catalog again
    capsys.readouterr()
    # a folder of links to another run's files passed for a run folder, and catalog wrote through them into that
    # run (hostile tester round 34)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "manifest.parquet").symlink_to(mine / "manifest.parquet")
    before = (mine / "manifest.parquet").read_bytes()
    assert main(["catalog", str(tmp_path / "images-run"), "--workdir", str(linked)]) == 2
    err = capsys.readouterr().err
    assert f"--workdir {linked}: 'manifest.parquet' is a link (manifest.parquet -> {mine / 'manifest.parquet'}); a " \
           "run writes its own files" in err, err
    assert (mine / "manifest.parquet").read_bytes() == before
    (linked / "manifest.parquet").unlink()  # one level down: a link to another run's record (round 35)
    (linked / "stages").mkdir()
    (linked / "stages" / "catalog.json").symlink_to(mine / "stages" / "catalog.json")
    record = (mine / "stages" / "catalog.json").read_bytes()
    assert main(["catalog", str(root), "--workdir", str(linked)]) == 2
    assert "'stages/catalog.json' is a link (stages/catalog.json -> " in capsys.readouterr().err
    assert (mine / "stages" / "catalog.json").read_bytes() == record
    # beside it, or a name that only starts the same, is fine
    assert main(["catalog", str(root), "--workdir", str(tmp_path / "images-run")]) == 0
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a terminal


def test_a_family_name_in_two_unicode_forms_shows_as_two_names_in_the_reports(tmp_path):
    """'Café' composed and 'Café' decomposed (a folder copied from an old Mac) are two families, kept apart; their
    rows in catalog.md's and clean.md's tables read the same, so the reports showed one name twice."""
    import json

    from PIL import Image

    from speciesfam.config import CleanConfig
    from speciesfam.data.clean_report import clean_report

    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    rows = []
    for i, label in enumerate([nfc] * 3 + [nfd] * 3 + ["Felidae"] * 3):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    m = run_catalog(str(tmp_path / "m.csv"), str(tmp_path / "run"), CatalogConfig(min_images=3))
    shown = {nfc: '"Caf\\\\u00e9"', nfd: '"Cafe\\\\u0301"'}  # the JSON string, its backslash Markdown-escaped
    assert json.dumps(nfc) == '"Caf\\u00e9"'
    md = (tmp_path / "run" / "catalog.md").read_text()
    assert all(f"| {shown[lab]} | " in md for lab in (nfc, nfd)) and "| Felidae | " in md
    summary = {"outliers_removed": 0, "label_issues_dropped": 0,
               "near_duplicates": {"pairs": 0, "groups": 0, "moved_to_group_split": 0, "dropped": 0}}
    issues = pd.DataFrame({"rank": [1], "path": [m["path"].iloc[0]], "given_family": [nfc],
                           "suggested_family": [nfd], "self_confidence": [0.1]})
    md = clean_report(m, m, pd.DataFrame(columns=["path", "family", "score", "z", "detector", "reason"]), issues,
                      pd.DataFrame(columns=["path_a", "path_b", "similarity"]), CleanConfig(zero_shot=False), summary)
    assert all(f"| {shown[lab]} | 3 | 3 |" in md for lab in (nfc, nfd)) and "| Felidae | 3 | 3 |" in md
    assert f"| {shown[nfc]} | {shown[nfd]} | 0.100 |" in md  # the label issue: given one, suggested the other
    from speciesfam.data.clean import drop_label_issues  # its removal reason too (it named 'Café' twice: round 48)

    emb = m.loc[m["status"] == "ok", ["path", "label"]].assign(removed=False, detector="", reason="")
    drop_label_issues(emb, issues, min_keep=1)
    assert emb["reason"].iloc[0].startswith(f"label issue: given {json.dumps(nfc)}, looks like {json.dumps(nfd)} ")
    # ... and in the warnings (console, clean.md, report) and report.html's family table: "('Café', 'Café')"
    from speciesfam.data.clean_report import lost_lines
    from speciesfam.report import render

    lost = {**summary, "split_lost": {"test": [nfd, "Felidae"]}, "split_lost_cause": {}}
    assert f"({json.dumps(nfd)}, 'Felidae')" in lost_lines(lost, alike=frozenset({nfc, nfd}))[0]
    assert f"({json.dumps(nfc)}, {json.dumps(nfd)})" in lost_lines({**lost, "split_lost": {"val": [nfc, nfd]}})[0]
    md = clean_report(m, m, pd.DataFrame(columns=["path", "family", "score", "z", "detector", "reason"]), issues,
                      pd.DataFrame(columns=["path_a", "path_b", "similarity"]), CleanConfig(zero_shot=False), lost)
    assert f"no test images left ({json.dumps(nfd)}, `Felidae`)" in md
    table = render(str(tmp_path / "run")).split("usable after catalog")[1].split("</table>")[0]
    assert all(f"<td>{json.dumps(lab).replace(chr(34), '&#34;')}</td>" in table for lab in (nfc, nfd)) and \
        "<td>Felidae</td>" in table, table
