"""Messy input (issue 12), manifests and labels: labels exactly as written (``007``/``7``, ``NA``, empty, look-alike
Unicode), a path listed twice, unsupported schemes, missing files, FIFOs and folders listed as files, relative
paths used from another directory; labels as file names (``label_slug``, ``fetch --layout folders``); exact labels
through clean. Folders and files: test_messy_input.py.
"""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_messy_input import SMALL, by_status, png

from speciesfam import layout
from speciesfam.config import CatalogConfig
from speciesfam.data.catalog import build_manifest, run_catalog
from speciesfam.layout import label_slug


def test_a_manifest_that_lists_a_fifo_a_folder_or_a_broken_link_does_not_hang(tmp_path):
    """Observed (hostile tester): a manifest row naming a FIFO blocked catalog in open() forever, and so did
    predict of such a file; a folder walk already refused it. Reading now refuses what is not a regular file."""
    from speciesfam.data.images import DecodeError, read_rgb

    rows = [(png(tmp_path / "img" / f"{i}.png", i), "Alpha") for i in range(4)]
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "dir.jpg").mkdir()
    rows += [(str(tmp_path / n), "Alpha") for n in ("pipe.jpg", "gone.jpg", "dir.jpg")]
    write_manifest(tmp_path / "list.csv", rows)
    m = build_manifest(str(tmp_path / "list.csv"), SMALL)
    got = {r.path.rsplit("/", 1)[-1]: (r.status, r.reason) for r in m.itertuples()}
    assert got["pipe.jpg"] == ("unreadable", "not a regular file (a FIFO)")
    assert got["dir.jpg"] == ("unreadable", "not a regular file (a folder)")
    assert got["gone.jpg"] == ("unreadable", "broken symbolic link (target missing, or a link loop)")
    with pytest.raises(DecodeError, match=r"not a regular file \(a FIFO\)"):
        read_rgb(str(tmp_path / "pipe.jpg"))  # what predict reads each file with


def test_an_unreachable_gs_row_fails_its_row_instead_of_stalling_catalog(tmp_path, monkeypatch):
    """One gs:// row stalled catalog for 15 minutes and more, silently: GCS's client retries that long by
    default (hostile tester). Its row now fails after GCS_RETRY_S (here 1 s) of retries, with the reason."""
    from speciesfam import pathtext, storage

    monkeypatch.setattr(storage, "GCS_RETRY_S", 1)
    rows = [(png(tmp_path / "img" / f"{i}.png", i), "Alpha") for i in range(4)]
    write_manifest(tmp_path / "list.csv", [*rows, ("gs://speciesfam-no-such-bucket/x.png", "Alpha")])
    m = build_manifest(str(tmp_path / "list.csv"), SMALL).set_index("path")
    assert m.loc["gs://speciesfam-no-such-bucket/x.png", "status"] == "unreadable"
    assert m.loc["gs://speciesfam-no-such-bucket/x.png", "reason"] and by_status(m) == {"ok": 4, "unreadable": 1}
    # its reason was google-cloud's whole status, 1,000 characters with an error_info dump: one short line now
    reason = m.loc["gs://speciesfam-no-such-bucket/x.png", "reason"]
    assert reason.startswith("cannot read file: ") and len(reason) <= 320 and "error_info" not in reason, reason
    assert "\n" not in pathtext.said(OSError("first\nsecond")) and pathtext.said(ValueError()) == "ValueError"


def write_manifest(path, rows: list[tuple[str, str]]) -> None:
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(path, index=False)


def test_labels_stay_exactly_as_written(tmp_path):
    """Observed: '007' and '7' became one family 7.0; 'NA' and empty cells became NaN rows with status ok."""
    labels = ["007", "7", "7.0", "NA", "null", "nan", "None", "#N/A", " padded ", "Félidae", "猫科", "a|b"]
    rows = [(png(tmp_path / "img" / f"{i}_{j}.png", 10 * i + j), lab) for i, lab in enumerate(labels)
            for j in range(3)]
    rows += [(png(tmp_path / "img" / "e.png", 900), ""), (png(tmp_path / "img" / "w.png", 901), "  \t")]
    write_manifest(tmp_path / "list.csv", rows)
    m = run_catalog(str(tmp_path / "list.csv"), str(tmp_path / "run"), SMALL)
    ok = m[m["status"] == "ok"]
    assert sorted(ok["label"].unique()) == sorted(labels)
    assert (ok["label"].value_counts() == 3).all()
    invalid = m[m["status"] == "invalid"].sort_values("path")
    assert invalid["reason"].tolist() == ["label is empty", "label is only whitespace"]
    assert invalid["label"].tolist() == ["", "  \t"]
    stored = pq.read_table(tmp_path / "run" / layout.MANIFEST).column("label").to_pylist()
    assert sorted(stored) == sorted(lab for _, lab in rows)  # byte for byte, through Parquet
    assert "| a\\|b |" in (tmp_path / "run" / layout.CATALOG_MD).read_text()  # a table cell, not a new column


def test_a_spreadsheets_separator_line_names_the_separator(tmp_path):
    """Excel's first line 'sep=;' was taken for the header ('lacks column(s) ... found ['sep=', 'Unnamed: 1']':
    round 56): the separator it names is used, the labels stay as written, rows count from the header's next."""
    paths = [png(tmp_path / "img" / f"{i}.png", i) for i in range(4)]
    for name, sep, end in (("semi.csv", ";", "\r\n"), ("comma.csv", ",", "\n"), ("tab.csv", "\t", "\n"),
                           ("upper.csv", ";", "\n"),  # 'SEP=;  ' was the header (round 57)
                           ("wide.csv", "\uff1b", "\n")):  # a fullwidth ';': pandas' warning of its parser (round 58)
        body = "".join(f"{p}{sep}{lab}{end}" for p, lab in zip(paths, ["007", "a,b", " 7", "Felidae"]))
        first = f"SEP={sep}  " if name == "upper.csv" else f"sep={sep}"
        (tmp_path / name).write_text(f"{first}{end}path{sep}label{end}" + body.replace("a,b", '"a,b"' if sep == ","
                                                                                          else "a,b"), newline="")
        m = build_manifest(str(tmp_path / name), SMALL)
        assert m["label"].tolist() == ["007", "a,b", " 7", "Felidae"] and m["path"].tolist() == paths, name
        assert m["source_row"].tolist() == [0, 1, 2, 3]
    with open(tmp_path / "wide.csv", "a") as f:  # a blank line: an AttributeError under the Python parser (round 59)
        f.write("\n" + f"{paths[0]}\uff1b007\n")
    m = build_manifest(str(tmp_path / "wide.csv"), SMALL)
    m = m.sort_values("source_row")
    assert m["status"].tolist()[4:] == ["invalid", "duplicate"] and m["source_row"].tolist() == [0, 1, 2, 3, 4, 5]


def test_look_alike_labels_stay_apart_and_are_named(tmp_path):
    labels = ["Felidae", "felidae", "Felidae ", "\uff26elidae", "Ranidae", "Rani\u200bdae"]  # fullwidth F; zero-width space
    rows = [(png(tmp_path / "img" / f"{i}_{j}.png", 10 * i + j), lab) for i, lab in enumerate(labels)
            for j in range(3)]
    rows += [(png(tmp_path / "img" / "e.png", 99), ""), (png(tmp_path / "img" / "w.png", 98), "   ")]  # invalid rows
    rows += [(png(tmp_path / "img" / "new\nline.png", 97), "Ranidae\nx")]  # a family of one image: too small
    write_manifest(tmp_path / "list.csv", rows)
    m = run_catalog(str(tmp_path / "list.csv"), str(tmp_path / "run"), SMALL)
    assert m.loc[m["status"] == "ok", "label"].nunique() == 6
    md = (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert "## Labels that look alike" in md and \
        '- `"Felidae"`, `"Felidae "`, `"felidae"`, `"\\uff26elidae"`\n' in md
    assert '- `"Ranidae"`, `"Rani\\u200bdae"`\n' in md  # the invisible character shown
    assert "- '', '   '" not in md  # the invalid rows' empty labels are not families
    # a newline in a path or label stays inside its table row, shown as \n (Markdown's escaped backslash + n)
    assert any(line.startswith("| ") and "new\\\\nline.png | Ranidae\\\\nx |" in line for line in md.splitlines())


def test_parquet_numbers_become_their_text(tmp_path):
    paths = [png(tmp_path / "img" / f"{i}.png", i) for i in range(9)]
    table = pa.table({"path": paths, "label": pa.array([7, 7, 7, 12, 12, 12, None, 7, 12], pa.float64())})
    pq.write_table(table, tmp_path / "floats.parquet")  # how pandas stores integers with a gap
    m = build_manifest(str(tmp_path / "floats.parquet"), SMALL)
    assert sorted(m.loc[m["status"] == "ok", "label"].unique()) == ["12", "7"]
    assert m.loc[m["status"] == "invalid", "reason"].tolist() == ["label is missing (null)"]
    pq.write_table(pa.table({"path": [*paths[:3], None], "label": [0.1, 0.1, 0.1, 0.1]}), tmp_path / "f.parquet")
    m = build_manifest(str(tmp_path / "f.parquet"), SMALL)
    assert set(m["label"]) == {"0.1"} and by_status(m) == {"ok": 3, "invalid": 1}
    pq.write_table(pa.table({"path": paths[:3], "label": [1.5e300] * 3}), tmp_path / "big.parquet")
    assert set(build_manifest(str(tmp_path / "big.parquet"), SMALL)["label"]) == {"1.5e+300"}  # not 301 digits
    pq.write_table(pa.table({"path": paths[:3], "label": [True, True, True], "group": [1, 1, 2]}),
                   tmp_path / "b.parquet")
    m = build_manifest(str(tmp_path / "b.parquet"), SMALL)
    assert set(m["label"]) == {"True"} and sorted(m["group"]) == ["1", "1", "2"]
    # a list column: every label was the text "['x']" (round 48)
    from speciesfam.errors import SourceError

    pq.write_table(pa.table({"path": paths[:3], "label": [["x"]] * 3}), tmp_path / "lists.parquet")
    with pytest.raises(SourceError, match=r"column 'label' holds list<element: string>, not one value per row; give it "
                                          r"as a column of text \(one label per row\)"):
        build_manifest(str(tmp_path / "lists.parquet"), SMALL)
    pq.write_table(pa.table({"path": paths[:3], "label": ["x"] * 3, "split": [["test"]] * 3}), tmp_path / "s.parquet")
    with pytest.raises(SourceError, match=r"column 'split' holds list<element: string>"):  # evaluate read "['test']"
        build_manifest(str(tmp_path / "s.parquet"), SMALL)


def test_repeated_paths_unsupported_schemes_and_missing_files(tmp_path):
    """Observed: a path listed with two labels lost one row silently."""
    alpha = [png(tmp_path / "a" / f"{i}.png", i) for i in range(4)]
    beta = [png(tmp_path / "b" / f"{i}.png", 20 + i) for i in range(4)]
    rows = [(p, "Alpha") for p in alpha] + [(p, "Beta") for p in beta]
    rows += [(alpha[0], "Beta"),  # conflict: both rows of alpha[0] are kept, neither is used
             (beta[1], "Beta"),  # the same path and label again: duplicate
             ("http://example.org/x.jpg", "Beta"), ("ftp://example.org/y.jpg", "Beta"),
             (str(tmp_path / "missing.jpg"), "Beta"),
             ("b\\0.png", "Beta"), (".\\b\\1.png", "Beta"), ("~/cat.jpg", "Beta"), ("b/0.png ", "Beta"), (" b/1.png", "Beta"),
             (beta[2], "Urside\u0301"), (beta[2], "Ursid\u00e9"),  # two that render alike: they read alike (round 45)
             (beta[3], "   ")]  # a label of spaces is no family (it was named among the families with no usable file)  # b/0.png as Windows writes it; a '~'
    write_manifest(tmp_path / "list.csv", rows)
    m = run_catalog(str(tmp_path / "list.csv"), str(tmp_path / "run"), SMALL)
    assert len(m) == len(rows) and sorted(m["source_row"]) == list(range(len(rows)))
    conflict = m[m["status"] == "conflict"]
    assert sorted(conflict.loc[conflict["path"] == alpha[0], "label"]) == ["Alpha", "Beta"]
    assert set(conflict["path"]) == {alpha[0], beta[2]}
    assert (conflict.loc[conflict["path"] == alpha[0], "reason"] ==
            "path listed 2 times with 2 different labels: 'Alpha', 'Beta'").all()
    assert set(conflict.loc[conflict["path"] == beta[2], "reason"]) == {
        'path listed 3 times with 3 different labels: \'Beta\', "Urside\\u0301", \'Ursid\u00e9\''}
    from speciesfam.data.catalog_report import no_usable_families

    assert "   " not in no_usable_families(m)
    dup = m[m["status"] == "duplicate"].iloc[0]
    assert dup["path"] == beta[1] and dup["reason"].startswith("path listed again with the same label")
    assert dup["split"] == m[(m["path"] == beta[1]) & (m["status"] == "ok")]["split"].iloc[0]
    bad = dict(zip(m.loc[m["status"] == "unreadable", "path"], m.loc[m["status"] == "unreadable", "reason"]))
    assert bad[str(tmp_path / "missing.jpg")] == "file not found"
    # a Windows relative path ('.\\b\\1.png', as a spreadsheet on Windows writes it): not a hidden file, skipped
    for windows in ("b\\0.png", ".\\b\\1.png"):
        assert bad[str(tmp_path / windows)] == \
            "file not found (the path holds '\\': write it with '/' between folders, as this machine sees it)"
    assert bad[str(tmp_path / "~" / "cat.jpg")] == \
        "file not found (a '~' in a manifest is not your home folder: give the full path)"
    assert bad[str(tmp_path / "b" / "0.png ")].endswith("(its name starts or ends with a space: is that in the "
                                                        "file's name?)")
    # a stray space before a relative path: it had no hint (round 28)
    assert bad[str(tmp_path / " b" / "1.png")] == ("file not found (the folder name ' b' in its path starts or ends "
                                                   "with a space: is that in the folder's name?)")
    assert "unsupported URI scheme 'http://'" in bad["http://example.org/x.jpg"]
    assert "unsupported URI scheme 'ftp://'" in bad["ftp://example.org/y.jpg"]
    # training, predict and evaluate read these rows with read_rgb: the same words (they said only 'cannot read
    # file: [Errno 2] No such file or directory: ...', then that with the hint after it: round 49)
    from speciesfam.data.images import DecodeError, read_rgb

    for path, reason in bad.items():
        if reason.startswith("file not found"):
            with pytest.raises(DecodeError) as err:
                read_rgb(path)
            assert str(err.value) == reason, (path, str(err.value))
    assert by_status(m)["ok"] == 6  # beta[2] is a conflict now
    md = (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert "### conflict (5)" in md and "'Alpha', 'Beta'" in md
    assert len(pd.read_csv(tmp_path / "run" / layout.UNREADABLE)) == 8


def test_relative_manifest_works_from_any_directory(tmp_path, monkeypatch):
    """Observed: relative paths were stored relative to the cwd, so clean elsewhere found no file."""
    data = tmp_path / "data"
    for i in range(6):
        png(data / "imgs" / f"{i}.png", i)
    write_manifest(data / "list.csv", [(f"imgs/{i}.png", "Alpha") for i in range(3)]
                   + [(f"./imgs/../imgs/{i}.png", "Beta") for i in range(3, 6)] + [("imgs/0.png", " ")])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    m = run_catalog("../data/list.csv", "../run", SMALL)
    assert by_status(m) == {"ok": 6, "invalid": 1}  # a row without a label names its file absolute too
    assert m.sort_values("source_row")["path"].tolist() == [str(data / "imgs" / f"{i}.png") for i in (*range(6), 0)]
    monkeypatch.chdir(tmp_path / "data" / "imgs")  # a later stage, run from yet another directory
    back = pd.read_parquet(tmp_path / "run" / layout.MANIFEST)
    assert all(os.path.isfile(p) for p in back["path"])
    from speciesfam import stages

    assert stages.load(str(tmp_path / "run"), "catalog")["config"]["source"] == str(data / "list.csv")


def test_paths_written_from_the_current_folder_are_said_to_be_read_from_the_manifests(tmp_path, monkeypatch):
    """A manifest in proj/data/ with paths written from proj/ ('data/A/0.png'): every row 'file not found', with
    no hint, though each file is there from the folder the user ran in (round 48)."""
    for i in range(3):
        png(tmp_path / "proj" / "data" / "A" / f"{i}.png", i)
    write_manifest(tmp_path / "proj" / "data" / "list.csv", [(f"data/A/{i}.png", "A") for i in range(3)]
                   + [("data/A/9.png", "A")])  # from neither folder: no such hint
    monkeypatch.chdir(tmp_path / "proj")
    m = build_manifest("data/list.csv", SMALL).sort_values("source_row")
    base = tmp_path / "proj" / "data"
    assert m["reason"].tolist() == [f"file not found (relative paths are read from the manifest's folder, {base}; "
                                    f"data/A/{i}.png is a file from the current folder: write the paths relative to "
                                    "the manifest's folder, or absolute)" for i in range(3)] + ["file not found"]
    assert m["path"].tolist() == [str(base / "data" / "A" / f"{i}.png") for i in (0, 1, 2, 9)]
    from speciesfam.predict import input_rows  # predict --manifest and evaluate's labelled sets read it so

    rows = input_rows(manifest="data/list.csv")
    assert rows["error"].tolist()[:3] == m["reason"].tolist()[:3] and rows["error"].tolist()[3] == "", rows


def test_nothing_usable_fails_after_writing_the_reports_and_says_what_to_change(tmp_path):
    (tmp_path / "src" / "Alpha").mkdir(parents=True)
    (tmp_path / "src" / "Alpha" / "a.txt").write_text("x")
    from speciesfam.errors import SourceError

    with pytest.raises(SourceError, match=r"no usable image among 1 row \(1 unreadable\): the commonest reason is "
                                          r"not an image file \(format not recognised\); see "):
        run_catalog(str(tmp_path / "src"), str(tmp_path / "run"))
    assert "unreadable: 1" in (tmp_path / "run" / layout.CATALOG_MD).read_text()
    # it showed the counts as a dict and no fix (round 48): every family too small, a family folder given
    for i in range(4):
        png(tmp_path / "src" / "Alpha" / f"{i}.png", i)
        png(tmp_path / "src" / "Beta" / f"{i}.png", 10 + i)
    with pytest.raises(SourceError, match=r"among 9 rows \(8 too_small, 1 unreadable\): families with fewer than "
                                          r"--min-images 6 usable images cannot be split three ways; give a lower "
                                          r"--min-images, or more images; see "):
        run_catalog(str(tmp_path / "src"), str(tmp_path / "run"))
    with pytest.raises(SourceError, match=r"every file is at the folder's root: give the folder that holds one "
                                          r"folder per family \(is this one a family folder itself\?\)"):
        run_catalog(str(tmp_path / "src" / "Beta"), str(tmp_path / "run2"))
    (tmp_path / "mixed" / "Alpha").mkdir(parents=True)  # unreadable beside skipped: the reason too (round 50)
    (tmp_path / "mixed" / "Alpha" / "a.jpg").write_text("not an image")
    (tmp_path / "mixed" / "Alpha" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(SourceError, match=r"\(1 skipped, 1 unreadable\): the commonest reason is not an image file"):
        run_catalog(str(tmp_path / "mixed"), str(tmp_path / "run4"))
    (tmp_path / "sys" / "Alpha").mkdir(parents=True)  # only system files, in family folders: not 'at the root'
    (tmp_path / "sys" / "Alpha" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(SourceError, match=r"\(1 skipped\): every file was skipped \(1 system file \(Windows' "
                                          r"thumbnail cache\), not an image\); see"):
        run_catalog(str(tmp_path / "sys"), str(tmp_path / "run3"))
    shutil.copytree(tmp_path / "run3", tmp_path / "old" / "run3")  # only an old run folder: its files are no
    with pytest.raises(SourceError, match=r"every file was skipped \(\d+ in a speciesfam run folder \(its "
                                          r"galleries and plots\), not an image; folders 'run3'\)"):
        run_catalog(str(tmp_path / "old"), str(tmp_path / "run5"))  # 'hidden or system files' (round 51)


def test_a_missing_path_whose_name_is_there_in_another_unicode_form_or_case_says_so(tmp_path):
    """A manifest's 'café' (composed) against a file a Mac named 'cafe' + a combining accent, or 'IMG_1.JPG'
    listed as 'img_1.jpg': a plain 'file not found' (round 68)."""
    png(tmp_path / "A" / "Lynx cafe\u0301.png", 1)
    png(tmp_path / "A" / "IMG_1.PNG", 2)
    png(tmp_path / "Cafe\u0301" / "x.png", 3)  # a family folder from a Mac, and one in another case (round 69)
    png(tmp_path / "Felidae" / "z.png", 4)
    rows = ["A/Lynx caf\u00e9.png", "A/img_1.png", "A/none.png", "Caf\u00e9/x.png", "felidae/z.png"]
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"{p},Alpha\n" for p in rows), encoding="utf-8")
    m = build_manifest(str(tmp_path / "m.csv"), SMALL).set_index("path")["reason"]
    assert m[str(tmp_path / rows[0])] == ('file not found (the folder holds "Lynx cafe\\u0301.png", the same name in '
                                          'another Unicode form: write it as the file system has it)')
    assert m[str(tmp_path / rows[1])] == "file not found (the folder holds 'IMG_1.PNG', a name that differs in case)"
    assert m[str(tmp_path / rows[2])] == "file not found"
    assert m[str(tmp_path / rows[3])] == ("file not found (its folder 'Caf\u00e9' is not there; \"Cafe\\u0301\" is, the "
                                          "same name in another Unicode form: write it as the file system has it)")
    assert m[str(tmp_path / rows[4])] == ("file not found (its folder 'felidae' is not there; 'Felidae' is, a name "
                                          "that differs in case)")


@pytest.mark.parametrize("label", ["..", "../../../../tmp/x", "/etc/passwd", ".hidden", "a/b", "C:\\x", "", " ",
                                   "NUL", "x" * 300, "猫科", "\n"])
def test_label_slug_is_one_safe_file_name(label):
    slug = label_slug(label)
    assert slug and "/" not in slug and "\\" not in slug and not slug.startswith(".") and len(slug) <= 69
    assert slug.isascii() and all(c.isalnum() or c in "._-" for c in slug)


def test_label_slug_never_merges_two_labels():
    labels = ["007", "7", "Felidae", "felidae", "a/b", "a_b", "a b", "..", "", " ", "x" * 300, "x" * 301]
    assert len({label_slug(lab) for lab in labels}) == len(labels)
    assert label_slug("Felidae") == label_slug("Felidae")  # stable: the same label, the same name


def test_fetch_folders_keep_a_hostile_label_inside_out(tmp_path):
    """Observed: a label such as ../../../../tmp/x can name a path outside the folder it is written into."""
    from speciesfam.data.fetch import layout as fetch_layout

    snap, out = tmp_path / "snap", tmp_path / "deep" / "er" / "out"
    families = ["../../../../tmp/x", "..", "007", "7", "NA"]
    rows = []
    for i, fam in enumerate(families):
        png(snap / "dataset" / f"t{i}" / f"{100 + i}_{i}_eol_full-size-copy.jpg", i, fmt="JPEG")
        rows.append({"eol_content_id": 100 + i, "eol_page_id": i, "family": fam, "genus": "G", "species": f"s{i}"})
    (snap / "metadata").mkdir()
    pd.DataFrame(rows).to_csv(snap / "metadata" / "rarespecies-catalog.csv", index=False)
    out.mkdir(parents=True)
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)}
    found = fetch_layout(snap, out, folders=True)
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)}
    assert after == before  # nothing written outside --out
    assert sorted(found["label"]) == sorted(families)  # exact labels in manifest.csv
    placed = sorted(p.parent.name for p in (out / "family").rglob("*.jpg"))
    assert placed == sorted(label_slug(f) for f in families)
    m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert sorted(m["label"]) == sorted(families)
    assert all((out / p).resolve().is_relative_to(out) for p in m["path"])
    back = build_manifest(str(out / "manifest.csv"), CatalogConfig(min_images=3))
    assert sorted(back["label"]) == sorted(families)


@pytest.mark.slow  # ~60 s on the shared 2-core machine (Ray Data clean pipeline)
def test_exact_labels_survive_clean_and_nothing_is_written_outside_run(tmp_path, ray_session):
    """Observed: 'NA' and empty labels crashed clean with a TypeError; a label ../../../../tmp/x made clean write
    its gallery outside RUN. (Needs clean's galleries named through label_slug.)"""
    from speciesfam.config import CleanConfig
    from speciesfam.data.clean import run_clean

    labels = ["007", "7", "NA", "../../../../x"]
    rows = [(png(tmp_path / "data" / f"{i}_{j}.png", 40 * i + j * 5), lab) for i, lab in enumerate(labels)
            for j in range(6)] + [(png(tmp_path / "data" / "e.png", 999), "")]
    write_manifest(tmp_path / "data" / "list.csv", rows)
    run = tmp_path / "a" / "b" / "c" / "run"  # deep: a label's ../ would still land inside tmp_path
    manifest = run_catalog(str(tmp_path / "data" / "list.csv"), str(run), SMALL)
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(run)}
    cleaned = run_clean(str(run), CleanConfig(embedder="speciesfam.data.embedders:color_histogram_embedder",
                                              detector="centroid", contamination=0.0, batch_size=8))
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(run)} == before
    assert dict(zip(cleaned["path"], cleaned["label"])) == dict(zip(manifest["path"], manifest["label"]))
    assert sorted(cleaned.loc[cleaned["status"] == "ok", "label"].unique()) == sorted(labels)
    stored = pq.read_table(run / layout.CLEAN_MANIFEST).column("label").to_pylist()
    assert sorted(stored) == sorted(lab for _, lab in rows)
    names = [p.name for p in (run / layout.GALLERY).iterdir()]
    assert all(any(n.startswith(label_slug(lab)) for n in names) for lab in labels), names


def test_a_path_listed_again_survives_clean_and_keeps_its_status(tmp_path, ray_session):
    """A manifest listing a path twice (same label: duplicate; two labels: conflict) goes through clean:
    every row keeps one status, the duplicate keeps its original's split."""
    from speciesfam.config import CleanConfig
    from speciesfam.data.clean import run_clean

    rows = [(png(tmp_path / "data" / f"{lab}{j}.png", 40 * i + j * 5), lab) for i, lab in enumerate(["A", "B"])
            for j in range(6)]
    rows += [(rows[0][0], "A"), (rows[1][0], "B")]  # a duplicate of A0; A1 listed with a second label
    write_manifest(tmp_path / "data" / "list.csv", rows)
    run = tmp_path / "run"
    manifest = run_catalog(str(tmp_path / "data" / "list.csv"), str(run), SMALL)
    cleaned = run_clean(str(run), CleanConfig(embedder="speciesfam.data.embedders:color_histogram_embedder",
                                              detector="centroid", contamination=0.0, batch_size=8))
    assert len(cleaned) == len(rows) and sorted(cleaned["status"]) == sorted(manifest["status"])
    dup = cleaned[cleaned["status"] == layout.DUPLICATE].iloc[0]
    original = cleaned[(cleaned["path"] == dup["path"]) & (cleaned["status"] != layout.DUPLICATE)].iloc[0]
    assert dup["split"] == original["split"]
