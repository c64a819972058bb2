"""Export and prediction without the demo fixture: conftest's tiny probe search on the small collection, and a CNN
checkpoint written directly by the training code. Probe and CNN bundles behave the same from the outside
(evaluate's tests: test_evaluate.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


ROOT = Path(__file__).resolve().parents[1]


def val_rows(workdir: Path) -> pd.DataFrame:
    cleaned = pd.read_parquet(workdir / "clean_manifest.parquet")
    return cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "val")]


def in_fresh_process(code: str, timeout: int = 300) -> str:
    """Run ``code`` in a new Python (nothing imported yet: the bundle must get the import order right)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow  # ~25 s (a fresh Python loads TensorFlow, torch, open_clip); test_evaluate.py predicts with it by default
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
    from speciesfam import storage

    card = (probe_bundle / "MODEL_CARD.md").read_text()
    assert "kind: **probe**" in card and "open_clip:ViT-S-32:random-init-seed0" in card
    assert "none: random weights" in card and "Known limits" in card
    assert "- open_clip model `ViT-S-32`, random weights (no pretrained tag or file)\n" in card  # not 'pretrained '
    assert re.search(r"- catalog of `.*`: \d+ rows \(\d+ ok(, \d+ [a-z_]+)*\)\n", card), card  # not a Python dict
    # RUN/bundle is recorded as the default, not as a path: a copy of the run folder reproduced its export with
    # --out ORIGINAL/bundle, into the other run's bundle (hostile tester round 32)
    from speciesfam import stages
    from speciesfam.reproduce import command

    assert stages.load(str(probe_run), "export")["config"]["out"] is None
    assert "--out" not in command("export", stages.load(str(probe_run), "export"), "/elsewhere/copy")
    from speciesfam.bundle import BundleError, load_bundle

    with pytest.raises(BundleError, match=f"{probe_run} is a run folder, not a bundle: give {probe_bundle}"):
        load_bundle(str(probe_run))
    # the rule in force (threshold), as clean recorded it; the quota's contamination is not named
    assert "outliers (by threshold: centroid score's robust z-score (median/MAD within the family) > 5 " in card
    assert "contamination" not in card
    trials = storage.read_table(str(probe_run / "trials.csv"))  # ids as text: pandas alone reads 744907e1 as a float
    assert set(trials["kind"]) == {"probe"} and set(trials["model"]) == {"probe"}
    assert trials["val_split"].nunique() == 1 and f"{len(val_rows(probe_run))} val images" in trials["val_split"][0]
    record = json.loads((probe_run / "stages" / "export.json").read_text())["summary"]
    assert record["trial_id"] == str(trials["trial_id"][0]) and "highest val_macro_f1" in record["reason"]
    assert f"**Exported**: trial `{record['trial_id']}` (probe" in (probe_run / "trials.md").read_text()


def test_the_model_card_keeps_each_family_on_one_line_and_in_one_cell(tmp_path):
    """MODEL_CARD.md joined the families with ', ' (`Felidae, big cats` read as two), a newline in a family split
    its bullet and its table row, and '|' added a column."""
    from speciesfam.model_card import model_card

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


def rewrite_checksums(bundle: Path) -> None:
    from speciesfam.bundle import checksums

    (bundle / "checksums.json").write_text(json.dumps(checksums(str(bundle))))


def test_a_damaged_probe_bundle_is_refused(probe_run, probe_bundle, tmp_path):
    from speciesfam.bundle import BundleError, load_bundle

    def copy(name: str) -> Path:
        return Path(shutil.copytree(probe_bundle, tmp_path / name))

    b = copy("missing")
    (b / "head.keras").unlink()
    with pytest.raises(BundleError, match=r"missing \['head.keras'\]"):
        load_bundle(str(b))
    b = copy("unlisted")  # the file is there, its checksum is not: it said "missing ['head.keras']"
    sums = json.loads((b / "checksums.json").read_text())
    (b / "checksums.json").write_text(json.dumps({k: v for k, v in sums.items() if k != "head.keras"}))
    with pytest.raises(BundleError, match=r"checksums.json has no checksum for \['head.keras'\]"):
        load_bundle(str(b))
    (b / "checksums.json").write_text("[]")
    with pytest.raises(BundleError, match="checksums.json is not a map of file -> sha256"):
        load_bundle(str(b))
    b = copy("edited")
    config = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**config, "labels": config["labels"][::-1]}))
    with pytest.raises(BundleError, match=r"\['config.json'\] changed since export") as err:
        load_bundle(str(b))
    # the command that replaces this bundle (it said `speciesfam export --workdir RUN`, which writes RUN/bundle): the
    # run folder export recorded, and this folder as --out
    # and its own trial: without it, the best trial (another one after a better search, or than --trial chose)
    trial = config["trial"]["trial_id"]
    assert str(err.value).endswith(f"re-export it with `speciesfam export --workdir {probe_run} --trial {trial} "
                                   f"--out {b}`"), err.value
    from speciesfam import stages

    stages.finish(str(tmp_path / "run"), "catalog")  # a run folder's own bundle: its folder, no --out
    own = Path(shutil.copytree(b, tmp_path / "run" / "bundle"))
    fix = f"re-export it with `speciesfam export --workdir {tmp_path / 'run'} --trial {trial}`"
    with pytest.raises(BundleError, match=re.escape(fix)):
        load_bundle(str(own))
    b = copy("corrupt")
    (b / "head.keras").write_bytes(b"not a zip")
    rewrite_checksums(b)
    with pytest.raises(BundleError, match=r"head.keras does not load \(not a whole .keras archive: cut short"):
        load_bundle(str(b))
    b = copy("weights")  # an embedder from a local weights file that is no longer the one trained on
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"other weights")
    config["embedder"].update(pretrained=str(weights), pretrained_sha256="0" * 64)
    (b / "config.json").write_text(json.dumps(config))
    rewrite_checksums(b)
    with pytest.raises(BundleError, match="not the file this bundle's head was trained on"):
        load_bundle(str(b))
    weights.unlink()
    with pytest.raises(BundleError, match="not on this machine"):
        load_bundle(str(b))
    with pytest.raises(BundleError, match=f"^{tmp_path} is not a bundle \\(none of config.json, labels.json, "
                                          "checksums.json\\): give a bundle folder"):  # an image folder given first
        load_bundle(str(tmp_path))
    with pytest.raises(BundleError, match="nowhere does not exist: give a bundle folder"):
        load_bundle(str(tmp_path / "nowhere"))
    with pytest.raises(BundleError, match="config.json is not a folder: give a bundle folder \\(RUN/bundle, made by "
                                          "`speciesfam export`\\) as the first argument$"):  # an image given first
        load_bundle(str(b / "config.json"))


def test_a_local_dir_model_replaced_in_place_is_told(probe_bundle, tmp_path):
    """A probe bundle of a --model local-dir:FOLDER run recorded the folder only: its weights replaced in place
    (another model saved there) were loaded and gave other predictions, exit 0 (left open in round 32)."""
    from speciesfam.bundle import BundleError, load_bundle
    from speciesfam.bundle_embedder import embedder_record

    local = tmp_path / "bioclip"
    local.mkdir()
    (local / "open_clip_config.json").write_text('{"model_cfg": {}}')
    (local / "pytorch_model.bin").write_bytes(b"PK\x03\x04 other weights")
    (local / "open_clip_pytorch_model.bin").write_bytes(b"PK\x03\x04 the weights")  # the one open_clip loads
    spec = embedder_record({"model_id": "open_clip:local-dir", "model": f"local-dir:{local}", "pretrained": None})
    assert sorted(spec["files_sha256"]) == [str(local / "open_clip_config.json"),
                                            str(local / "open_clip_pytorch_model.bin")]
    from speciesfam.model_card import model_card

    card = model_card(str(tmp_path), {"kind": "probe", "model": "probe", "labels": ["A"], "input": "RGB", "hp": {},
                                      "trial": {"reason": "best"}, "embedder": spec},
                      {"epochs_run": 1, "best_val_macro_f1": 0.5, "best_epoch": 1, "seconds": 1.0},
                      {"trial_id": "t1"})
    assert f"open_clip model `local-dir:{local}`, the folder's weights (below)" in card, card  # not 'random weights'
    assert f"- file `{local / 'open_clip_pytorch_model.bin'}`: sha256 " in card
    assert "copy these files there and give `predict`/`evaluate` `--weights-dir FOLDER`" in card  # shipped elsewhere
    b = Path(shutil.copytree(probe_bundle, tmp_path / "bundle"))
    config = json.loads((b / "config.json").read_text())
    config["embedder"] = spec
    (b / "config.json").write_text(json.dumps(config))
    rewrite_checksums(b)
    (local / "pytorch_model.bin").write_bytes(b"PK\x03\x04 changed, but not loaded")  # no refusal for it
    (local / "open_clip_pytorch_model.bin").write_bytes(b"PK\x03\x04 new weights")
    with pytest.raises(BundleError, match=f"^{re.escape(str(local / 'open_clip_pytorch_model.bin'))} is not the file "
                                          "this bundle's head was trained on"):
        load_bundle(str(b))
    (local / "open_clip_pytorch_model.bin").write_bytes(b"PK\x03\x04 the weights")  # as trained
    # weights open_clip prefers, added beside the recorded ones: loaded instead, unsaid (hostile tester round 34)
    (local / "open_clip_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(BundleError, match=f"^open_clip would now load {re.escape(str(local))}/open_clip_model."
                                          "safetensors, not the weights this bundle's head was trained on"):
        load_bundle(str(b))
    (local / "open_clip_model.safetensors").unlink()
    # a hidden one (a macOS '._' file): open_clip's Path.glob finds it, glob.glob did not (round 35)
    (local / "._x.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    (local / "pytorch_model.bin").unlink()
    (local / "open_clip_pytorch_model.bin").rename(local / "weights.bin")  # a name open_clip does not prefer
    with pytest.raises(BundleError, match="open_clip would now load .*/\\._x.safetensors, not the weights"):
        load_bundle(str(b))
    (local / "._x.safetensors").unlink()
    (local / "weights.bin").rename(local / "open_clip_pytorch_model.bin")
    (local / "open_clip_config.json").unlink()
    with pytest.raises(BundleError, match="open_clip_config.json .* which is not on this machine; copy it there"):
        load_bundle(str(b))


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
    assert spec["embedder"] == factory and spec["model_id"].startswith(f"custom:{factory} (code digest ")
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


def test_the_model_card_leaves_out_families_with_no_val_image_instead_of_scoring_them_0(tmp_path):
    """1 val image of 1 family of 6: the card showed 'Felidae | 1.000' and F1 0.000 for the 5 families with no val
    image, beside a macro-F1 of 1.000 that left them out (hostile tester round 33)."""
    from speciesfam.model_card import model_card
    from speciesfam.train.metrics import per_class_f1

    labels = ["Canidae", "Felidae", "Ranidae"]
    per_class = per_class_f1(np.array([[0.1, 0.8, 0.1]]), np.array([1]), labels)
    assert per_class == {"Felidae": 1.0}
    config = {"kind": "cnn", "model": "m", "labels": labels, "input": "RGB", "trial": {"reason": "best"}, "hp": {}}
    metrics = {"epochs_run": 2, "best_val_macro_f1": 1.0, "best_epoch": 1, "seconds": 3.0,
               "checkpoint": {"per_class_f1": per_class}}
    card = model_card(str(tmp_path), config, metrics, {"trial_id": "t1", "kind": "scratch",
                                                       "val_split": "clean_manifest.parquet run ab: 1 val image"})
    assert "| Felidae | 1.000 |" in card and "| Canidae |" not in card
    assert 'Not scored (2 families with no val image, never predicted; val_macro_f1 leaves them out): ["Canidae", ' \
           '"Ranidae"]' in card, card


def test_the_model_card_counts_what_clean_took_out_by_cause(tmp_path):
    """The card said '26 images removed' under the outlier rule for 4 outliers and 22 dropped label issues
    (hostile tester round 39)."""
    from speciesfam import stages
    from speciesfam.model_card import model_card

    stages.finish(str(tmp_path), "clean", config={"model_id": "m"}, summary={
        "removed": 26, "outliers_removed": 4, "label_issues_dropped": 22, "outlier_rule": "quota: the top 10%",
        "near_duplicates": {"dropped": 2}})
    card = model_card(str(tmp_path), {"kind": "scratch", "model": "scratch_small", "labels": ["A"], "input": "RGB",
                                      "hp": {}, "trial": {"reason": "best"}},
                      {"epochs_run": 1, "best_val_macro_f1": 0.5, "best_epoch": 1, "seconds": 1.0}, {"trial_id": "t1"})
    assert "- clean with `m`, taking out 4 outliers (by quota: the top 10%), 22 label issues (cleanlab) and 2 " \
           "near-duplicates\n" in card, card


def test_weights_dir_for_a_probe_bundle_that_reads_no_local_file_is_noted_not_refused(probe_run, probe_bundle,
                                                                                      tmp_path, capsys):
    """A random-init (or tag) embedder reads no local file: --weights-dir was ignored silently, and a folder that
    does not exist was refused as if it were needed (hostile tester round 47)."""
    from speciesfam.cli import main

    image = val_rows(probe_run)["path"].iloc[0]
    assert main(["predict", str(probe_bundle), image, "--weights-dir", str(tmp_path / "nowhere")]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (  # (then that it is a val image: seen)
        f"predict: note: --weights-dir {tmp_path / 'nowhere'} is not read: this bundle's embedder reads no local "
        "weights file")


def test_a_probe_bundle_whose_head_takes_other_vectors_than_its_embedder_gives_is_refused(probe_bundle, tmp_path,
                                                                                           capsys):
    """A probe trained on a cache of vectors of another length than its embedder gives (a cache that did not
    match) was exported, and predict failed with Keras's traceback (round 54): one line, exit 2, the fix."""
    import keras

    from speciesfam.bundle import CHECKSUMS, PROBE_HEAD, checksums
    from speciesfam.cli import main

    bundle = Path(shutil.copytree(probe_bundle, tmp_path / "bundle"))
    labels = json.loads((bundle / "labels.json").read_text())
    head = keras.Sequential([keras.Input((2,), name="embedding"), keras.layers.Dense(len(labels),
                                                                                     activation="softmax")])
    head.save(bundle / PROBE_HEAD)
    (bundle / CHECKSUMS).write_text(json.dumps(checksums(str(bundle))))
    image = tmp_path / "x.png"
    __import__("PIL.Image").Image.new("RGB", (20, 20)).save(image)
    assert main(["predict", str(bundle), str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bundle}: {PROBE_HEAD} takes vectors of 2 numbers, its embedder gives " \
        in err and err.endswith("run clean, the probe search and export again"), err
