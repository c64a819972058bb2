"""A scratch CNN trial as a search leaves it (its checkpoint and its row of trials.csv), for export tests."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from speciesfam import layout

LABELS = ["Felidae", "Ranidae", "007", "7"]  # numeric-looking labels stay strings, exactly as written


def write_cnn_trial(workdir: Path, trial_id: str = "cnn00001", f1: float = 0.5, seed: int = 0) -> Path:
    """A scratch CNN checkpoint written by ``train.loop.save_checkpoint`` and its row of trials.csv."""
    import keras

    from speciesfam.models import build_model
    from speciesfam.train.loop import save_checkpoint

    keras.utils.set_random_seed(seed)
    hp = {"filters": 4, "depth": 2, "head_units": 8, "dropout": 0.0}
    model = build_model("scratch_sequential", len(LABELS), 32, hp)
    ckpt = workdir / "tune" / "scratch" / f"trial_{trial_id}" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    config = {"model": "scratch_sequential", "labels": LABELS, "image_size": 32, "hp": hp, "weights": None}
    save_checkpoint(str(ckpt), model, config, {"epoch": 1}, {"val_macro_f1": f1, "per_class_f1": {"7": 0.25}})
    row = {"trial_id": trial_id, "kind": "scratch", "model": "scratch_sequential", "status": "ok", "error": "",
           layout.BEST_METRIC: f1, "best_epoch": 1, "epochs_run": 1, "seconds": 3.0, "best_checkpoint": str(ckpt),
           "config": json.dumps(hp), "trial_path": str(ckpt.parent), "val_split": ""}
    trials = workdir / layout.TRIALS
    old = pd.read_csv(trials, dtype={"trial_id": str}) if trials.exists() else pd.DataFrame(columns=layout.TRIAL_COLUMNS)
    pd.concat([old, pd.DataFrame([row])], ignore_index=True).to_csv(trials, index=False)
    return ckpt
