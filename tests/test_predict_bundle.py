"""predict with an exported probe bundle (conftest's tiny probe search): a folder in Ray Data actors, image files
here, and which inputs the model was trained on or chosen by (column 'seen', the note)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_export import val_rows


@pytest.mark.slow  # two actor pools that each load torch, open_clip and TensorFlow (~1-2 min on 2 cores)
def test_batch_prediction_over_a_folder_accounts_for_every_file_and_resumes(probe_bundle, collection, tmp_path,
                                                                            ray_session, capsys):
    """The probe bundle in Ray Data actors (torch then TensorFlow in each); test_bundle.py runs the same checks,
    resuming aside, on a CNN bundle."""
    from test_bundle import check_batch_prediction

    check_batch_prediction(probe_bundle, collection[0], tmp_path, capsys)


def test_predict_says_which_images_the_model_was_trained_on_or_chosen_by(probe_run, probe_bundle, capsys):
    """Predicting the training images scores the model on what it has seen (evaluate leaves them out; predict said
    nothing: hostile tester). Each such image is named, by content, on stderr beside the printed table (and in a
    batch prediction's column 'seen': test_bundle.check_batch_prediction)."""
    from speciesfam.cli import main

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    usable = cleaned[cleaned["status"] == "ok"]
    val, train, test = (usable[usable["split"] == s]["path"].iloc[0] for s in ("val", "train", "test"))
    assert main(["predict", str(probe_bundle), test, val, train, "--format", "json"]) == 0
    said = capsys.readouterr()
    assert [r.get("seen") for r in json.loads(said.out)] == [None, "val", "train"]
    assert said.err == (f"predict: note: 2 images the model was trained on or chosen by (1 train, 1 val; {val}, "
                        f"{train}): their predictions say nothing of how it does on images it has not seen\n")
    assert main(["predict", str(probe_bundle), test]) == 0 and capsys.readouterr().err == ""
    assert main(["predict", str(probe_bundle), test, val, train, "--format", "csv", "--top-k", "1"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))  # csv had no column for it (round 67)
    assert [r[0] for r in rows] == ["path", test, val, train] and [r[-1] for r in rows] == ["seen", "", "val", "train"]


def test_predict_of_files_says_address_is_not_read_and_logs_which_inputs_failed(probe_run, probe_bundle, tmp_path,
                                                                                capsys):
    """predict of image files took --address silently (only a batch prediction reads it), and predict.log's last
    line said 'exit 1: some inputs could not be predicted' without which (hostile tester round 43)."""
    from speciesfam import cli

    good = val_rows(probe_run)["path"].iloc[0]
    (tmp_path / "bad.jpg").write_bytes(b"x")
    assert cli.main(["predict", str(probe_bundle), good, str(tmp_path / "bad.jpg"), "--address", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "predict: note: --address 127.0.0.1:1 is not read for image files, which are predicted here" in err, err
    log = (probe_run / "logs" / "predict.log").read_text()
    assert f"not predicted: {tmp_path / 'bad.jpg'}: " in log, log[-2000:]


def test_seen_is_worked_out_for_rows_a_resume_keeps_and_a_bundle_without_seen_parquet_says_it_cannot_tell(
        probe_run, probe_bundle, tmp_path, capsys):
    """Rows of an output written before column 'seen' existed, kept by a resume, said nothing of the training
    images among them; a bundle without seen.parquet marked every image unseen, unsaid (hostile tester round 67)."""
    from speciesfam.bundle import CHECKSUMS, bundle_id, checksums
    from speciesfam.cli import main
    from speciesfam.predict import predict_collection
    from speciesfam.predict_resume import file_stamps

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    usable = cleaned[cleaned["status"] == "ok"]
    paths = [usable[usable["split"] == s]["path"].iloc[0] for s in ("train", "val", "test")]
    pd.DataFrame({"path": paths}).to_csv(tmp_path / "m.csv", index=False)

    def older_output(bundle: Path, out: Path) -> None:  # every row done, no 'seen' column: a resume predicts none
        pd.DataFrame({"path": paths, "family": "x", "probability": 0.5, "top_families": [["x"]] * 3,
                      "top_probabilities": [[0.5]] * 3, "error": "", "bundle_id": bundle_id(str(bundle)),
                      "stamp": file_stamps(paths, [""] * 3)}).to_parquet(out)

    older_output(probe_bundle, tmp_path / "p.parquet")
    table = predict_collection(str(probe_bundle), str(tmp_path / "p.parquet"), manifest=str(tmp_path / "m.csv"),
                               top_k=1)
    assert table["seen"].tolist() == ["train", "val", ""]
    assert "predict: note: 2 images the model was trained on or chosen by (1 train, 1 val; column 'seen')" in \
        capsys.readouterr().out
    assert pd.read_parquet(tmp_path / "p.parquet")["seen"].tolist() == ["train", "val", ""]
    blind = Path(shutil.copytree(probe_bundle, tmp_path / "blind"))  # exported before seen.parquet existed
    (blind / "seen.parquet").unlink()
    (blind / CHECKSUMS).write_text(json.dumps(checksums(str(blind))))
    older_output(blind, tmp_path / "b.parquet")
    table = predict_collection(str(blind), str(tmp_path / "b.parquet"), manifest=str(tmp_path / "m.csv"), top_k=1)
    assert table["seen"].isna().all()
    assert "predict: note: this bundle cannot tell which images it was trained on (no seen.parquet: exported " \
           "before it existed, or from a run whose manifest was gone): column 'seen' is empty" in capsys.readouterr().out
    assert main(["predict", str(blind), paths[0], "--format", "json"]) == 0
    said = capsys.readouterr()
    assert "seen" not in json.loads(said.out)[0] and said.err.startswith("predict: note: this bundle cannot tell ")
