"""The demo pipeline end to end (tiny settings): every artifact is written and the bundle predicts."""

import json

import numpy as np
import pandas as pd
import pytest


pytestmark = pytest.mark.slow  # see README: the default run skips these, .ci/run runs them

def test_demo_writes_every_artifact(demo_run):
    workdir, out = demo_run
    for name, path in out["artifacts"].items():
        assert __import__("os").path.exists(path), name
    trials = pd.read_csv(workdir / "trials.csv")
    assert len(trials) == 1 and (trials["status"] == "ok").all()
    assert trials["best_val_macro_f1"].between(0, 1).all()
    cleaned = pd.read_parquet(workdir / "clean_manifest.parquet")
    assert (cleaned["status"] == "removed").sum() == len(pd.read_csv(workdir / "removed.csv"))
    labels = json.loads((workdir / "bundle" / "labels.json").read_text())
    assert labels == sorted(cleaned.loc[cleaned["status"] == "ok", "label"].unique())


def test_demo_predictions_have_probabilities(demo_run):
    _, out = demo_run
    preds = out["predictions"]
    assert len(preds) == 6
    for p in preds:
        probs = [prob for _, prob in p["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_exported_model_matches_the_checkpoint(demo_run):
    import keras

    from speciesfam.bundle import load_bundle
    from speciesfam.export import choose_trial

    workdir, _ = demo_run
    predictor = load_bundle(str(workdir / "bundle"))
    assert predictor.kind == "cnn"
    ckpt = choose_trial(str(workdir))[0]["best_checkpoint"]
    trained = keras.saving.load_model(f"{ckpt}/model.keras", safe_mode=True)
    size = predictor.image_size
    x = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    np.testing.assert_allclose(predictor.predict(list(x)), trained.predict_on_batch(x.astype("float32")),
                               rtol=1e-5, atol=1e-6)


def test_saved_model_serves_the_same_top1(demo_run):
    import tensorflow as tf

    from speciesfam.bundle import load_bundle

    workdir, _ = demo_run
    predictor = load_bundle(str(workdir / "bundle"))
    served = tf.saved_model.load(str(workdir / "bundle" / "saved_model"))
    size = predictor.image_size
    x = np.random.default_rng(1).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(served.serve(x.astype("float32"))).argmax(1),
                                  predictor.predict(list(x)).argmax(1))


def test_damaged_or_incomplete_bundle_gives_a_clear_error(demo_run, tmp_path):
    import shutil

    from speciesfam.bundle import BundleError, checksums, load_bundle

    workdir, _ = demo_run
    broken = tmp_path / "bundle"
    shutil.copytree(workdir / "bundle", broken)
    (broken / "labels.json").unlink()
    with pytest.raises(BundleError, match=r"missing \['labels.json'\]"):
        load_bundle(str(broken))
    (broken / "labels.json").write_text("[]")
    with pytest.raises(BundleError, match=r"\['labels.json'\] changed since export"):
        load_bundle(str(broken))
    shutil.copy(workdir / "bundle" / "labels.json", broken / "labels.json")
    (broken / "model.keras").write_bytes(b"not a zip")
    (broken / "checksums.json").write_text(json.dumps(checksums(str(broken))))
    with pytest.raises(BundleError, match="damaged: model.keras does not load"):
        load_bundle(str(broken))


def test_predict_cli_reports_a_bad_file_and_goes_on(demo_run, tmp_path, capsys):
    from speciesfam.cli import main
    from speciesfam.demo import demo_images

    workdir, _ = demo_run
    good = sorted((__import__("pathlib").Path(demo_images()) / "Felidae").glob("felidae_00*.jpg"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    import os

    os.mkfifo(tmp_path / "pipe.jpg")  # opened, it would block predict forever
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/d\xff/a.jpg")  # in a folder whose name is not UTF-8
    os.makedirs(os.path.dirname(odd))
    __import__("shutil").copy(good[0], odd)
    rc = main(["predict", str(workdir / "bundle"), str(good[0]), str(bad), str(good[1]), str(tmp_path / "pipe.jpg"),
               "http://example.org/a.jpg", odd, "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 1 and [("error" in r) for r in rows] == [False, True, False, True, True, True]
    assert "top" in rows[2] and rows[3]["error"] == "cannot read file: not a regular file (a FIFO)"
    assert rows[4]["error"].startswith("unsupported URI scheme 'http://'")
    # shown as catalog shows it (it read '\udcff'), the folder named as the one to rename (round 44)
    assert rows[5]["path"] == f"{tmp_path}/d\\xff/a.jpg" and rows[5]["error"].startswith("folder name d\\xff is not")


def test_evaluate_writes_reports_for_the_test_split(demo_run, tmp_path):
    from speciesfam.errors import SpeciesfamError
    from speciesfam.evaluate import evaluate

    workdir, _ = demo_run
    summary = evaluate(str(workdir / "bundle"), str(workdir / "clean_manifest.parquet"), "test", str(tmp_path))
    cleaned = pd.read_parquet(workdir / "clean_manifest.parquet")
    assert summary["images"] == ((cleaned["status"] == "ok") & (cleaned["split"] == "test")).sum()
    assert 0 <= summary["test_macro_f1"] <= 1 and 0 <= summary["test_accuracy"] <= 1
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert list(per_class.columns) == ["family", "precision", "recall", "f1", "support", "scored"]
    assert per_class["support"].sum() == summary["images"] and per_class.loc[per_class["support"] > 0, "scored"].all()
    assert per_class.loc[per_class["scored"], "f1"].mean() == pytest.approx(summary["test_macro_f1"])  # what it averages
    for name in ("confusion.png", "per_class_f1.png", "confused_pairs.csv", "metrics.json"):
        assert (tmp_path / name).exists(), name
    with pytest.raises(SpeciesfamError, match="no usable rows in split 'nope'"):
        evaluate(str(workdir / "bundle"), str(workdir / "clean_manifest.parquet"), "nope", str(tmp_path))


def test_predict_csv_format(demo_run, capsys):
    from speciesfam.cli import main
    from speciesfam.demo import demo_images

    workdir, _ = demo_run
    img = sorted((__import__("pathlib").Path(demo_images()) / "Ranidae").glob("ranidae_00*.jpg"))[0]
    assert main(["predict", str(workdir / "bundle"), str(img), "--format", "csv", "--top-k", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "path,rank,family,probability,error,seen" and len(rows) == 3


def test_the_demo_runs_again_in_its_own_folder(demo_run, tmp_path):
    """A second `speciesfam demo` in the same folder was refused at its search ('--name demo: a search of that
    name already ran on this run folder's catalog and clean'): catalog and clean, the same again, keep their run
    ids (round 73). The demo starts its search over."""
    import shutil

    import pandas as pd

    from speciesfam.demo import run_demo

    workdir = shutil.copytree(demo_run[0], tmp_path / "demo")
    run_demo(str(workdir), num_samples=1, max_epochs=2)
    trials = pd.read_csv(workdir / "trials.csv")
    assert len(trials) == 1 and trials["trial_path"].str.startswith(str(workdir)).all(), trials
