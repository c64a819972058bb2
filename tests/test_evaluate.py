"""evaluate: a bundle scored on its run's test split, on a labelled set of new images, and on rows that cannot be
scored (each row of the set ends in rows.csv with one status and a reason). Uses conftest's probe run and bundle."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from speciesfam.errors import SpeciesfamError


def test_evaluate_a_probe_bundle(probe_run, probe_bundle, tmp_path, capsys):
    from speciesfam import cli
    from speciesfam.evaluate import evaluate

    # the command says what it measured and where the reports are, in one line (it printed a JSON dump)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(probe_run / "clean_manifest.parquet"),
                     "--out", str(tmp_path / "cli")]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("evaluate: test: macro-F1 ") and \
        said[0].endswith(f"(probe bundle); reports in {tmp_path / 'cli'}"), said
    # its log is kept with the run's (the run's own bundle), as every stage's: the frameworks' records were dropped
    log = (probe_run / "logs" / "evaluate.log").read_text()
    assert re.search(r"evaluate ended after [\d.]+ s \(ok\): speciesfam evaluate ", log.splitlines()[-1]), log
    assert f"speciesfam.console: {said[0]}" in log  # what it said, as every stage's log holds (round 41)

    summary = evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", str(tmp_path / "api"))
    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    assert summary["kind"] == "probe"
    assert summary["images"] == ((cleaned["status"] == "ok") & (cleaned["split"] == "test")).sum()
    assert 0 <= summary["test_macro_f1"] <= 1
    assert pd.read_csv(tmp_path / "api" / "per_class.csv")["support"].sum() == summary["images"]
    assert "warning" not in summary  # the run the model was trained on
    # a set of one family's images: the macro-F1 averages only that family, which the line said nowhere (round 49)
    one = cleaned[(cleaned["status"] == "ok") & (cleaned["label"] == cleaned["label"].iloc[0])].head(2)
    one[["path", "label"]].to_csv(tmp_path / "one.csv", index=False)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "one.csv"),
                     "--out", str(tmp_path / "one")]) == 0
    families = len(json.loads((probe_bundle / "labels.json").read_text()))
    per_class = pd.read_csv(tmp_path / "one" / "per_class.csv")
    absent = int((per_class["scored"] & (per_class["support"] == 0)).sum())  # predicted, with no image: F1 0
    assert f"(probe bundle; 1 of its {families} families had images here" + (
        f", {absent} more predicted though absent count{'s' if absent == 1 else ''} as F1 0" if absent else "") + \
        "); reports in " in \
        capsys.readouterr().out

    # The same run after catalog ran again (its splits may be drawn anew): the score is flagged, not trusted.
    from speciesfam import stages

    rerun = tmp_path / "rerun"
    rerun.mkdir()
    shutil.copy(probe_run / "clean_manifest.parquet", rerun)
    shutil.copytree(probe_run / "stages", rerun / "stages")
    for stage in ("clean", "catalog"):  # clean again alone: the same splits; catalog again: clean not yet re-run
        stages.finish(str(rerun), stage)
        assert "warning" not in evaluate(str(probe_bundle), str(rerun / "clean_manifest.parquet"), "test",
                                         str(tmp_path / "again"))
    stages.finish(str(rerun), "clean")  # now clean read the new catalog run: its splits are not the model's
    again = evaluate(str(probe_bundle), str(rerun / "clean_manifest.parquet"), "test", str(tmp_path / "again"))
    assert "clean_manifest.parquet's splits were drawn by catalog run " in again["warning"] and \
        "not by the one this model was trained on" in again["warning"] and again["run_manifest"] is False
    assert "warning" in json.loads((tmp_path / "again" / "metrics.json").read_text())


def test_evaluate_accounts_for_an_image_gone_since_catalog_and_keeps_the_bundle_intact(probe_run, probe_bundle,
                                                                                       tmp_path, capsys):
    """A test image deleted or damaged after catalog ended `evaluate` with a traceback and no reports;
    `--out BUNDLE` overwrote the bundle's metrics.json (predict then refused it); a family unknown to the bundle
    in another split refused the whole evaluation."""
    from speciesfam import cli
    from speciesfam.bundle import load_bundle
    from speciesfam.evaluate import evaluate

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    test = cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "test")]
    gone, broken = tmp_path / "gone.png", tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    messy = cleaned.copy()
    messy.loc[test.index[0], "path"] = str(gone)
    messy.loc[test.index[1], "path"] = str(broken)
    extra = messy.loc[[test.index[2]]].assign(label="Canidae", split="val")  # a family the bundle never saw
    pd.concat([messy, extra], ignore_index=True).to_parquet(tmp_path / "messy.parquet")

    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "messy.parquet"),
                     "--out", str(tmp_path / "eval")]) == 1  # scored, but not every row: like predict
    err = capsys.readouterr().err
    assert "evaluate: 2 test rows are not scored (2 unreadable; each row's reason: " in err and "Traceback" not in err
    # (a damaged file is unreadable, not 'changed': it is both, and unreadable says more)
    rows = pd.read_csv(tmp_path / "eval" / "rows.csv", keep_default_na=False)
    assert len(rows) == len(test) and rows["status"].value_counts().to_dict() == {"ok": len(test) - 2,
                                                                                  "unreadable": 2}
    bad = rows[rows["status"] == "unreadable"].set_index("path")["reason"]
    assert set(bad.index) == {str(gone), str(broken)} and (bad != "").all()
    assert (rows.loc[rows["status"] == "ok", "predicted"] != "").all()
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert summary["images"] == len(test) - 2 and summary["unreadable"] == 2
    from speciesfam.bundle import bundle_id

    assert summary["bundle_id"] == bundle_id(str(probe_bundle))  # the report shows it for this bundle only

    # nothing readable: refused, the reasons kept, and the earlier evaluation's scores there removed (they
    # would pass for this one's)
    messy.loc[messy["split"] == "test", "path"] = str(gone)
    messy.to_parquet(tmp_path / "none.parquet")
    with pytest.raises(SpeciesfamError, match=f"none of the {len(test)} test images .* could be scored "
                                              f"\\({len(test)} unreadable; first: {gone}: "):
        evaluate(str(probe_bundle), str(tmp_path / "none.parquet"), "test", str(tmp_path / "eval"))
    assert pd.read_csv(tmp_path / "eval" / "rows.csv")["status"].eq("unreadable").sum() == len(test)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["rows.csv"]

    with pytest.raises(SpeciesfamError, match="inside the bundle"):
        evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", str(probe_bundle))
    with pytest.raises(SpeciesfamError, match="inside the bundle"):
        evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", str(probe_bundle / "x"))
    load_bundle(str(probe_bundle))  # unchanged: its checksums still hold
    other = Path(shutil.copytree(probe_bundle, tmp_path / "other_bundle"))  # any bundle, not only this one
    with pytest.raises(SpeciesfamError, match=f"--out {other / 'x'} is inside a bundle \\({other}\\)"):
        evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", str(other / "x"))
    with pytest.raises(SpeciesfamError, match=f"--out file://{other / 'x'} is inside a bundle"):  # a file:// URI too
        evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", f"file://{other / 'x'}")
    load_bundle(str(other))


def test_evaluate_writes_only_into_a_new_empty_or_earlier_evaluations_folder(probe_run, probe_bundle, tmp_path):
    """`--out mynotes` replaced the user's own metrics.json and rows.csv; `--out` an image family folder put
    the plots among the images, which the next catalog took for images (hostile tester)."""
    from speciesfam.evaluate import evaluate

    manifest = str(probe_run / "clean_manifest.parquet")
    notes, family = tmp_path / "mynotes", tmp_path / "images" / "Felidae"
    notes.mkdir()
    (notes / "metrics.json").write_text('{"my": "precious notes"}')
    (notes / "rows.csv").write_text("my,table\n")
    family.mkdir(parents=True)
    (family / "cat.jpg").write_bytes(b"jpeg")
    plots = tmp_path / "myplots"  # a report's names, but no earlier evaluation's metrics.json (hostile tester)
    plots.mkdir()
    (plots / "confusion.png").write_bytes(b"mine")
    (plots / "per_class.csv").write_text("family,my_f1\n")
    for out, names in ((notes, "metrics.json, rows.csv"), (family, "cat.jpg"), (plots, "confusion.png, per_class.csv")):
        with pytest.raises(SpeciesfamError, match=f"^--out {out} holds files that are not an earlier evaluation's "
                                                  f"reports \\({names}\\); evaluate writes metrics.json, "):
            evaluate(str(probe_bundle), manifest, "test", str(out))
    assert (notes / "metrics.json").read_text() == '{"my": "precious notes"}' and os.listdir(family) == ["cat.jpg"]
    assert (plots / "confusion.png").read_bytes() == b"mine"
    other_run = tmp_path / "other_run"  # its own eval_test was replaced, and its report lost it (hostile tester)
    from speciesfam import stages

    stages.finish(str(other_run), "catalog")  # catalog's record: a run folder
    with pytest.raises(SpeciesfamError, match=f"^--out {other_run / 'eval_test'} is inside another run folder "
                                              f"\\({other_run}\\) than the bundle's"):
        evaluate(str(probe_bundle), manifest, "test", str(other_run / "eval_test"))
    assert not (other_run / "eval_test").exists()
    # a new folder in the image folder catalog read: the next catalog took the plots for a family's images
    # (hostile tester)
    source = Path(json.loads((probe_run / "stages" / "catalog.json").read_text())["config"]["source"])
    with pytest.raises(SpeciesfamError, match=f"^--out {source / 'eval'} is inside the image folder {source} that "
                                              "catalog read"):
        evaluate(str(probe_bundle), manifest, "test", str(source / "eval"))
    with pytest.raises(SpeciesfamError, match="is inside the image folder"):  # it wrote there (hostile tester)
        evaluate(str(probe_bundle), manifest, "test", f"file://{source / 'eval'}")
    assert not (source / "eval").exists()
    # a labelled CSV of the user's (no catalog's manifest), and the bundle copied out of its run folder: the bundle's
    # run's image folder is still refused (the next catalog took 6 reports for images of a family 'ev'; round 28)
    one = next(p for p in sorted(source.rglob("*")) if p.is_file())
    labelled = tmp_path / "labelled.csv"
    labelled.write_text(f"path,label\n{one},{one.parent.name}\n")
    copied = tmp_path / "copied_bundle"
    shutil.copytree(probe_bundle, copied)
    touched = source.stat().st_mtime_ns
    for bundle in (probe_bundle, copied):
        with pytest.raises(SpeciesfamError, match=f"^--out {source / 'ev'} is inside the image folder {source} "):
            evaluate(str(bundle), str(labelled), None, str(source / "ev"))
    assert not (source / "ev").exists()
    assert source.stat().st_mtime_ns == touched  # not even made and removed there to check it can be (round 29)
    first = evaluate(str(probe_bundle), manifest, "test", str(tmp_path / "eval"))  # new, then again: replaced
    again = evaluate(str(probe_bundle), manifest, "test", str(tmp_path / "eval"))
    assert again["test_macro_f1"] == first["test_macro_f1"]


def test_evaluate_scores_a_new_labelled_set_and_accounts_for_every_row(probe_run, probe_bundle, tmp_path, capsys):
    """A labelled CSV of new images (path, label; no catalog run): every row scored or given its status and
    reason, families the model was not trained on left out and said, the labels compared as written."""
    from speciesfam import cli

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    usable = cleaned[cleaned["status"] == "ok"].head(6)
    (tmp_path / "new").mkdir()
    for i, p in enumerate(usable["path"]):  # relative paths, against the CSV's folder
        shutil.copy(p, tmp_path / "new" / f"{i}{Path(p).suffix}")
    known = [f"new/{i}{Path(p).suffix}" for i, p in enumerate(usable["path"])]
    (tmp_path / "new" / "bad.jpg").write_bytes(b"not a jpeg")
    extra = cleaned.loc[cleaned["status"] == "ok", "path"].iloc[6:8]  # other images (a copy is one image: below)
    for i, p in enumerate(extra):
        shutil.copy(p, tmp_path / "new" / f"other{i}{Path(p).suffix}")
    others = [f"new/other{i}{Path(p).suffix}" for i, p in enumerate(extra)]
    table = pd.DataFrame({"path": [*known, *others, "new/bad.jpg", "", "new/missing.png"],
                          "label": [*usable["label"], "Canidae", f"{usable['label'].iloc[1]} ", "Felidae", "Felidae",
                                    "Felidae"]})
    table.loc[len(table)] = [known[2], None]
    table.to_csv(tmp_path / "labelled.csv", index=False)
    out = tmp_path / "eval"
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "labelled.csv"),
                     "--out", str(out)]) == 1  # scored, but not every row
    last = (probe_bundle.parent / "logs" / "evaluate.log").read_text().splitlines()[-1]
    assert " (exit 1: some rows were not scored): speciesfam evaluate " in last, last  # it said '(ok)'
    said = capsys.readouterr()
    err = said.err
    assert said.out.startswith("evaluate: the whole set: macro-F1 "), said.out  # it said "test macro-F1"
    assert "evaluate: 6 rows of the set are not scored (3 unreadable, 1 unlabelled, 2 unknown_family; " in err, err
    rows = pd.read_csv(out / "rows.csv", keep_default_na=False)
    assert len(rows) == len(table) and (rows["reason"] != "").sum() == 6
    assert list(rows["status"]) == ["ok"] * 6 + ["unknown_family"] * 2 + ["unreadable"] * 3 + ["unlabelled"]
    assert rows["reason"].iloc[7] == f"the bundle has no family {usable['label'].iloc[1] + ' '!r} (it has " \
        f"{usable['label'].iloc[1]!r}: labels are compared exactly as written)"  # as written, the look-alike named
    assert "path is empty" in rows["reason"].iloc[9] and (rows.loc[:5, "predicted"] != "").all()
    summary = json.loads((out / "metrics.json").read_text())
    assert (summary["images"], summary["unreadable"], summary["unlabelled"], summary["unknown_family"]) == (6, 3, 1, 2)
    assert summary["whole_set"] is True and summary["split"] == "test"  # scores named test_* as for a test split
    # the families per_class.csv marks scored are those the macro-F1 averages: a family of none of the set's images
    # that the model predicted counts as F1 0 (it was 'scored: False' yet averaged in; round 40)
    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class.loc[per_class["scored"], "f1"].mean() == pytest.approx(summary["test_macro_f1"])
    assert pd.read_csv(out / "per_class.csv")["support"].sum() == 6

    # with a split column, --split chooses the rows; a split it lacks is refused, naming the splits it has
    table.assign(split=["holdout"] * 3 + ["other"] * (len(table) - 3)).to_csv(tmp_path / "split.csv", index=False)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "split.csv"), "--split",
                     "holdout"]) == 0
    # beside the bundle, named after the set: never taken for the run's own test split (eval_test)
    written = list(probe_bundle.parent.glob("eval_split-*"))
    assert len(written) == 1 and json.loads((written[0] / "metrics.json").read_text())["images"] == 3
    shutil.rmtree(written[0])
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "split.csv")]) == 2
    assert "has no rows in split 'test'; its splits: 'holdout', 'other' (give --split" in capsys.readouterr().err
    assert not list(probe_bundle.parent.glob("eval_split*"))  # refused before writing anything
    # a hidden or system file listed is skipped with its reason, as predict and catalog skip it: no failure (it was
    # 'unreadable' with the reason 'skipped: hidden ...', and exit 1: round 56)
    (tmp_path / "new" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "new" / "Thumbs.db").write_bytes(b"x")
    pd.DataFrame({"path": [*known[:2], "new/.hidden.png", "new/Thumbs.db"],
                  "label": [*usable["label"].iloc[:2], "Felidae", "Felidae"]}).to_csv(tmp_path / "os.csv", index=False)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "os.csv"), "--out",
                     str(tmp_path / "os")]) == 0
    assert "evaluate: 2 hidden or system files skipped (each row's reason: " in capsys.readouterr().err
    rows = pd.read_csv(tmp_path / "os" / "rows.csv", keep_default_na=False)
    assert list(rows["status"]) == ["ok", "ok", "skipped", "skipped"] and rows["reason"].iloc[2].startswith("hidden")
    assert rows["reason"].iloc[3].startswith("system file") and json.loads(
        (tmp_path / "os" / "metrics.json").read_text())["skipped"] == 2
    # rows whose split reads like the one scored ('Test', an empty cell) were left out without a word
    near = pd.DataFrame({"path": known[:5], "label": list(usable["label"].iloc[:5]),
                         "split": ["test", "test ", "Test", None, "train"]})
    near.to_csv(tmp_path / "near.csv", index=False)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "near.csv"), "--out",
                     str(tmp_path / "near")]) == 0
    err = capsys.readouterr().err
    assert "2 rows of " in err and "1 with split 'Test', 1 with no split" in err, err
    summary = json.loads((tmp_path / "near" / "metrics.json").read_text())
    assert summary["images"] == 2 and summary["rows_in_other_splits"] == {"Test": 1, "": 1, "train": 1}
    # the same set as Parquet with null cells (pandas reads them as NaN; evaluate failed with a traceback): a null
    # split is an empty one, a null label an unlabelled row
    near.loc[len(near)] = [known[5], None, "test"]
    near.to_parquet(tmp_path / "near.parquet")
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "near.parquet"), "--out",
                     str(tmp_path / "near_pq")]) == 1  # one row of the split not scored
    assert "1 with split 'Test', 1 with no split" in capsys.readouterr().err
    rows = pd.read_csv(tmp_path / "near_pq" / "rows.csv", keep_default_na=False)
    assert list(rows["status"]) == ["ok", "ok", "unlabelled"] and rows["reason"].iloc[2] == "no label"

    # another run folder's catalog manifest: its own folder beside the bundle (it overwrote the run's eval_test,
    # whose score the report then showed), said to be another run's splits
    other = tmp_path / "other_run"
    other.mkdir()
    shutil.copy(probe_run / "clean_manifest.parquet", other)
    shutil.copytree(probe_run / "stages", other / "stages")
    from speciesfam import stages

    stages.finish(str(other), "catalog")
    stages.finish(str(other), "clean")
    assert not (probe_bundle.parent / "eval_test").exists()
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(other / "clean_manifest.parquet")]) == 0
    assert "not by the one this model was trained on" in capsys.readouterr().err
    written = list(probe_bundle.parent.glob("eval_clean_manifest-*"))
    assert len(written) == 1 and json.loads((written[0] / "metrics.json").read_text())["run_manifest"] is False
    assert not (probe_bundle.parent / "eval_test").exists()
    shutil.rmtree(written[0])

    # mistakes a user makes with a labelled set: each one line (exit 2) saying what to fix, before the model loads
    (tmp_path / "header_only.csv").write_text("path,label\n")
    (tmp_path / "semi.csv").write_text("path;label\nnew/0.png;Felidae\n")
    (tmp_path / "afile").write_text("")
    for argv, said in [
            (["--manifest", str(tmp_path / "labelled.csv"), "--split", "val"], "has no split column, so --split val"),
            (["--manifest", str(tmp_path / "split.csv"), "--split", " "], "--split is empty"),
            (["--manifest", str(tmp_path / "header_only.csv")], "has no rows: nothing to score"),
            (["--manifest", str(tmp_path / "semi.csv")], "is neither a catalog manifest nor a labelled set (columns "
                                                         "'path;label'; "),
            (["--manifest", str(tmp_path / "nope.csv")], "--manifest " + str(tmp_path / "nope.csv") + " does not exist"),
            (["--manifest", str(tmp_path / "labelled.csv"), "--out", str(tmp_path / "afile")], "is a file; give a folder")]:
        assert cli.main(["evaluate", str(probe_bundle), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, (argv, err)


def test_a_labelled_set_scores_an_image_listed_twice_once_and_one_listed_under_two_labels_not_at_all(tmp_path):
    """dup.csv listing an image three times scored it three times, with no word; a copy of it under another name
    was scored again too (catalog keeps one of such files) (hostile tester)."""
    from speciesfam.evaluate import evaluation_rows

    from PIL import Image

    for name, colour in (("a.jpg", 0), ("b.jpg", 1), ("c.jpg", 2), ("copy_of_a.jpg", 0), ("copy_of_b.jpg", 1)):
        Image.new("RGB", (4, 4), (colour, 0, 0)).save(tmp_path / name, format="PNG")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "a.jpg")  # the same file under another name
    pd.DataFrame({"path": ["a.jpg", "b.jpg", "a.jpg", str(tmp_path / "a.jpg"), "c.jpg", "c.jpg", "link.jpg",
                           "copy_of_a.jpg", "copy_of_b.jpg", "gone.jpg"],
                  "label": ["Felidae", "Ranidae", "Felidae", "Felidae", "Felidae", "Canidae", "Felidae", "Felidae",
                            "Canidae", "Felidae"]}).to_csv(tmp_path / "set.csv", index=False)
    rows = evaluation_rows(str(tmp_path / "set.csv"), None)
    assert rows["status"].tolist() == ["ok", "conflict", "duplicate", "duplicate", "conflict", "conflict",
                                       "duplicate", "duplicate", "conflict", "unreadable"]
    assert rows["reason"].iloc[2] == rows["reason"].iloc[7] == f"the same image as {tmp_path / 'a.jpg'} (scored once)"
    assert rows["reason"].iloc[4] == "the same image is listed with labels 'Canidae', 'Felidae': fix its label in " \
                                     "the file"
    assert rows["reason"].iloc[1] == "the same image is listed with labels 'Canidae', 'Ranidae': fix its label in " \
                                     "the file"  # b.jpg, and its copy under another label
    assert rows["reason"].iloc[9] == "file not found"  # as catalog says it (it was "cannot read file: [Errno 2] ...")
    # bytes that are no image are unreadable in every row that lists them: not one image scored once (it was
    # not scored at all), nor one image under two labels (hostile tester)
    for name in ("empty1.jpg", "empty2.jpg"):
        (tmp_path / name).write_bytes(b"")
    for name in ("text1.jpg", "text2.jpg"):
        (tmp_path / name).write_bytes(b"garbage")
    pd.DataFrame({"path": ["empty1.jpg", "empty2.jpg", "text1.jpg", "text2.jpg"],
                  "label": ["Felidae", "Canidae", "Felidae", "Felidae"]}).to_csv(tmp_path / "bad.csv", index=False)
    rows = evaluation_rows(str(tmp_path / "bad.csv"), None)
    assert rows["status"].tolist() == ["unreadable"] * 4, rows
    assert rows["reason"].iloc[2] == rows["reason"].iloc[3] != "" and "row" not in rows["reason"].iloc[2]


def test_an_image_replaced_since_catalog_is_not_scored_as_the_catalogued_one(probe_run, probe_bundle, tmp_path):
    """A test image overwritten by another valid image was scored as if nothing changed: the manifest's sha256
    was never compared (hostile tester)."""
    from PIL import Image

    from speciesfam.evaluate import evaluate

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    test = cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "test")]
    moved = cleaned.copy()
    copy = tmp_path / "replaced.png"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(copy)  # a valid image, not the catalogued one
    moved.loc[test.index[0], "path"] = str(copy)
    moved.to_parquet(tmp_path / "clean_manifest.parquet")
    m = evaluate(str(probe_bundle), str(tmp_path / "clean_manifest.parquet"), "test", str(tmp_path / "eval"))
    assert m["changed"] == 1 and m["images"] == len(test) - 1
    row = pd.read_csv(tmp_path / "eval" / "rows.csv").set_index("path").loc[str(copy)]
    assert row["status"] == "changed" and row["reason"].startswith("changed since catalog (its sha256 is not")


def test_two_bundles_keep_their_own_reports_and_a_replacement_is_said(probe_run, probe_bundle, tmp_path, capsys):
    """Two bundles in one folder, evaluated on the same labelled set, both wrote eval_NAME-HASH: the second
    replaced the first's reports without a word (hostile tester)."""
    from speciesfam import cli
    from speciesfam.bundle import bundle_id, checksums

    first = Path(shutil.copytree(probe_bundle, tmp_path / "b_first"))
    second = Path(shutil.copytree(probe_bundle, tmp_path / "b_second"))
    (second / "MODEL_CARD.md").write_text("another bundle")
    (second / "checksums.json").write_text(json.dumps(checksums(str(second))))
    assert bundle_id(str(first)) != bundle_id(str(second))
    manifest = str(probe_run / "clean_manifest.parquet")
    outs = []
    for bundle in (first, second):
        assert cli.main(["evaluate", str(bundle), "--manifest", manifest, "--split", "val"]) == 0
        said = capsys.readouterr().out
        assert "replaced" not in said, said
        outs.append(said.split("reports in ")[1].split()[0].rstrip(";"))
    assert outs[0] != outs[1] and all(json.loads((Path(o) / "metrics.json").read_text())["bundle_id"] == bundle_id(
        str(b)) for o, b in zip(outs, (first, second)))
    # an --out holding the first bundle's reports: replaced, and the line says whose
    assert cli.main(["evaluate", str(second), "--manifest", manifest, "--split", "val", "--out", outs[0]]) == 0
    assert f"they replaced the reports of another bundle (id {bundle_id(str(first))})" in capsys.readouterr().out


def test_a_split_named_with_spaces_at_its_ends_is_the_split_for_a_run_manifest_too(tmp_path):
    """'--split " test "' scored a labelled set's test rows, but a run manifest's was refused (round 33)."""
    from speciesfam.evaluate import evaluation_rows

    pd.DataFrame({"path": ["a.jpg", "b.jpg"], "label": ["A", "B"], "status": "ok", "split": ["test", "train"],
                  "sha256": "0" * 64, "reason": ""}).to_parquet(tmp_path / "clean_manifest.parquet")
    rows = evaluation_rows(str(tmp_path / "clean_manifest.parquet"), " test ")
    assert list(rows["path"]) == ["a.jpg"] and rows.attrs["split"] == "test"


def test_a_family_the_bundle_lacks_names_the_one_it_looks_like_apart_from_it():
    """'Ursidé' composed in the bundle, decomposed in the labelled set: no hint (only case and spaces were folded),
    and the two names rendered alike (hostile tester round 45). Catalog's look-alike rule, names as JSON where an
    accent is a character of its own."""
    from speciesfam.data.catalog_report import look_alike_key
    from speciesfam.evaluate import no_family

    folded = {look_alike_key(lab): lab for lab in ("Ursid\u00e9", "Felidae")}
    assert no_family("Urside\u0301", folded) == ('the bundle has no family "Urside\\u0301" (it has \'Ursid\u00e9\': '
                                                 "labels are compared exactly as written)")
    for near in ("felidae", "Felidae ", "\uff26elidae", "Feli\u200bdae"):  # case, a space, full-width, invisible
        assert no_family(near, folded).endswith("(it has 'Felidae': labels are compared exactly as written)"), near
    assert no_family("Canidae", folded) == "the bundle has no family 'Canidae'"


def test_the_runs_own_evaluation_folder_is_kept_for_it_and_the_report_follows(probe_run, probe_bundle, tmp_path,
                                                                               capsys):
    """`evaluate RUN/bundle --manifest mine.csv --out RUN/eval_test` replaced the run's own test evaluation, which
    the report showed; `--out RUN/eval_test` of the run's own manifest left the report saying to run evaluate
    (hostile tester round 47)."""
    from speciesfam import cli

    run = tmp_path / "run"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("tune", "eval_*"))
    usable = pd.read_parquet(run / "clean_manifest.parquet").query("status == 'ok'").head(3)
    usable[["path", "label"]].to_csv(tmp_path / "mine.csv", index=False)
    assert cli.main(["evaluate", str(run / "bundle"), "--manifest", str(tmp_path / "mine.csv"), "--out",
                     str(run / "eval_test")]) == 2
    assert "is where the run's own test split's evaluation goes" in capsys.readouterr().err
    assert not (run / "eval_test").exists()
    assert cli.main(["evaluate", str(run / "bundle"), "--manifest", str(run / "clean_manifest.parquet"), "--out",
                     str(run / "eval_test")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {run / 'report.html'}"
    assert "Evaluation on the test split" in (run / "report.html").read_text()
