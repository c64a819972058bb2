"""CNN bundles from a checkpoint written by the training code itself (no Ray, no search): prediction like the
checkpoint's, batch prediction, and bundles that are damaged or edited refused in one line (export's folder
handling: tests/test_export_folder.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from speciesfam import layout
from speciesfam.errors import SpeciesfamError

from cnn_trial import LABELS, write_cnn_trial

def test_cnn_bundle_predicts_like_its_checkpoint_from_raw_images(cnn_bundle):
    import keras
    import tensorflow as tf
    from PIL import Image

    from speciesfam.bundle import load_bundle

    workdir, ckpt, bundle = cnn_bundle
    predictor = load_bundle(str(bundle))
    assert predictor.kind == "cnn" and predictor.labels == LABELS
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 50), (32, 32), (100, 70))]
    probs = predictor.predict(images)
    assert probs.shape == (3, len(LABELS)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    resized = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.Resampling.BILINEAR))
                        for im in images]).astype("float32")
    trained = keras.saving.load_model(str(ckpt / "model.keras"), safe_mode=True)
    np.testing.assert_allclose(probs, trained.predict_on_batch(resized), rtol=1e-5, atol=1e-6)
    served = tf.saved_model.load(str(bundle / "saved_model"))
    np.testing.assert_array_equal(np.asarray(served.serve(resized)).argmax(1), probs.argmax(1))
    config = json.loads((bundle / "config.json").read_text())
    assert config["schema"] == "speciesfam-bundle" and config["kind"] == "cnn" and config["image_size"] == 32
    assert json.loads((bundle / "labels.json").read_text()) == LABELS
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "kind: **cnn**" in card and "| 7 | 0.250 |" in card



def test_predicting_files_skips_system_files_a_glob_named(cnn_bundle, tmp_path, capsys):
    """`predict BUNDLE dir/*` named Thumbs.db and x.png:Zone.Identifier: error lines and exit 1, though a folder
    skips them (round 49)."""
    from PIL import Image

    from speciesfam import cli

    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "x.png")
    (tmp_path / "Thumbs.db").write_bytes(b"cache")
    (tmp_path / "x.png:Zone.Identifier").write_text("[ZoneTransfer]\n")
    files = [str(tmp_path / n) for n in ("x.png", "Thumbs.db", "x.png:Zone.Identifier")]
    assert cli.main(["predict", str(cnn_bundle[2]), *files, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert "top" in rows[0] and [r.get("error", "")[:9] for r in rows] == ["", "skipped: ", "skipped: "], rows
    assert err.splitlines()[0] == "predict: 2 hidden or system files skipped"  # as a folder's batch prediction
    assert err.splitlines()[1:] == ["predict: note: this bundle cannot tell which images it was trained on (no "
                                    "seen.parquet: exported before it existed, or from a run whose manifest was gone)"]
    assert cli.main(["predict", str(cnn_bundle[2]), *files[:2]]) == 0  # the table: not labelled an ERROR
    assert capsys.readouterr().out.splitlines()[1] == f"{files[1]}\tSKIPPED: system file (Windows' thumbnail " \
        "cache), not an image"
    (tmp_path / "notes.jpg").write_text("not an image")  # a failure is counted on stderr: exit 1 with no word
    assert cli.main(["predict", str(cnn_bundle[2]), *files, str(tmp_path / "notes.jpg")]) == 1  # where stdout
    assert capsys.readouterr().err.splitlines()[:2] == [  # went to a file (round 66)
        "predict: 2 hidden or system files skipped",
        f"predict: 1 of 4 files could not be predicted ({tmp_path / 'notes.jpg'}): the output says why"]


def test_export_refuses_unknown_or_failed_trials(cnn_bundle):
    from speciesfam.errors import SpeciesfamError
    from speciesfam.export import export_bundle

    workdir, _, _ = cnn_bundle
    with pytest.raises(SpeciesfamError, match="trial 'nope' is not in"):
        export_bundle(str(workdir), trial_id="nope")
    with pytest.raises(SpeciesfamError, match="--trial is empty"):  # exported the best trial unsaid
        export_bundle(str(workdir), trial_id=" ")


def test_a_trial_that_failed_after_its_checkpoint_is_exported_only_as_such(tmp_path):
    """`--trial ID` of a trial whose loss became NaN after a good epoch shipped it with no word of the failure."""
    from speciesfam.export import export_bundle

    write_cnn_trial(tmp_path, "good0001", f1=0.5)
    write_cnn_trial(tmp_path, "nan00002", f1=0.4, seed=1)
    trials = pd.read_csv(tmp_path / layout.TRIALS, dtype={"trial_id": str, "error": str})
    trials.loc[trials["trial_id"] == "nan00002", ["status", "error"]] = "error", "FloatingPointError: loss nan"
    trials.to_csv(tmp_path / layout.TRIALS, index=False)
    assert json.loads((Path(export_bundle(str(tmp_path), out=str(tmp_path / "best"))) / "metrics.json").read_text()
                      ).get("status") is None  # the best (ok) trial: nothing to say
    bundle = Path(export_bundle(str(tmp_path), trial_id="nan00002", out=str(tmp_path / "failed")))
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert (metrics["status"], metrics["error"]) == ("error", "FloatingPointError: loss nan")
    assert "this trial then failed (error: FloatingPointError: loss nan)" in (bundle / "MODEL_CARD.md").read_text()


def test_evaluating_a_cnn_bundle_decodes_large_photos_straight_to_its_input_size(cnn_bundle, tmp_path):
    """Three 2,500 px photos (18.75 MB each decoded): evaluate never holds one at full size, and scores them as
    the predictor does (which resizes whatever it gets)."""
    import tracemalloc

    from PIL import Image

    from speciesfam.bundle import load_bundle
    from speciesfam.evaluate import evaluate

    _, _, bundle = cnn_bundle
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        small = rng.integers(0, 256, (25, 25, 3), dtype=np.uint8)  # smooth after upscaling: a fast, small JPEG
        Image.fromarray(small).resize((2500, 2500), Image.Resampling.BILINEAR).save(tmp_path / f"{i}.jpg")
        paths.append(str(tmp_path / f"{i}.jpg"))
    pd.DataFrame({"path": paths, "label": LABELS[:3]}).to_csv(tmp_path / "set.csv", index=False)
    tracemalloc.start()
    try:
        m = evaluate(str(bundle), str(tmp_path / "set.csv"), out=str(tmp_path / "eval"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert m["images"] == 3 and peak < 2500 * 2500 * 3, f"{peak / 2**20:.1f} MB traced at the peak"
    full = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    expected = np.asarray(LABELS)[load_bundle(str(bundle)).predict(full).argmax(1)]
    assert pd.read_csv(tmp_path / "eval" / "rows.csv", keep_default_na=False)["predicted"].tolist() == list(expected)


def check_batch_prediction(bundle: Path, collection_root: Path, tmp_path: Path, capsys,
                           resume: bool = True) -> tuple[Path, Path]:
    """``speciesfam predict BUNDLE FOLDER --out P``: one row per file (corrupt and non-image files get an
    error row), the in-process predictor's top-k, then (``resume``) a resumed run predicts only what a killed
    one left.

    Returns:
        (the folder predicted, the predictions file).
    """
    import shutil

    from speciesfam.cli import main
    from speciesfam.predict import predict_collection, predict_files

    folder = Path(shutil.copytree(collection_root, tmp_path / "photos"))
    (folder / "notes.txt").write_text("not an image")
    (folder / "Felidae" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "Felidae" / "gone.jpg").symlink_to(folder / "deleted.jpg")  # a broken link
    first = sorted((folder / "Ranidae").iterdir())[0]
    (folder / "Ranidae" / "alias.jpg").symlink_to(first.name)  # a link to a file listed: a row of its own
    (folder / "again").symlink_to("Ranidae")  # a link to a folder listed: not walked twice (counted)
    hidden = folder / "Felidae" / ".thumb.jpg"  # a real image, but hidden: skipped with a reason, as catalog does
    shutil.copyfile(sorted(Path(collection_root, "Felidae").glob("*.jpg"))[0], hidden)
    files = sorted(str(p) for p in folder.rglob("*") if (p.is_file() or p.is_symlink()) and "again" not in p.parts)
    out = tmp_path / "predictions.parquet"
    rc = main(["predict", str(bundle), str(folder), "--out", str(out), "--top-k", "2", "--batch-size", "8"])
    said = capsys.readouterr().out
    assert rc == 1 and f"wrote {out}: {len(files)} rows" in said  # 1: some rows failed (not the hidden one)
    assert "with an error (see its 'error' column), 1 hidden or system file skipped" in said, said
    assert "(1 link to folders already listed: not walked again)" in said
    table = pd.read_parquet(out)
    assert sorted(table["path"]) == files and table["path"].is_unique  # every file, once
    bad = table[table["error"] != ""]
    assert {Path(p).name for p in bad["path"]} >= {"notes.txt", "broken.jpg", "gone.jpg", ".thumb.jpg"}
    assert table.set_index("path").loc[str(hidden), "error"].startswith("skipped: hidden")
    assert bad["family"].isna().all() and bad["top_families"].map(len).eq(0).all()
    good = table[table["error"] == ""].set_index("path")
    assert good["top_families"].map(len).eq(2).all() and good["probability"].between(0, 1).all()
    sample = sorted(good.index)[:4]
    for r in predict_files(str(bundle), sample, top_k=2):  # the same as the in-process predictor
        assert list(good.loc[r["path"], "top_families"]) == [f for f, _ in r["top"]]
        np.testing.assert_allclose(good.loc[r["path"], "top_probabilities"], [q for _, q in r["top"]], atol=1e-4)
        assert r.get("seen", "") == (good.loc[r["path"], "seen"] or "")  # (None: the bundle cannot tell)
    # the images the model was trained on or chosen by (predictions of them say little of new images): by content
    if (bundle / "seen.parquet").exists():
        splits = pd.read_parquet(bundle / "seen.parquet").set_index("sha256")["split"]
        content = good.index.map(lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest())
        assert good["seen"].tolist() == [splits.get(c, "") for c in content] and (bad["seen"] == "").all()
        hits = good["seen"][good["seen"] != ""]
        assert (f"predict: note: {len(hits)} images the model was trained on or chosen by (" in said) == bool(len(hits))
    else:  # it cannot tell, and says so
        assert table["seen"].isna().all() and "predict: note: this bundle cannot tell which images" in said
    assert not Path(f"{out}.parts").exists()
    if not resume:
        return folder, out

    # Resume: a run killed after its first part kept that part; only the other rows are predicted again.
    parts = Path(f"{out}.parts")
    parts.mkdir()
    table.iloc[:5].to_parquet(parts / "part-a.parquet")
    out.unlink()
    again = predict_collection(str(bundle), str(out), source=str(folder), top_k=2, batch_size=8)
    assert f"{len(files)} rows, 5 already in" in capsys.readouterr().out
    assert again["path"].tolist() == files  # in the input's order, each once (the resumed rows were appended)
    assert len(predict_collection(str(bundle), str(out), source=str(folder), top_k=2)) == len(files)  # nothing left
    with pytest.raises(SpeciesfamError, match="holds predictions with --top-k 2 \\(this run: 3\\)"):  # 2 shapes
        predict_collection(str(bundle), str(out), source=str(folder), top_k=3)
    # A file changed since its row was written (the corrupt one replaced by a real image): predicted again, its
    # old row replaced (a resume kept the stale error, and exit 1, hostile tester)
    shutil.copyfile(sample[0], folder / "Felidae" / "broken.jpg")
    again = predict_collection(str(bundle), str(out), source=str(folder), top_k=2, batch_size=8)
    assert f"{len(files)} rows, {len(files) - 1} already in {out}, 1 to predict (1 of them changed" in \
        capsys.readouterr().out
    assert sorted(again["path"]) == files and again["path"].is_unique
    fixed = again.set_index("path").loc[str(folder / "Felidae" / "broken.jpg")]
    assert fixed["error"] == "" and list(fixed["top_families"]) == list(good.loc[sample[0], "top_families"])
    # A file deleted since: its row is left out and said (every resume was refused as "another input")
    Path(sample[1]).unlink()
    again = predict_collection(str(bundle), str(out), source=str(folder), top_k=2, batch_size=8)
    assert f"predict: 1 row in {out} of files deleted since (e.g. '{sample[1]}'): left out of it\n" in \
        capsys.readouterr().out
    assert sorted(again["path"]) == [f for f in files if f != sample[1]] and again["path"].is_unique
    return folder, out


@pytest.mark.slow  # Ray Data actors (~20 s): the default run stays near 5 minutes
def test_batch_prediction_of_a_folder_accounts_for_every_file(cnn_bundle, collection, tmp_path, ray_session, capsys):
    import shutil

    from speciesfam.bundle import checksums
    from speciesfam.errors import SpeciesfamError
    from speciesfam.predict import predict_collection

    _, _, bundle = cnn_bundle
    # resuming is the same for every bundle: test_predict_bundle.py's probe bundle checks it (~20 s more each)
    folder, out = check_batch_prediction(bundle, collection[0], tmp_path, capsys, resume=False)
    other = Path(shutil.copytree(bundle, tmp_path / "other"))
    (other / "MODEL_CARD.md").write_text("edited")
    (other / "checksums.json").write_text(json.dumps(checksums(str(other))))
    with pytest.raises(SpeciesfamError, match="predictions of another bundle"):
        predict_collection(str(other), str(out), source=str(folder))
    pd.DataFrame({"a": [1], "b": [2]}).to_parquet(tmp_path / "notes.parquet")  # another program's table
    with pytest.raises(SpeciesfamError, match="notes.parquet exists and is not a speciesfam predictions file"):
        predict_collection(str(bundle), str(tmp_path / "notes.parquet"), source=str(folder))
    assert pd.read_parquet(tmp_path / "notes.parquet").to_dict("list") == {"a": [1], "b": [2]}
    with pytest.raises(SpeciesfamError, match="--top-k 0: give 1 or more"):
        predict_collection(str(bundle), str(tmp_path / "k.parquet"), source=str(folder), top_k=0)
    # a manifest row no filesystem here can read (http) is an error row; the others are predicted
    image = next(p for p in folder.rglob("*.jpg") if p.name not in ("broken.jpg", "gone.jpg"))
    (tmp_path / "list.csv").write_text(f"path\n{image}\nhttp://example.invalid/cat.jpg\n")
    table = predict_collection(str(bundle), str(tmp_path / "web.parquet"), manifest=str(tmp_path / "list.csv"))
    assert table.set_index("path")["error"].map(bool).to_dict() == {str(image): False,
                                                                     "http://example.invalid/cat.jpg": True}


def test_manifest_rows_resolve_relative_paths_against_the_manifest_and_keep_labels(tmp_path):
    from speciesfam.predict import input_rows

    (tmp_path / "data").mkdir()
    pd.DataFrame({"path": ["a/x.jpg", str(tmp_path / "y.jpg")], "label": ["007", "7"], "split": ["test", "val"],
                  "other": [1, 2]}).to_csv(tmp_path / "data" / "m.csv", index=False)
    rows = input_rows(manifest=str(tmp_path / "data" / "m.csv"))
    assert rows["path"].tolist() == [str(tmp_path / "data" / "a" / "x.jpg"), str(tmp_path / "y.jpg")]
    assert list(rows.columns) == ["path", "label", "split", "error", "stamp"]
    assert rows["label"].tolist() == ["007", "7"]
    # Parquet labels as catalog reads them (the text of the value, as bundles hold them), an empty path kept
    # empty (an error row when predicted), not resolved to the manifest's folder
    # (null too), file:// URIs percent-decoded, and why a row will not be read in its error
    pd.DataFrame({"path": [(tmp_path / "a z.jpg").as_uri(), "", None, "http://example.invalid/c.jpg"],
                  "label": [7, 8, 9, 10]}).to_parquet(tmp_path / "m.parquet")
    rows = input_rows(manifest=str(tmp_path / "m.parquet"))
    assert rows["path"].tolist() == [str(tmp_path / "a z.jpg"), "", "", "http://example.invalid/c.jpg"]
    assert rows["label"].tolist() == ["7", "8", "9", "10"]
    assert rows["error"].tolist()[:3] == ["", "path is empty", "path is empty"]
    assert rows["error"].iloc[3].startswith("unsupported URI scheme 'http://'")
    # a malformed manifest is the catalog's one-line error, not a parser traceback
    (tmp_path / "ragged.csv").write_text("path,label\na.jpg,Felidae\nb.jpg,Canidae,extra\n")
    with pytest.raises(SpeciesfamError, match="not a well-formed CSV"):
        input_rows(manifest=str(tmp_path / "ragged.csv"))


def test_a_bundle_edited_with_its_checksums_written_anew_is_refused_in_one_line(cnn_bundle, tmp_path, capsys):
    """A bundle is passed around: config.json edited and checksums.json written anew (or edited alone) gave
    tracebacks (KeyError, IndexError, int() of '2a'), wrong families (6 labels on a 4-way model, exit 0), and a
    checksums.json naming /dev/zero hashed without end (hostile tester round 45). Each: one line, exit 2."""
    import shutil

    from speciesfam.bundle import checksums
    from speciesfam.cli import main

    _, _, bundle = cnn_bundle
    image = tmp_path / "x.png"
    __import__("PIL.Image").Image.new("RGB", (20, 20)).save(image)
    config = json.loads((bundle / "config.json").read_text())
    labels = config["labels"]

    def tampered(name: str, config_edit: dict | None = None, sums_edit: dict | None = None, resum: bool = True,
                 drop: str = "") -> Path:
        b = Path(shutil.copytree(bundle, tmp_path / name))
        conf = {k: v for k, v in {**config, **(config_edit or {})}.items() if k != drop}
        (b / "config.json").write_text(json.dumps(conf))
        (b / "labels.json").write_text(json.dumps(conf.get("labels")))
        sums = checksums(str(b)) if resum else json.loads((bundle / "checksums.json").read_text())
        (b / "checksums.json").write_text(json.dumps({**sums, **(sums_edit or {})}))
        return b

    cases = [
        (tampered("version", {"schema_version": "2a"}, resum=False), "schema_version is '2a', not a whole number"),
        (tampered("version_null", {"schema_version": None}), "schema_version is None, not a whole number"),
        (tampered("more_labels", {"labels": labels + ["Extra1", "Extra2"]}),
         f"model.keras gives {len(labels)} probabilities, config.json names {len(labels) + 2} families"),
        (tampered("fewer_labels", {"labels": labels[:2]}),
         f"model.keras gives {len(labels)} probabilities, config.json names 2 families"),
        (tampered("twice", {"labels": [labels[0]] * len(labels)}), f"names the families {[labels[0]]!r} twice"),
        (tampered("not_names", {"labels": [5] * len(labels)}), "not a list of family names"),
        (tampered("no_labels", drop="labels"), "has labels 'None', not a list of family names"),
        (tampered("size", {"image_size": "32"}), "has image_size '32', not a whole number of pixels"),
        (tampered("huge", {"image_size": 100000}), "from 1 to 4096"),  # decoded to it without end (round 46)
        (tampered("other_size", {"image_size": 64}), "model.keras takes 32 x 32 images, config.json says 64"),
        (tampered("blank", {"labels": [""] + labels[1:]}), "not a list of family names"),
        (tampered("no_size", drop="image_size"), "has image_size None"),
        (tampered("devzero", sums_edit={"/dev/zero": "0" * 64}), "checksums.json names ['/dev/zero'], not files of"),
        (tampered("up", sums_edit={"../x": "0" * 64}), "checksums.json names ['../x'], not files of"),
    ]
    import keras

    head = tampered("head")  # a probe's head in a CNN bundle: an IndexError building this very message (round 58)
    keras.Sequential([keras.Input((512,)), keras.layers.Dense(len(labels), activation="softmax")]).save(
        head / "model.keras")
    (head / "checksums.json").write_text(json.dumps(checksums(str(head))))
    cases.append((head, "model.keras takes inputs of shape (None, 512), not the RGB images of config.json (32 x 32)"))
    sub = tampered("folder")
    (sub / "sub").mkdir()
    (sub / "checksums.json").write_text(json.dumps({**checksums(str(sub)), "sub": "0" * 64}))
    cases.append((sub, "['sub'] is not a file"))
    for b, said in cases:
        assert main(["predict", str(b), str(image)]) == 2, b.name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{b}: the bundle is damaged: " in err and said in err, (b.name, err)
    assert main(["predict", str(bundle), str(image), "--weights-dir", str(tmp_path)]) == 0  # read by probe bundles
    assert capsys.readouterr().err.splitlines()[0] == (f"predict: note: --weights-dir {tmp_path} is not read: this "
                                                       "bundle is a CNN's, whose model.keras holds all its weights")
    (tmp_path / "header.csv").write_text("path,label\n")  # predict wrote 0 rows and exited 0 (round 45)
    pd.DataFrame({"path": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty.parquet")
    for name in ("header.csv", "empty.parquet"):
        assert main(["predict", str(bundle), "--manifest", str(tmp_path / name), "--out", str(tmp_path / "p.parquet")]) == 2
        assert f"{name} has no rows, nothing to predict" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()
    labelled = tmp_path / "set.csv"
    labelled.write_text(f"path,label\n{image},{labels[0]}\n")
    assert main(["evaluate", str(cases[2][0]), "--manifest", str(labelled), "--out", str(tmp_path / "ev")]) == 2
    assert "gives" in capsys.readouterr().err  # evaluate indexed past the model's outputs


def test_an_actors_refusal_is_found_in_rays_wrapping_of_it():
    """An ActorDiedError keeps only the text of the actor's traceback: batch predict of a bundle whose model gives
    4 probabilities for 6 families printed that traceback (hostile tester round 45); clean cut a refusal spanning
    lines after its first. The refusal is found whole, as one line."""
    from speciesfam.errors import SpeciesfamError, inner_error

    raised = ("The actor died because of an error raised in its creation task, ray::MapWorker(...).__init__()\n"
              "Traceback (most recent call last):\n  File \"bundle.py\", line 286, in _check_outputs\n"
              "speciesfam.bundle.BundleError: /b: the bundle is damaged: model.keras gives 4 probabilities")
    wrapped = RuntimeError("Task failed")
    wrapped.__cause__ = Exception(raised)
    assert str(inner_error(wrapped)) == "/b: the bundle is damaged: model.keras gives 4 probabilities"
    own = SpeciesfamError("a refusal\nover two lines")
    outer = RuntimeError("wrapper")
    outer.__cause__ = own
    assert inner_error(outer) is own
    assert inner_error(ValueError("speciesfam.fake.NotOurs: x")) is None and inner_error(KeyError("k")) is None


@pytest.mark.slow  # Ray Data actors (~20 s)
def test_batch_prediction_with_a_model_that_disagrees_with_its_families_says_so(cnn_bundle, tmp_path, ray_session,
                                                                                  capsys):
    import shutil

    from speciesfam.bundle import checksums
    from speciesfam.cli import main

    _, _, bundle = cnn_bundle
    b = Path(shutil.copytree(bundle, tmp_path / "b"))
    config = json.loads((b / "config.json").read_text())
    config["labels"] += ["Extra"]
    (b / "config.json").write_text(json.dumps(config))
    (b / "labels.json").write_text(json.dumps(config["labels"]))
    (b / "checksums.json").write_text(json.dumps(checksums(str(b))))
    (tmp_path / "imgs").mkdir()
    __import__("PIL.Image").Image.new("RGB", (20, 20)).save(tmp_path / "imgs" / "x.png")
    assert main(["predict", str(b), str(tmp_path / "imgs"), "--out", str(tmp_path / "p.parquet")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().endswith("names 5 families; re-export it"), err
