"""Embedding probe: a small Keras head trained on the clean stage's cached CLIP embeddings.

A probe trial takes seconds on a CPU, so a search can explore head, regularisation and optimiser settings
widely before the expensive CNN trials. It runs as a plain Tune function trainable (no Ray Train: one
process is plenty for an MLP on a few thousand vectors) and reports the same metrics as the CNN trials.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from .. import storage
from . import head


def build_probe(num_classes: int, dim: int, hp: dict[str, Any]):
    """Input: an L2-normalised embedding of size ``dim``; output: family probabilities."""
    from .._lazy import keras as _keras

    keras = _keras()
    inputs = keras.Input((dim,), name="embedding")
    return keras.Model(inputs, head(keras, inputs, num_classes, {"batch_norm": False, **hp}), name="probe")


def probe_arrays(workdir: str, labels: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(embeddings, label ids) per split, from RUN/embeddings.parquet and the cleaned manifest."""
    from ..data.catalog import load_manifest

    emb = storage.read_table(storage.join(workdir, "embeddings.parquet"), stage_hint="speciesfam clean --workdir RUN")
    manifest = load_manifest(storage.join(workdir, "clean_manifest.parquet"), stage="speciesfam clean --workdir RUN")
    rows = manifest[manifest["status"] == "ok"].merge(emb[["sha256", "embedding"]].drop_duplicates("sha256"), on="sha256")
    index = {lab: i for i, lab in enumerate(labels)}
    out = {}
    for split in ("train", "val"):
        part = rows[rows["split"] == split]
        out[split] = (np.stack(part["embedding"].to_numpy()).astype(np.float32) if len(part) else
                      np.zeros((0, 1), np.float32), part["label"].map(index).to_numpy(np.int32))
    return out


def probe_trial(config: dict[str, Any], fixed: dict[str, Any]) -> None:
    """Tune function trainable: train the probe, report val metrics and a checkpoint every epoch."""
    from ray import tune

    from .._lazy import keras as _keras
    from ..train.loop import class_weight_vector, hyperparameters, make_optimizer
    from ..train.metrics import classification_metrics

    keras = _keras()
    hp = hyperparameters({"hp": config})
    keras.utils.set_random_seed(int(fixed.get("seed", 0)))
    labels = fixed["labels"]
    data = probe_arrays(fixed["workdir"], labels)
    (xt, yt), (xv, yv) = data["train"], data["val"]
    model = build_probe(len(labels), xt.shape[1], hp)
    model.compile(optimizer=make_optimizer(keras, hp["optimizer"], float(hp["lr"]), float(hp["weight_decay"])),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(hp["label_smoothing"])))
    weights = class_weight_vector(yt, len(labels), hp["class_weighting"])
    onehot = np.eye(len(labels), dtype=np.float32)
    for epoch in range(1, int(fixed["max_epochs"]) + 1):
        hist = model.fit(xt, onehot[yt], sample_weight=weights[yt], batch_size=int(hp["batch_size"]), epochs=1,
                         verbose=0, shuffle=True)
        metrics = classification_metrics(model.predict(xv, verbose=0), yv, len(labels))
        metrics.update(epoch=epoch, train_loss=float(hist.history["loss"][-1]))
        if not np.isfinite(metrics["train_loss"]):
            raise FloatingPointError(f"probe training loss became {metrics['train_loss']} in epoch {epoch}")
        with tempfile.TemporaryDirectory() as tmp:
            model.save(os.path.join(tmp, "model.keras"))
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"model": "probe", "labels": labels, "input": "L2-normalised embedding",
                           "embedding_model": fixed.get("embedding_model"), "hp": hp}, f, indent=1, default=str)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
