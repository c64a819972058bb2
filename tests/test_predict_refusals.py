"""Misuse of predict found by a hostile new user: a folder, manifest or output it cannot use is refused in one line
(exit 2) before any work, a file it cannot read keeps its reason, and its table keeps each file on one line."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from speciesfam import cli, storage
from speciesfam.errors import SpeciesfamError


def test_predict_refuses_an_empty_folder_and_an_output_that_is_not_its_own(tmp_path):
    from speciesfam.predict import input_rows
    from speciesfam.predict_resume import read_done

    (tmp_path / "empty").mkdir()
    with pytest.raises(SpeciesfamError, match="no files in it, nothing to predict"):
        input_rows(str(tmp_path / "empty"))
    for name, body in (("notes.txt", b"hello"), ("broken.parquet", b"PAR1 not really")):
        (tmp_path / name).write_bytes(body)
        with pytest.raises(SpeciesfamError, match=f"{name} exists and is not a speciesfam predictions file"):
            read_done(str(tmp_path / name))


def test_predict_of_a_folder_refuses_a_format_it_would_ignore(tmp_path, capsys):
    """'predict BUNDLE photos/ --format csv' wrote predictions.parquet and said nothing of the CSV asked for."""
    (tmp_path / "photos").mkdir()
    assert cli.main(["predict", str(tmp_path / "bundle"), str(tmp_path / "photos"), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "--format csv is how image files are printed here; a folder or --manifest is written to a Parquet file" \
        in err and "leave --format out" in err, err
    assert not (tmp_path / "predictions.parquet").exists()


def test_predict_refuses_an_output_it_could_not_write_whole_before_any_work(tmp_path):
    """--out DIR/ was refused only after every row was predicted, and --out P.csv lost the top-k lists and read
    its own empty errors back as errors (hostile tester)."""
    from speciesfam.predict import check_out

    (tmp_path / "dir").mkdir()
    for out in (str(tmp_path / "dir"), str(tmp_path / "new") + "/"):
        with pytest.raises(SpeciesfamError, match=r"is a folder; give a file in it, e\.g\. --out .*predictions.parquet"):
            check_out(out)
    with pytest.raises(SpeciesfamError, match=r"written as Parquet .* --out .*p\.parquet"):
        check_out(str(tmp_path / "p.csv"))
    check_out(str(tmp_path / "p.parquet")), check_out(str(tmp_path / "P.PARQUET"))
    from speciesfam.predict import linked_out

    (tmp_path / "latest.parquet").symlink_to(tmp_path / "runs" / "a.parquet")  # a user's link: its target is written
    assert linked_out(str(tmp_path / "latest.parquet")) == str(tmp_path / "runs" / "a.parquet")  # (round 70)
    assert linked_out(str(tmp_path / "p.parquet")) == str(tmp_path / "p.parquet")
    (tmp_path / "theirs").mkdir()  # its parts folder a link: the folder linked to was deleted (round 70)
    (tmp_path / "p.parquet.parts").symlink_to(tmp_path / "theirs")
    with pytest.raises(SpeciesfamError, match=r"p\.parquet\.parts is a link .*deletes it at the end: remove the link"):
        check_out(str(tmp_path / "p.parquet"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SpeciesfamError, match=f"^--out {tmp_path / 'afile' / 'p.parquet'}: {tmp_path / 'afile'} is not a folder; "
                                              "give a folder for the predictions$"):  # found after every row
        check_out(str(tmp_path / "afile" / "p.parquet"))
    with pytest.raises(SpeciesfamError, match="^--out /proc/p.parquet: cannot create a folder in /proc"):  # as root
        check_out("/proc/p.parquet")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"schema": "speciesfam-bundle"}')
    with pytest.raises(SpeciesfamError, match="is inside a bundle"):  # a later export there was refused
        check_out(str(tmp_path / "b" / "p.parquet"))
    with pytest.raises(SpeciesfamError, match="is inside a bundle"):  # a file:// URI is that folder too
        check_out(f"file://{tmp_path / 'b' / 'p.parquet'}")
    # inside the folder predicted: its next predict listed the predictions and their parts as files to predict
    (tmp_path / "imgs").mkdir()
    (tmp_path / "in").symlink_to(tmp_path / "imgs")
    for out, source in ((tmp_path / "imgs" / "p.parquet", tmp_path / "imgs"),
                        (tmp_path / "in" / "sub" / "p.parquet", tmp_path / "imgs"),  # through a link
                        (tmp_path / "imgs" / "p.parquet", f"file://{tmp_path / 'in'}/")):
        with pytest.raises(SpeciesfamError, match=rf"^--out {out} is inside the folder being predicted \(.*\): .* "
                                                  rf"e\.g\. --out {tmp_path}/predictions\.parquet$"):
            check_out(str(out), str(source))
    check_out(str(tmp_path / "imgs.parquet"), str(tmp_path / "imgs"))  # beside it, a name starting alike


def test_predict_rows_of_a_folder_keep_why_a_file_cannot_be_read(tmp_path):
    """A file whose name is not UTF-8 was given 'No such file or directory'; as a path given alone, it made
    predict's folder check raise UnicodeEncodeError (hostile tester)."""
    from speciesfam.predict import input_rows

    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(b"x")
    name = os.fsencode(str(folder)) + b"/caf\xe9.jpg"
    open(name, "wb").close()
    rows = input_rows(str(folder)).set_index("path")["error"]
    (odd,) = [p for p in rows.index if "caf" in p]  # shown with the byte escaped, as catalog shows it
    assert rows[str(folder / "ok.jpg")] == "" and rows[odd].startswith("file name is not valid UTF-8 (a byte of "
                                                                       "another encoding): rename it to UTF-8")
    assert not storage.is_dir(os.fsdecode(name)) and storage.is_dir(str(folder))
    from speciesfam.predict import table_line  # its table line shows it so too (it doubled the '\\': round 68)

    assert table_line({"path": odd, "error": rows[odd]}).startswith(f"{folder}/caf\\xe9.jpg\tERROR: file name is ")


def test_a_path_that_is_not_utf8_is_refused_in_one_line_and_a_file_says_why(tmp_path, capsys):
    """A source folder or --workdir with a Latin-1 byte in its name: a traceback (UnicodeEncodeError in pyarrow,
    the lock file); an image file of such a name given to predict: 'cannot read file: 'utf-8' codec can't encode
    character ...' (hostile tester round 42)."""
    from speciesfam.data.images import DecodeError, read_rgb

    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/src\xe9")
    os.makedirs(os.path.join(odd, "Alpha"))
    for argv, shown in ((["catalog", odd, "--workdir", str(tmp_path / "run")], "SOURCE"),
                        (["catalog", str(tmp_path), "--workdir", odd + "-run"], "--workdir")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{shown} {tmp_path}/src\\xe9" in err and "is not valid UTF-8" in err, err
    assert not os.path.exists(odd + "-run")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(os.path.join(odd, "Alpha", "x.png"))
    with pytest.raises(DecodeError, match=r"^folder name src\\xe9 is not valid UTF-8 .*rename the folder"):
        read_rgb(os.path.join(odd, "Alpha", "x.png"))  # its folder is at fault, not the file (round 44)
    with pytest.raises(DecodeError, match=r"^file not found$"):  # as catalog says it (it printed the path, its
        read_rgb(os.path.join(odd, "Alpha", "gone.png"))  # byte as '\udce9': round 46; the row names the path)
    os.symlink(os.path.join(odd, "nowhere"), os.path.join(odd, "Alpha", "link.png"))
    with pytest.raises(DecodeError, match=r"^broken symbolic link"):
        read_rgb(os.path.join(odd, "Alpha", "link.png"))
    os.symlink("loop.png", os.path.join(odd, "Alpha", "loop.png"))  # '[Errno 40] Too many levels ...' (round 66)
    with pytest.raises(DecodeError, match=r"^broken symbolic link \(target missing, or a link loop\)$"):
        read_rgb(os.path.join(odd, "Alpha", "loop.png"))
    Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(str(tmp_path)) + b"/x\xe9.png"))
    with pytest.raises(DecodeError, match="^file name is not valid UTF-8"):
        read_rgb(os.fsdecode(os.fsencode(str(tmp_path)) + b"/x\xe9.png"))
    # a family folder of such a name holds files: catalog said it held none (its files' rows say why)
    src = tmp_path / "src2"
    for fam in ("Alpha", "Beta", os.fsdecode(b"Gam\xe9")):
        for i in range(3):
            os.makedirs(src / fam, exist_ok=True)
            Image.new("RGB", (8, 8), (i, len(fam), 9)).save(src / fam / f"{i}.png")
    assert cli.main(["catalog", str(src), "--workdir", str(tmp_path / "run2"), "--min-images", "3"]) == 0
    out = capsys.readouterr().out
    assert "holding no file" not in out and "6 ok, 3 unreadable" in out.replace("3 unreadable, 6 ok", "6 ok, 3 unreadable"), out
    # the folder is at fault, not the file (its files were told to rename themselves: round 44)
    reasons = set(pd.read_parquet(tmp_path / "run2" / "manifest.parquet").query("status == 'unreadable'")["reason"])
    assert reasons == {"folder name Gam\\xe9 is not valid UTF-8 (a byte of another encoding): rename the folder to "
                       "UTF-8, e.g. `convmv -f latin1 -t utf8 --notest -r FOLDER`"}, reasons


def test_hidden_and_system_files_in_a_predicted_folder_are_skipped_not_failed(tmp_path):
    """A folder copied from a Mac (.DS_Store) or Windows (Thumbs.db, desktop.ini) made every batch predict exit 1
    (hostile testers); catalog skips the same files; a file that cannot be read still fails predict."""
    from speciesfam.data.sources import read_folder
    from speciesfam.predict import failed, input_rows

    folder = tmp_path / "imgs"
    (folder / "Felidae").mkdir(parents=True)
    junk = [".DS_Store", "Felidae/Thumbs.db", "Felidae/DESKTOP.INI", "Felidae/ehthumbs.db"]
    for name in ["Felidae/ok.jpg", "Felidae/thumbs.db.jpg", *junk]:
        (folder / name).write_bytes(b"x")
    rows = input_rows(str(folder)).set_index("path")
    assert rows.loc[str(folder / ".DS_Store"), "error"].startswith("skipped: hidden")
    assert rows.loc[str(folder / "Felidae/Thumbs.db"), "error"] == (
        "skipped: system file (Windows' thumbnail cache), not an image")
    assert failed(rows).sum() == 0 and (rows["error"] != "").sum() == len(junk)
    catalogued = read_folder(str(folder)).set_index("path")
    assert catalogued["status"].fillna("").to_dict() == {
        str(folder / p): "skipped" if p in junk else "" for p in ["Felidae/ok.jpg", "Felidae/thumbs.db.jpg", *junk]}
    os.mkfifo(folder / "pipe.jpg")
    assert failed(input_rows(str(folder)).set_index("path")).sum() == 1
    # named one by one: a find-made manifest's NAS thumbnails were images, a glob's Thumbs.db a failure (round 49)
    from speciesfam.data.sources import read_manifest

    (folder / "Felidae" / "@eaDir" / "ok.jpg").mkdir(parents=True)
    (folder / "Felidae" / "@eaDir" / "ok.jpg" / "SYNOPHOTO_THUMB_M.jpg").write_bytes(b"x")
    listed = ["Felidae/ok.jpg", "Felidae/Thumbs.db", "Felidae/@eaDir/ok.jpg/SYNOPHOTO_THUMB_M.jpg", ".DS_Store",
              "Felidae/.gone.jpg"]  # a name that is not there: not found, not a hidden file skipped (round 67)
    (folder / "find.csv").write_text("path,label\n" + "".join(f"{p},Felidae\n" for p in listed))
    rows = read_manifest(str(folder / "find.csv"))
    assert rows["status"].fillna("").tolist() == ["", "skipped", "skipped", "skipped", ""], rows
    assert rows["reason"].tolist()[2] == "in a system folder (Synology's thumbnails), not an image of the collection"
    assert input_rows(manifest=str(folder / "find.csv"))["error"].str.startswith("skipped: ").tolist() == \
        [False, True, True, True, False]
    from speciesfam.data.catalog import build_manifest

    m = build_manifest(str(folder / "find.csv")).set_index("path")
    assert m.loc[str(folder / "Felidae/.gone.jpg"), ["status", "reason"]].tolist() == ["unreadable", "file not found"]


def test_a_bundle_given_as_a_file_uri_is_that_folder(tmp_path, capsys):
    """predict and evaluate looked for a bundle given as file:///x at CWD/file:/x (hostile tester)."""
    from speciesfam import cli

    (tmp_path / "m.csv").write_text("path,label\nx.jpg,Felidae\n")
    for argv in (["predict", f"file://localhost{tmp_path}/nob", str(tmp_path)],
                 ["evaluate", f"FILE://{tmp_path}/nob", "--manifest", str(tmp_path / "m.csv")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f" {tmp_path}/nob does not exist" in err and "file:" not in err.lower(), err


def test_predict_table_keeps_a_file_on_one_line_and_its_families_apart():
    """A family with a newline printed one file on two lines; families were two spaces apart, as were the
    words of a family such as '  spaced  '."""
    from speciesfam.predict import table_line

    line = table_line({"path": "/x/a\nb.png", "top": [("line1\nline2", 0.5), ("  spaced  ", 0.25)]})
    assert line.split("\t") == ["/x/a\\nb.png", "line1\\nline2 0.500", "\\x20\\x20spaced\\x20\\x20 0.250"]
    assert table_line({"path": "/x/c.png", "error": "cannot read\tfile"}) == "/x/c.png\tERROR: cannot read\\tfile"
    hint = 'file not found (the folder holds "Cafe\\u0301.png", the same name in another Unicode form)'
    assert table_line({"path": "/x/d.png", "error": hint}) == f"/x/d.png\tERROR: {hint}"  # as written (round 69)
    from speciesfam.seen import files_note  # the seen note's names too: a newline broke its line (round 69)

    note = files_note([{"path": "/x/new\nline.jpg", "seen": "train"}, {"path": "/x/t\tab.jpg", "seen": "val"}])
    assert "\n" not in note and "(1 train, 1 val; /x/new\\nline.jpg, /x/t\\tab.jpg)" in note, note


def test_predict_table_tells_apart_two_families_that_render_alike(capsys):
    """'Café' in its two Unicode forms printed as the same name twice (hostile tester round 28); the reports
    showed them as JSON strings already. CSV and JSON keep the names exactly as written."""
    from speciesfam.predict import print_results

    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    results = [{"path": "a.png", "top": [(nfc, 0.5), (nfd, 0.3), ("Felidae", 0.2)]}]
    print_results(results, "table")
    assert capsys.readouterr().out == 'a.png\t"Caf\\u00e9" 0.500\t"Cafe\\u0301" 0.300\tFelidae 0.200\n'
    print_results(results, "csv")
    assert f"a.png,1,{nfc},0.500000," in capsys.readouterr().out
    # only one of the two among the top ones: it read 'Café' (round 37); the bundle's labels tell
    print_results([{"path": "a.png", "top": [(nfd, 0.5)]}], "table", labels=[nfc, nfd, "Felidae"])
    assert capsys.readouterr().out == 'a.png\t"Cafe\\u0301" 0.500\n'


def test_predict_names_a_semicolon_separated_manifest(tmp_path):
    """catalog said 'save it comma-separated'; predict only that the path column was missing (hostile tester)."""
    from speciesfam.predict import input_rows

    (tmp_path / "semi.csv").write_text("path;label\na.jpg;Felidae\n")
    with pytest.raises(SpeciesfamError, match=r"has no 'path' column \(columns: \['path;label'\]\) \(its header is "
                                              "separated by ';': save it comma-separated, or make its first line sep=;\\)$"):
        input_rows(manifest=str(tmp_path / "semi.csv"))


def test_predict_and_evaluate_name_a_manifest_that_is_neither_csv_nor_parquet(tmp_path):
    """A .tsv or an .xlsx given to predict or evaluate was read as Parquet: 'Parquet magic bytes not found in
    footer' (hostile tester round 64); an .xlsx renamed .csv 'holds NUL bytes'. Catalog's words, the same reader."""
    import zipfile

    from speciesfam.predict import input_rows

    (tmp_path / "list.tsv").write_text("path\tlabel\na.jpg\tFelidae\n")
    with zipfile.ZipFile(tmp_path / "book.xlsx", "w") as book:
        book.writestr("xl/workbook.xml", "<workbook/>")
    (tmp_path / "book.csv").write_bytes((tmp_path / "book.xlsx").read_bytes())
    with pytest.raises(SpeciesfamError, match=r"list.tsv is neither a CSV \(named \*.csv\) nor a Parquet file: give "
                                              r"a .csv or .parquet manifest .*save a .tsv or .xlsx as CSV"):
        input_rows(manifest=str(tmp_path / "list.tsv"))
    for name in ("book.xlsx", "book.csv"):
        with pytest.raises(SpeciesfamError, match=rf"{name} is a zip file \(an Excel .xlsx workbook\?\), not a "
                                                  "manifest: save it as CSV"):
            input_rows(manifest=str(tmp_path / name))
    # a Parquet file of another name is read as before
    import pandas as pd

    pd.DataFrame({"path": [str(tmp_path / "a.jpg")]}).to_parquet(tmp_path / "list.pq")
    assert list(input_rows(manifest=str(tmp_path / "list.pq"))["path"]) == [str(tmp_path / "a.jpg")]
