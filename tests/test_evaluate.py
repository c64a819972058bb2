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

    from speciesfam import console

    with pytest.MonkeyPatch.context() as mp:  # a line every 30 s while it predicts (80 s of silence: round 62)
        mp.setattr(console, "PROGRESS_EVERY_S", 0.0)
        summary = evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test",
                           str(tmp_path / "api"), batch_size=2)
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluate: ")]
    assert progress and all(re.fullmatch(rf"evaluate: \d+/{summary['images']} images predicted", p) for p in progress)
    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    assert summary["kind"] == "probe"
    assert summary["images"] == ((cleaned["status"] == "ok") & (cleaned["split"] == "test")).sum()
    assert 0 <= summary["test_macro_f1"] <= 1
    assert pd.read_csv(tmp_path / "api" / "per_class.csv")["support"].sum() == summary["images"]
    assert "warning" not in summary  # the run the model was trained on
    # a set of one family's images: the macro-F1 averages only that family, which the line said nowhere (round 49)
    scored = pd.read_csv(tmp_path / "api" / "rows.csv")  # test images (the model has not seen them), one mistaken
    scored = scored[scored["status"] == "ok"]
    wrong = scored[scored["predicted"] != scored["label"]].iloc[:1]
    one = pd.concat([wrong, scored[(scored["label"] == wrong["label"].iloc[0]) & ~scored.index.isin(wrong.index)]])
    one = one.head(2)
    one[["path", "label"]].to_csv(tmp_path / "one.csv", index=False)
    from speciesfam import plots

    plotted = []
    with pytest.MonkeyPatch.context() as mp:  # the families the per-family plot draws
        mp.setattr(plots, "per_class_f1", lambda table, path: plotted.extend(table["family"]))
        assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "one.csv"),
                         "--out", str(tmp_path / "one")]) == 0
    families = len(json.loads((probe_bundle / "labels.json").read_text()))
    per_class = pd.read_csv(tmp_path / "one" / "per_class.csv")
    absent = int((per_class["scored"] & (per_class["support"] == 0)).sum())  # predicted, with no image: F1 0
    # every family the macro-F1 averages, those at F1 0 for want of an image too (it left them out: round 62)
    assert absent and sorted(plotted) == sorted(per_class.loc[per_class["scored"], "family"])
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
        if stage == "clean":  # clean again with other settings: other choices, a score not comparable (round 65)
            cleaned = pd.read_parquet(rerun / "clean_manifest.parquet")
            cleaned.loc[cleaned.index[(cleaned["status"] == "ok") & (cleaned["split"] == "train")][0], "status"] = \
                "removed"
            cleaned.to_parquet(rerun / "clean_manifest.parquet")
            stages.finish(str(rerun), "clean")  # what that clean wrote (a table it did not write is refused)
            assert "and chose otherwise: it keeps 0 train or val images that run took out and took out 1" in evaluate(
                str(probe_bundle), str(rerun / "clean_manifest.parquet"), "test", str(tmp_path / "again"))["warning"]
            shutil.copy(probe_run / "clean_manifest.parquet", rerun)
            stages.finish(str(rerun), "clean")
    stages.finish(str(rerun), "clean")  # now clean read the new catalog run: its splits are not the model's
    again = evaluate(str(probe_bundle), str(rerun / "clean_manifest.parquet"), "test", str(tmp_path / "again"))
    assert "clean_manifest.parquet's splits were drawn by catalog run " in again["warning"] and \
        "not by the one this model was trained on" in again["warning"] and again["run_manifest"] is False
    assert "warning" in json.loads((tmp_path / "again" / "metrics.json").read_text())
    # whatever another catalog run drew, the images the model saw are told by their bytes (seen.parquet)
    assert "none of these images is one the model was trained on or chosen by (checked by content)" in again["warning"]
    with pytest.raises(SpeciesfamError, match=r"none of the \d+ train images of .* could be scored \(\d+ seen; first: "
                                              r".*: the model was trained on this image"):
        evaluate(str(probe_bundle), str(rerun / "clean_manifest.parquet"), "train", str(tmp_path / "fit"))


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


def test_two_bundles_of_one_run_keep_their_own_evaluations(probe_run, probe_bundle, tmp_path, capsys):
    """`export --out RUN/other` and RUN/bundle, each evaluated on the run's test split: both wrote RUN/eval_test,
    the second replacing the first's reports (noted in round 66). RUN/bundle keeps eval_test, which the report
    shows, whichever was exported last (round 71); the other bundle's goes beside it under its own name."""
    from speciesfam import cli

    run = tmp_path / "run"
    shutil.copytree(probe_run, run, ignore=shutil.ignore_patterns("eval_*"))
    assert cli.main(["export", "--workdir", str(run), "--out", str(run / "other")]) == 0  # the run's last export
    outs = []
    for bundle in (run / "other", run / "bundle"):
        assert cli.main(["evaluate", str(bundle), "--manifest", str(run / "clean_manifest.parquet")]) == 0
        outs.append(capsys.readouterr().out.split("reports in ")[1].split()[0].rstrip(";"))
    assert outs[1] == str(run / "eval_test") and Path(outs[0]).name.startswith("eval_test-other-"), outs
    assert all((Path(o) / "metrics.json").exists() for o in outs)
    assert cli.main(["export", "--workdir", str(run)]) == 0  # RUN/bundle exported last: the same folders
    assert cli.main(["evaluate", str(run / "other"), "--manifest", str(run / "clean_manifest.parquet")]) == 0
    assert f"reports in {outs[0]}" in capsys.readouterr().out
