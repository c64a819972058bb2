"""Export of a damaged checkpoint (rounds 57-60): a model file cut short, gone or another model's, a config.json
or metrics.json that is not whole JSON or holds what predict would refuse. Each is one line naming the trial and
the file, exit 2, and nothing is written; before, tracebacks, or bundles predict could not use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from cnn_trial import write_cnn_trial


def test_a_damaged_checkpoint_is_one_line_naming_its_trial_and_file(tmp_path, capsys):
    """A CNN trial's model.keras cut short: export printed Keras's traceback, 'File not found' of its own temporary
    copy (round 57); a config.json or metrics.json cut short or emptied was a traceback, and another model's file in
    its place made a bundle that predict could not use (round 58)."""
    import keras

    from speciesfam.cli import main

    other = keras.Sequential([keras.Input((512,)), keras.layers.Dense(4, activation="softmax")])  # a probe's head
    other.save(tmp_path / "other.keras")
    image = keras.Input((32, 32, 3))  # two heads on the CNN's input: exported, then predict crashed (round 59)
    flat = keras.layers.Flatten()(image)
    keras.Model(image, [keras.layers.Dense(4)(flat), keras.layers.Dense(4)(flat)]).save(tmp_path / "two.keras")
    cut = lambda f: f.write_bytes(f.read_bytes()[:500])  # noqa: E731
    for damage, file, said in (
            (cut, "model.keras", "cannot be loaded (not a whole .keras archive: cut short, or not a Keras file)"),
            (lambda f: f.write_bytes((tmp_path / "other.keras").read_bytes()), "model.keras",
             "takes inputs of shape (None, 512), not the RGB images of config.json (32 x 32)"),
            (lambda f: f.write_text("{}"), "config.json", "lacks labels"),
            (lambda f: f.write_text('{"labels": ["a"], "model": "x"}'), "config.json",
             "lacks image_size, or holds it of another type"),
            (lambda f: f.write_text("[1, 2]"), "config.json", "is not a JSON object"),
            (cut, "metrics.json", "cannot be read as JSON (JSONDecodeError: "),
            # round 59: exported, then predict called the bundle damaged; tracebacks in the model card
            (lambda f: f.write_text(json.dumps({**json.loads(f.read_text()), "labels": [1, 2]})), "config.json",
             "has labels '[1, 2]', not a list of family names"),
            (lambda f: f.write_text(json.dumps({**json.loads(f.read_text()), "hp": "x"})), "config.json",
             "lacks hp, or holds it of another type"),
            (lambda f: f.write_text("[" * 100000 + "]" * 100000), "config.json",
             "cannot be read as JSON (RecursionError"),
            (lambda f: f.write_text(json.dumps({"per_class_f1": {"7": "x"}})), "metrics.json",
             "has per_class_f1 \"{'7': 'x'}\", not a val F1 per family"),
            (lambda f: f.write_text(json.dumps({"per_class_f1": {"7": None}})), "metrics.json",  # round 60
             "has per_class_f1 \"{'7': None}\", not a val F1 per family"),
            (lambda f: f.write_bytes((tmp_path / "two.keras").read_bytes()), "model.keras",
             "gives outputs of shape [(None, 4), (None, 4)], not one probability per family")):
        run = tmp_path / f"{file}-{len(list(tmp_path.iterdir()))}"
        file = Path(write_cnn_trial(run, "cut00001")) / file
        if file.name == "metrics.json":
            file.write_text(json.dumps({"epoch": 1, "val_macro_f1": 0.5, "pad": "x" * 600}))
        damage(file)
        assert main(["export", "--workdir", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"trial cut00001's checkpoint file {file} {said}" in err, err
        assert err.endswith("it is damaged or not this trial's; export another --trial, or run the search again"), err
        assert not (run / "bundle").exists() and not list(run.glob(".bundle-new-*"))


def test_a_probe_trials_damaged_weights_file_is_one_line_naming_it(probe_run, tmp_path, capsys):
    """A probe checkpoint's probe.weights.h5 cut short said h5py's error with advice to check the path's
    permissions and free space, naming no trial (round 57)."""
    from speciesfam.cli import main

    run = tmp_path / "run"
    shutil.copytree(probe_run, run)
    trials = pd.read_csv(run / "trials.csv", dtype={"trial_id": str})
    best = trials.sort_values("best_val_macro_f1", ascending=False).iloc[0]
    ckpt = tmp_path / "ckpt"
    shutil.copytree(best["best_checkpoint"], ckpt)  # the copy's rows name the fixture's checkpoints: this its own
    (ckpt / "probe.weights.h5").write_bytes((ckpt / "probe.weights.h5").read_bytes()[:300])
    trials.loc[trials["trial_id"] == best["trial_id"], "best_checkpoint"] = str(ckpt)
    trials.to_csv(run / "trials.csv", index=False)
    for _ in ("cut short", "deleted"):  # deleted, it was named model.keras, a file a probe's checkpoint never has
        assert main(["export", "--workdir", str(run), "--trial", best["trial_id"], "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err.strip()
        assert f"trial {best['trial_id']}'s checkpoint file {ckpt / 'probe.weights.h5'} cannot be loaded (" in err, err
        assert len(err.splitlines()) == 1 and "permissions" not in err and not (tmp_path / "b").exists()
        (ckpt / "probe.weights.h5").unlink(missing_ok=True)
        (ckpt / "model.keras").write_bytes(b"x")  # a model.keras beside it was exported as the probe's head (round 59)
    config = json.loads((ckpt / "config.json").read_text())
    for edit, said in (({"embedding_dim": -1}, "has embedding_dim -1, not a length of vectors"),
                       ({"hp": {**config["hp"], "head_units": "abc"}}, "cannot be loaded (ValueError: ")):
        (ckpt / "config.json").write_text(json.dumps({**config, **edit}))  # tracebacks (round 59)
        assert main(["export", "--workdir", str(run), "--trial", best["trial_id"], "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err.strip()
        assert f"trial {best['trial_id']}'s checkpoint file {ckpt / 'config.json'} {said}" in err, err
    # another head's weights (here: config.json's embedding width edited): Keras's first line, cut off at
    # 'Example error message for object <Dense ...>:' (round 58, left); now the shapes
    shutil.copy(Path(best["best_checkpoint"]) / "probe.weights.h5", ckpt / "probe.weights.h5")
    (ckpt / "model.keras").unlink()
    width = config["embedding_dim"]
    (ckpt / "config.json").write_text(json.dumps({**config, "embedding_dim": width + 1}))
    assert main(["export", "--workdir", str(run), "--trial", best["trial_id"], "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{ckpt / 'probe.weights.h5'} cannot be loaded (holds weights of shape ({width}, " in err and f"config.json describes " \
        f"has ({width + 1}, " in err and "another model's weights" in err and len(err.splitlines()) == 1, err


def test_a_stage_record_field_of_another_type_is_damage_not_a_traceback(tmp_path, capsys):
    """Catalog's status counts as text, clean's near_duplicates a list (hand edits) reached export's model card as
    tracebacks (round 60, left): a record's fields are checked against its stage's types (speciesfam.records) when
    it is read, and named with the command that rewrites it; nothing is written."""
    from speciesfam.cli import main

    for stage, part, field, value, said in (
            ("catalog", "summary", "status", {"ok": "x"}, "summary.status['ok'] is 'x', not a whole number"),
            ("clean", "summary", "near_duplicates", [1, 2], "summary.near_duplicates is [1, 2], not a record of fields"),
            ("catalog", "summary", "nested", "deep", "summary.nested is 'deep', not a record of fields or null"),
            ("clean", "config", "model", 5, "config.model is 5, not text")):
        run = tmp_path / f"{stage}-{field}"
        write_cnn_trial(run, "rec00001")
        (run / "stages").mkdir()
        record = {"stage": stage, "run_id": "r1", "built_from": {}, "config": {"source": "/images"}, "summary": {"rows": 4}}
        record[part][field] = value
        (run / "stages" / f"{stage}.json").write_text(json.dumps(record))
        assert main(["export", "--workdir", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"stages/{stage}.json is damaged (its {said}); edit " \
            f"{said.split(' is ')[0]} back to what {stage} wrote, or run `speciesfam {stage}" in err, err
        assert not (run / "bundle").exists() and not list(run.glob(".bundle-new-*"))
