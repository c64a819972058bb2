"""evaluate on a labelled set of new images (a CSV or Parquet of paths and families): every row of the set ends in
rows.csv with one status and a reason; an image listed twice is scored once, one listed under two labels not at all.
Uses conftest's probe run and bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import new_image_like


def test_evaluate_scores_a_new_labelled_set_and_accounts_for_every_row(probe_run, probe_bundle, tmp_path, capsys):
    """A labelled CSV of new images (path, label; no catalog run): every row scored or given its status and
    reason, families the model was not trained on left out and said, the labels compared as written."""
    from speciesfam import cli

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    usable = cleaned[cleaned["status"] == "ok"].head(6)
    (tmp_path / "new").mkdir()
    for i, p in enumerate(usable["path"]):  # relative paths, against the CSV's folder
        new_image_like(p, tmp_path / "new" / f"{i}.png")  # other bytes: a byte copy is an image the model has seen
    known = [f"new/{i}.png" for i in range(len(usable))]
    (tmp_path / "new" / "bad.jpg").write_bytes(b"not a jpeg")
    extra = cleaned.loc[cleaned["status"] == "ok", "path"].iloc[6:8]  # other images (a copy is one image: below)
    for i, p in enumerate(extra):
        new_image_like(p, tmp_path / "new" / f"other{i}.png")
    others = [f"new/other{i}.png" for i in range(len(extra))]
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


def test_images_the_model_saw_are_left_out_of_a_new_sets_score(probe_run, probe_bundle, tmp_path, capsys):
    """A "new" labelled set that holds the run's own images (the metadata file catalog read, say): byte copies of
    a train and a val image are `seen`, each with its split's reason, and not scored (exit 0, said on a line of
    their own), so the score is the test images' alone. The bundle lists them by sha256 only, no path. The run's
    own manifest still scores its train split (the user asked for the fit)."""
    from speciesfam import cli
    from speciesfam.evaluate import evaluate

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    ok = cleaned[cleaned["status"] == "ok"]
    (tmp_path / "copies").mkdir()
    picked = [ok[ok["split"] == s].iloc[0] for s in ("train", "val")]
    for row in picked:
        shutil.copy(row["path"], tmp_path / "copies" / f"{row['split']}{Path(row['path']).suffix}")
    test = ok[ok["split"] == "test"]
    paths = [str(tmp_path / "copies" / f"{r['split']}{Path(r['path']).suffix}") for r in picked] + list(test["path"])
    labels = [r["label"] for r in picked] + list(test["label"])
    pd.DataFrame({"path": paths, "label": labels}).to_csv(tmp_path / "mixed.csv", index=False)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "mixed.csv"), "--out",
                     str(tmp_path / "mixed")]) == 0
    assert "evaluate: 2 images of the set are not scored: the model was trained on them or they chose it" in \
        capsys.readouterr().err
    rows = pd.read_csv(tmp_path / "mixed" / "rows.csv", keep_default_na=False)
    assert list(rows["status"]) == ["seen", "seen"] + ["ok"] * len(test)
    assert rows["reason"].iloc[0].startswith("the model was trained on this image (the same bytes are in its run's "
                                             "train split)")
    assert rows["reason"].iloc[1].startswith("this image chose the model (the same bytes are in its run's val split")
    mixed = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    alone = evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", str(tmp_path / "test"))
    assert (mixed["seen"], mixed["images"]) == (2, len(test))
    assert mixed["test_macro_f1"] == alone["test_macro_f1"] and "seen" not in alone or alone["seen"] == 0
    seen = pd.read_parquet(probe_bundle / "seen.parquet")
    assert list(seen.columns) == ["sha256", "split", "copy"]  # no path of the user's in a shipped bundle
    assert set(seen["sha256"]) == set(ok.loc[ok["split"].isin(["train", "val"]), "sha256"])
    fit = evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "train", str(tmp_path / "train"))
    assert fit["images"] == (ok["split"] == "train").sum() and not fit.get("seen")


def test_seen_is_checked_wherever_the_splits_are_not_the_models(probe_run, tmp_path, capsys):
    """The run's own clean_manifest.parquet after catalog and clean ran again scored training images as new (it was
    taken as the model's splits by its place); a bundle without seen.parquet said nothing and counted seen 0
    (hostile tester round 63)."""
    from speciesfam import bundle as B
    from speciesfam import stages
    from speciesfam.bundle import read_config
    from speciesfam.evaluate import evaluate
    from speciesfam.evaluate_warnings import trained_from

    run = Path(shutil.copytree(probe_run, tmp_path / "run", ignore=shutil.ignore_patterns("eval_*")))
    config = read_config(str(run / "bundle"))
    assert trained_from(config, str(run / "clean_manifest.parquet"))
    assert not trained_from(config, str(run / "manifest.parquet"))  # not what it trained from: clean moved, took out
    cleaned = pd.read_parquet(run / "clean_manifest.parquet")
    moved = cleaned.index[(cleaned["status"] == "ok") & (cleaned["split"] == "train")][0]
    cleaned.loc[moved, "split"] = "test"  # as a new draw of the splits may put it
    cleaned.to_parquet(run / "clean_manifest.parquet")
    stages.finish(str(run), "catalog")
    stages.finish(str(run), "clean")
    summary = evaluate(str(run / "bundle"), str(run / "clean_manifest.parquet"), "test", str(tmp_path / "again"))
    assert summary["seen"] == 1 and "1 image of them the model was trained on or chosen by, left out of the score" \
        in summary["warning"]
    rows = pd.read_csv(tmp_path / "again" / "rows.csv", keep_default_na=False).set_index("path")
    assert rows.at[cleaned.at[moved, "path"], "status"] == "seen"

    # a bundle that cannot tell (exported before seen.parquet): said, and seen is null, not 0
    old = Path(shutil.copytree(run / "bundle", tmp_path / "old"))
    (old / "seen.parquet").unlink()
    (old / B.CHECKSUMS).write_text(json.dumps(B.checksums(str(old))))
    ok = cleaned[cleaned["status"] == "ok"]
    ok[["path", "label"]].to_csv(tmp_path / "all.csv", index=False)
    summary = evaluate(str(old), str(tmp_path / "all.csv"), out=str(tmp_path / "old_eval"))
    assert "this bundle cannot tell which images it was trained on (no seen.parquet" in summary["warning"]
    assert json.loads((tmp_path / "old_eval" / "metrics.json").read_text())["seen"] is None
    assert summary["images"] == len(ok)


def test_near_copies_clean_dropped_and_repeated_rows_of_a_seen_image_are_seen(tmp_path):
    """A near-duplicate copy clean dropped from train (status duplicate) is a copy of a training image: scored as
    new, it raised the score; a row listing a seen image again said '(scored once)' though none was scored, then
    counted as a second seen image (a new image listed twice is one ok and one duplicate row)."""
    from speciesfam import seen

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"path": ["a", "b", "c", "d", "e"], "sha256": ["A", "B", "C", "D", "E"],
                  "status": ["ok", "duplicate", "ok", "removed", "ok"], "split": ["train", "train", "val", "train",
                                                                                   "test"],
                  "near_duplicate_group": [0, 0, -1, -1, -1]}).to_parquet(run / "clean_manifest.parquet")
    (tmp_path / "bundle").mkdir()
    assert seen.write(str(run), str(tmp_path / "bundle"), {"catalog": "x", "clean": "y"}) == ""
    table = pd.read_parquet(tmp_path / "bundle" / "seen.parquet")
    assert table.values.tolist() == [["A", "train", False], ["C", "val", False], ["B", "train", True]]
    rows = pd.DataFrame({"path": list("pqrstu"), "status": ["ok", "duplicate", "ok", "ok", "ok", "unreadable"],
                         "reason": ["", "the same image as p (scored once)", "", "", "", "gone"]})
    assert seen.mark(rows, pd.Series(["B", "B", "C", "D", "E", "A"]), str(tmp_path / "bundle")) == 2
    # one image, one seen row: its repeat stays a duplicate (as a new image's repeat), named as seen
    assert list(rows["status"]) == ["seen", "duplicate", "seen", "ok", "ok", "unreadable"]  # removed: never trained
    assert rows["reason"][1] == "the same image as p (seen: not scored)"
    assert rows["reason"][0].startswith("a near-duplicate of an image the model was trained on (clean dropped")
    assert rows["reason"][2].startswith("this image chose the model")
    # the manifest the search trained on: clean's when it read one, even when it is gone (catalog's is not it)
    (run / "clean_manifest.parquet").unlink()
    pd.DataFrame({"path": ["a"], "sha256": ["A"], "status": ["ok"], "split": ["train"]}).to_parquet(
        run / "manifest.parquet")
    assert seen.write(str(run), str(tmp_path / "b2"), {"catalog": "x", "clean": "y"}).startswith(
        f"{run / 'clean_manifest.parquet'} cannot be read")
