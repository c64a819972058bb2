"""evaluate's warnings: the run's catalog manifest never replaces the run's own score, scores on the splits that
trained or chose the model are optimistic, rows clean moved into train are named. Uses conftest's probe run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest


def test_the_runs_catalog_manifest_never_replaces_the_runs_own_score(probe_run, probe_bundle):
    """evaluate --manifest RUN/manifest.parquet (which still lists what clean took out) wrote RUN/eval_test,
    the run's own score that the report shows, with no warning (hostile tester)."""
    from speciesfam.evaluate import evaluate

    m = evaluate(str(probe_bundle), str(probe_run / "manifest.parquet"), "test")
    try:
        assert Path(m["out"]).name.startswith("eval_manifest-") and m["run_manifest"] is False
        assert "still lists the images clean took out of the run; the run's own score (the one the report shows) " \
            f"is with --manifest {probe_run / 'clean_manifest.parquet'}" in m["warning"]
    finally:
        shutil.rmtree(m["out"])


@pytest.mark.slow  # three evaluations of a probe bundle (~23 s): the default run stays near 5 minutes
def test_scores_on_the_splits_that_trained_and_chose_the_model_are_said_to_be_optimistic(probe_run, probe_bundle,
                                                                                          tmp_path, capsys):
    """'evaluate RUN/bundle --split train' printed a near-perfect score with no word that the model was trained
    on those images."""
    from speciesfam.evaluate import evaluate

    manifest = str(probe_run / "clean_manifest.parquet")
    elsewhere = shutil.copytree(probe_bundle, tmp_path / "models" / "best")
    for split, note in (("train", "the train split is what this model was trained on: its score measures fit"),
                        ("val", "the val split chose this model (its best epoch and trial): its score is optimistic"),
                        ("test", None)):
        for bundle in (probe_bundle, elsewhere):  # an export to --out elsewhere too (round 37)
            for scored in (manifest, str(probe_run / "manifest.parquet")):  # the catalog's too (round 38)
                evaluate(str(bundle), scored, split, str(tmp_path / split))
                err = capsys.readouterr().err
                assert (note in err) if note else "optimistic" not in err and "measures fit" not in err, (split, err)


def test_a_runs_catalog_manifest_says_which_of_its_rows_clean_moved_into_train(tmp_path):
    """evaluate --manifest RUN/manifest.parquet --split val scored 4 images clean had moved with their
    near-duplicate groups into train: 'macro-F1 1.000', no word (hostile tester round 38)."""
    from speciesfam.evaluate_warnings import moved_warning

    paths = [f"/x/{i}.jpg" for i in range(4)]
    pd.DataFrame({"path": paths, "split": ["val", "val", "val", "test"]}).to_parquet(tmp_path / "manifest.parquet")
    pd.DataFrame({"path": paths, "split": ["train", "val", "test", "test"]}).to_parquet(
        tmp_path / "clean_manifest.parquet")
    rows = pd.DataFrame({"path": paths[:3]})
    assert moved_warning(str(tmp_path / "manifest.parquet"), rows, "val") == (
        f"2 images of these val rows are in another split of {tmp_path / 'clean_manifest.parquet'} (clean moved "
        f"near-duplicate groups into one split; 1 into train: the model trained on it): score --manifest "
        f"{tmp_path / 'clean_manifest.parquet'} instead")
    assert moved_warning(str(tmp_path / "clean_manifest.parquet"), rows, "val") == ""  # its own splits
    assert moved_warning(str(tmp_path / "manifest.parquet"), pd.DataFrame({"path": paths[3:]}), "test") == ""
    # a clean of an older catalog run: its splits are another draw, not clean's moves (round 39: it blamed
    # near-duplicates clean never flagged); split_warning says what holds then
    from speciesfam import stages

    stages.finish(str(tmp_path), "catalog")
    stages.finish(str(tmp_path), "clean")
    assert moved_warning(str(tmp_path / "manifest.parquet"), rows, "val").startswith("2 images of these val rows")
    pd.DataFrame({"path": paths, "split": ["train", "train", "val", "test"]}).to_parquet(tmp_path / "manifest.parquet")
    stages.finish(str(tmp_path), "catalog")  # catalog ran again: new splits
    assert moved_warning(str(tmp_path / "manifest.parquet"), rows, "val") == ""


def test_a_clean_manifest_of_another_clean_run_that_chose_otherwise_is_said_not_comparable(tmp_path):
    """Clean ran again (a stricter --outlier-z) after the export: its clean_manifest.parquet's test split lost a
    hard image and the score rose, with no word (hostile tester round 65). Same catalog, so no split warning; a
    clean run again with the same settings (the same train and val images) is no warning either."""
    from speciesfam import stages
    from speciesfam.evaluate_warnings import recleaned_warning

    stages.finish(str(tmp_path), "catalog")
    stages.finish(str(tmp_path), "clean")
    trained_on = {s: stages.load(str(tmp_path), s)["run_id"] for s in ("catalog", "clean")}
    config = {"trial": {"trained_on": trained_on}}
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    pd.DataFrame({"sha256": ["A", "B", "C"], "split": ["train", "train", "val"], "copy": [False, False, True]}
                 ).to_parquet(bundle / "seen.parquet")
    manifest = tmp_path / "clean_manifest.parquet"
    rows = pd.DataFrame({"sha256": ["A", "B", "C", "D"], "split": ["train", "train", "val", "test"],
                         "status": ["ok", "ok", "duplicate", "ok"]})
    rows.to_parquet(manifest)
    assert recleaned_warning(config, str(manifest), str(bundle)) == ""  # the clean run the model was trained from
    stages.finish(str(tmp_path), "clean")  # clean again, on the same catalog run, the same choices
    assert recleaned_warning(config, str(manifest), str(bundle)) == ""
    rows.assign(status=["ok", "removed", "duplicate", "removed"]).to_parquet(manifest)  # stricter: chose otherwise
    again = stages.load(str(tmp_path), "clean")["run_id"]
    assert recleaned_warning(config, str(manifest), str(bundle)) == (
        f"{manifest} was written by clean run {again[:8]}, not by the one this model was trained from "
        f"({trained_on['clean'][:8]}), and chose otherwise: it keeps 0 train or val images that run took out and "
        "took out 1 that it kept, so it may have taken out other test images too: this score is not comparable "
        "with the model's own (tune and export again on this clean for a model of it)")
