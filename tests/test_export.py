"""Export and prediction without the demo fixture: a tiny probe search on the small collection, and a CNN
checkpoint written directly by the training code. Probe and CNN bundles behave the same from the outside."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from speciesfam.errors import SpeciesfamError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, collection, cleaned):
    """catalog -> clean (open_clip ViT-S-32, random weights; the embeddings of conftest's clean of the same
    images, so no embedding actor starts again) -> probe search of 2 trials x 3 epochs."""
    from speciesfam import layout
    from speciesfam.config import CleanConfig, TuneConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean
    from speciesfam.tune.search import run_search

    root, _ = collection
    workdir = tmp_path_factory.mktemp("probe_run")
    run_catalog(str(root), str(workdir))
    shutil.copy(cleaned[0] / layout.EMBEDDINGS, workdir / layout.EMBEDDINGS)
    run_clean(str(workdir), CleanConfig.smoke(min_per_family=3))
    run_search(str(workdir), TuneConfig(kind="probe", num_samples=2, max_epochs=3, smoke_test=True,
                                        cpus_per_trial=1, max_concurrent=2))
    return workdir


@pytest.fixture(scope="module")
def probe_bundle(probe_run):
    from speciesfam.export import export_bundle

    return Path(export_bundle(str(probe_run)))


def val_rows(workdir: Path) -> pd.DataFrame:
    cleaned = pd.read_parquet(workdir / "clean_manifest.parquet")
    return cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "val")]


def in_fresh_process(code: str, timeout: int = 300) -> str:
    """Run ``code`` in a new Python (nothing imported yet: the bundle must get the import order right)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_probe_bundle_round_trip_predicts_the_trials_val_predictions(probe_run, probe_bundle, tmp_path):
    """Export, load in a fresh process, predict raw val images: equals the trial's head on the cached
    embeddings, and scores the trial's val macro-F1."""
    from speciesfam.bundle import PROBE_HEAD
    from speciesfam.export import choose_trial
    from speciesfam.train.metrics import classification_metrics

    config = json.loads((probe_bundle / "config.json").read_text())
    assert config["kind"] == "probe" and config["embedder"]["model"] == "ViT-S-32"
    assert config["embedder"]["model_id"] == "open_clip:ViT-S-32:random-init-seed0"
    assert (probe_bundle / PROBE_HEAD).exists() and not (probe_bundle / "model.keras").exists()
    val = val_rows(probe_run)
    (tmp_path / "paths.json").write_text(json.dumps(val["path"].tolist()))
    in_fresh_process(
        "import json, sys, numpy as np\n"
        "from speciesfam.bundle import load_bundle\n"
        "from speciesfam.data.images import decode_rgb\n"
        f"p = load_bundle({str(probe_bundle)!r})\n"
        "assert p.kind == 'probe'\n"
        f"paths = json.load(open({str(tmp_path / 'paths.json')!r}))\n"
        "probs = p.predict([decode_rgb(open(f, 'rb').read()) for f in paths])\n"
        f"np.save({str(tmp_path / 'probs.npy')!r}, probs)\n")
    probs = np.load(tmp_path / "probs.npy")

    import keras

    row, _ = choose_trial(str(probe_run))
    head = keras.saving.load_model(f"{row['best_checkpoint']}/model.keras", safe_mode=True) \
        if Path(row["best_checkpoint"], "model.keras").exists() else None
    if head is None:  # checkpoints of the rewritten probe trial: weights of build_probe
        from speciesfam.models.probe import build_probe

        ck = json.loads(Path(row["best_checkpoint"], "config.json").read_text())
        head = build_probe(len(ck["labels"]), ck["embedding_dim"], ck["hp"])
        head.load_weights(f"{row['best_checkpoint']}/probe.weights.h5")
    emb = pd.read_parquet(probe_run / "embeddings.parquet").drop_duplicates("sha256").set_index("sha256")
    cached = np.stack(emb.loc[val["sha256"], "embedding"].to_numpy()).astype(np.float32)
    expected = head.predict(cached, verbose=0)
    np.testing.assert_allclose(probs, expected, atol=2e-4)
    labels = json.loads((probe_bundle / "labels.json").read_text())
    y = val["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    assert classification_metrics(probs, y, len(labels))["val_macro_f1"] == pytest.approx(
        row["best_val_macro_f1"], abs=1e-6)


def test_probe_bundle_card_and_export_choice_come_from_data(probe_run, probe_bundle):
    card = (probe_bundle / "MODEL_CARD.md").read_text()
    assert "kind: **probe**" in card and "open_clip:ViT-S-32:random-init-seed0" in card
    assert "none: random weights" in card and "Known limits" in card
    # the rule in force (threshold), as clean recorded it; the quota's contamination is not named
    assert "outliers by threshold: centroid score's robust z-score (median/MAD within the family) > 5 " in card
    assert "contamination" not in card
    trials = pd.read_csv(probe_run / "trials.csv")
    assert set(trials["kind"]) == {"probe"} and set(trials["model"]) == {"probe"}
    assert trials["val_split"].nunique() == 1 and f"{len(val_rows(probe_run))} val images" in trials["val_split"][0]
    record = json.loads((probe_run / "stages" / "export.json").read_text())["summary"]
    assert record["trial_id"] == str(trials["trial_id"][0]) and "highest val_macro_f1" in record["reason"]
    assert f"**Exported**: trial `{record['trial_id']}` (probe" in (probe_run / "trials.md").read_text()


def test_the_model_card_keeps_each_family_on_one_line_and_in_one_cell(tmp_path):
    """MODEL_CARD.md joined the families with ', ' (`Felidae, big cats` read as two), a newline in a family split
    its bullet and its table row, and '|' added a column."""
    from speciesfam.export import model_card

    labels = ["Felidae, big cats", "a|b", "line1\nline2", "Ranidae"]
    config = {"kind": "cnn", "model": "scratch_small", "labels": labels, "input": "RGB", "hp": {},
              "trial": {"reason": "best"}}
    metrics = {"best_val_macro_f1": 0.5, "best_epoch": 1, "epochs_run": 2, "seconds": 3.0,
               "checkpoint": {"per_class_f1": {lab: 0.1 * i for i, lab in enumerate(labels)}}}
    card = model_card(str(tmp_path), config, metrics, {"trial_id": "t1", "kind": "scratch"})
    lines = card.splitlines()
    families = lines[lines.index("```json") + 1]  # a fenced block: no family reads as Markdown markup
    assert json.loads(families) == labels and lines[lines.index("```json") + 2] == "```"
    rows = [line for line in card.splitlines() if line.startswith("| ") and "val F1" not in line]
    assert len(rows) == len(labels) and all(row.count(" | ") == 1 for row in rows), rows
    assert "| a\\|b | 0.100 |" in rows and "| line1\\\\nline2 | 0.200 |" in rows


def test_evaluate_a_probe_bundle(probe_run, probe_bundle, tmp_path, capsys):
    from speciesfam import cli
    from speciesfam.evaluate import evaluate

    # the command says what it measured and where the reports are, in one line (it printed a JSON dump)
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(probe_run / "clean_manifest.parquet"),
                     "--out", str(tmp_path / "cli")]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("evaluate: test macro-F1 ") and \
        said[0].endswith(f"(probe bundle); reports in {tmp_path / 'cli'}"), said

    summary = evaluate(str(probe_bundle), str(probe_run / "clean_manifest.parquet"), "test", str(tmp_path))
    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    assert summary["kind"] == "probe"
    assert summary["images"] == ((cleaned["status"] == "ok") & (cleaned["split"] == "test")).sum()
    assert 0 <= summary["test_macro_f1"] <= 1
    assert pd.read_csv(tmp_path / "per_class.csv")["support"].sum() == summary["images"]
    assert "warning" not in summary  # the run the model was trained on

    # The same run after catalog ran again (its splits may be drawn anew): the score is flagged, not trusted.
    import shutil

    from speciesfam import stages

    rerun = tmp_path / "rerun"
    rerun.mkdir()
    shutil.copy(probe_run / "clean_manifest.parquet", rerun)
    shutil.copytree(probe_run / "stages", rerun / "stages")
    stages.finish(str(rerun), "catalog")
    again = evaluate(str(probe_bundle), str(rerun / "clean_manifest.parquet"), "test", str(tmp_path / "again"))
    assert f"{rerun}'s catalog run (" in again["warning"] and "is not the one this model was trained on" in \
        again["warning"] and again["run_manifest"] is False
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
    assert "evaluate: 2 test images are not scored (2 unreadable; each row's reason: " in err and "Traceback" not in err
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
    table = pd.DataFrame({"path": [*known, known[0], known[1], "new/bad.jpg", "", "new/missing.png"],
                          "label": [*usable["label"], "Canidae", f"{usable['label'].iloc[1]} ", "Felidae", "Felidae",
                                    "Felidae"]})
    table.loc[len(table)] = [known[2], None]
    table.to_csv(tmp_path / "labelled.csv", index=False)
    out = tmp_path / "eval"
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(tmp_path / "labelled.csv"),
                     "--out", str(out)]) == 1  # scored, but not every row
    err = capsys.readouterr().err
    assert "evaluate: 6 test images are not scored (3 unreadable, 1 unlabelled, 2 unknown_family; " in err, err
    rows = pd.read_csv(out / "rows.csv", keep_default_na=False)
    assert len(rows) == len(table) and (rows["reason"] != "").sum() == 6
    assert list(rows["status"]) == ["ok"] * 6 + ["unknown_family"] * 2 + ["unreadable"] * 3 + ["unlabelled"]
    assert rows["reason"].iloc[7] == f"the bundle has no family {usable['label'].iloc[1] + ' '!r}"  # as written
    assert "path is empty" in rows["reason"].iloc[9] and (rows.loc[:5, "predicted"] != "").all()
    summary = json.loads((out / "metrics.json").read_text())
    assert (summary["images"], summary["unreadable"], summary["unlabelled"], summary["unknown_family"]) == (6, 3, 1, 2)
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
    assert "has no rows in split 'test'; its splits: ['holdout', 'other']" in capsys.readouterr().err
    assert not list(probe_bundle.parent.glob("eval_split*"))  # refused before writing anything

    # another run folder's catalog manifest: its own folder beside the bundle (it overwrote the run's eval_test,
    # whose score the report then showed), said to be another run's splits
    other = tmp_path / "other_run"
    other.mkdir()
    shutil.copy(probe_run / "clean_manifest.parquet", other)
    shutil.copytree(probe_run / "stages", other / "stages")
    from speciesfam import stages

    stages.finish(str(other), "catalog")
    assert not (probe_bundle.parent / "eval_test").exists()
    assert cli.main(["evaluate", str(probe_bundle), "--manifest", str(other / "clean_manifest.parquet")]) == 0
    assert "is not the one this model was trained on" in capsys.readouterr().err
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
                                                         "['path;label']"),
            (["--manifest", str(tmp_path / "nope.csv")], "--manifest " + str(tmp_path / "nope.csv") + " does not exist"),
            (["--manifest", str(tmp_path / "labelled.csv"), "--out", str(tmp_path / "afile")], "is a file; give a folder")]:
        assert cli.main(["evaluate", str(probe_bundle), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, (argv, err)


def rewrite_checksums(bundle: Path) -> None:
    from speciesfam.bundle import checksums

    (bundle / "checksums.json").write_text(json.dumps(checksums(str(bundle))))


def test_a_damaged_probe_bundle_is_refused(probe_bundle, tmp_path):
    from speciesfam.bundle import BundleError, load_bundle

    def copy(name: str) -> Path:
        return Path(shutil.copytree(probe_bundle, tmp_path / name))

    b = copy("missing")
    (b / "head.keras").unlink()
    with pytest.raises(BundleError, match=r"missing \['head.keras'\]"):
        load_bundle(str(b))
    b = copy("edited")
    config = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**config, "labels": config["labels"][::-1]}))
    with pytest.raises(BundleError, match=r"\['config.json'\] changed since export"):
        load_bundle(str(b))
    b = copy("corrupt")
    (b / "head.keras").write_bytes(b"not a zip")
    rewrite_checksums(b)
    with pytest.raises(BundleError, match="head.keras does not load"):
        load_bundle(str(b))
    b = copy("weights")  # an embedder from a local weights file that is no longer the one trained on
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"other weights")
    config["embedder"].update(pretrained=str(weights), pretrained_sha256="0" * 64)
    (b / "config.json").write_text(json.dumps(config))
    rewrite_checksums(b)
    with pytest.raises(BundleError, match="not the weights file this bundle was trained on"):
        load_bundle(str(b))
    weights.unlink()
    with pytest.raises(BundleError, match="not on this machine"):
        load_bundle(str(b))
    with pytest.raises(BundleError, match="not a bundle folder"):
        load_bundle(str(tmp_path / "nowhere"))


@pytest.mark.slow  # two actor pools that each load torch, open_clip and TensorFlow (~1-2 min on 2 cores)
def test_batch_prediction_over_a_folder_accounts_for_every_file_and_resumes(probe_bundle, collection, tmp_path,
                                                                            ray_session, capsys):
    """The probe bundle in Ray Data actors (torch then TensorFlow in each); test_bundle.py runs the same checks
    on a CNN bundle in the fast set."""
    from test_bundle import check_batch_prediction

    check_batch_prediction(probe_bundle, collection[0], tmp_path, capsys)


@pytest.mark.slow
def test_custom_module_factory_embedder_is_recorded_and_reloaded(probe_run, tmp_path):
    """A user's ``module:factory`` embedder: the bundle records it (with its source's sha256) and a fresh
    process rebuilds it and predicts the same as this one."""
    import speciesfam.data.embedders as emb_module
    from speciesfam.config import CleanConfig, TuneConfig
    from speciesfam.data.clean import run_clean
    from speciesfam.export import export_bundle
    from speciesfam.tune.search import run_search

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(probe_run / "manifest.parquet", run)
    shutil.copytree(probe_run / "stages", run / "stages")
    factory = "speciesfam.data.embedders:color_histogram_embedder"
    # near-duplicates only when identical: colour histograms of the tiny set group whole families into train,
    # leaving no val image to score a trial on (tune refuses that)
    run_clean(str(run), CleanConfig(embedder=factory, min_per_family=3, near_duplicate_threshold=1.0))
    run_search(str(run), TuneConfig(kind="probe", num_samples=1, max_epochs=2, smoke_test=True, cpus_per_trial=1))
    bundle = Path(export_bundle(str(run)))
    spec = json.loads((bundle / "config.json").read_text())["embedder"]
    assert spec["embedder"] == factory and spec["model_id"] == f"custom:{factory}"
    assert spec["source_file"] == emb_module.__file__ and len(spec["source_sha256"]) == 64
    assert spec["licence"] == "unknown, check the source"
    paths = val_rows(run)["path"].tolist()[:5]
    from speciesfam.predict import predict_files

    here = [r["top"] for r in predict_files(str(bundle), paths, top_k=3)]
    fresh = json.loads(in_fresh_process(
        "import json\nfrom speciesfam.predict import predict_files\n"
        f"print(json.dumps([r['top'] for r in predict_files({str(bundle)!r}, {paths!r}, top_k=3)]))\n"
        "import sys; assert 'torch' not in sys.modules, 'a custom embedder needs no torch'\n"))
    for a, b in zip(here, fresh):
        assert [f for f, _ in a] == [f for f, _ in b]
        np.testing.assert_allclose([p for _, p in a], [p for _, p in b], atol=1e-5)


def test_export_compares_cnn_and_probe_trials_and_says_which_it_took(probe_run, tmp_path, capsys):
    from test_bundle import write_cnn_trial

    from speciesfam.cli import main
    from speciesfam.export import choose_trial

    run = Path(shutil.copytree(probe_run, tmp_path / "run"))
    best_probe = pd.read_csv(run / "trials.csv")["best_val_macro_f1"].max()
    write_cnn_trial(run, "cnnlow", f1=best_probe / 2)
    row, reason = choose_trial(str(run))
    assert row["kind"] == "probe" and "the best cnn trial, cnnlow (scratch), scored" in reason
    write_cnn_trial(run, "cnnhigh", f1=1.0, seed=1)  # ties with a perfect probe go to the faster trial
    assert main(["export", "--workdir", str(run)]) == 0
    said = capsys.readouterr().out
    assert "(cnn, scratch_sequential, trial cnnhigh): highest val_macro_f1" in said and "the best probe trial" in said
    assert json.loads((run / "bundle" / "config.json").read_text())["kind"] == "cnn"
    assert "**Exported**: trial `cnnhigh` (cnn" in (run / "trials.md").read_text()
