"""Evaluate a bundle on a split of a manifest: macro-F1, accuracy, per-class report, confusion plots.

    speciesfam evaluate RUN/bundle --manifest RUN/clean_manifest.parquet --split test [--out RUN/eval]

Writes ``metrics.json``, ``per_class.csv`` (precision, recall, F1, support), ``confusion.png``,
``per_class_f1.png`` and ``confused_pairs.csv`` (the most-confused family pairs) to ``out``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from . import plots, storage
from .errors import SpeciesfamError


def split_warning(config: dict[str, Any], manifest_uri: str) -> str:
    """Why the manifest's splits may not be the ones the bundle was trained on ('' when they are, or when
    unknown: a manifest outside a run folder, a bundle exported before this was recorded)."""
    from . import stages

    trained_on = (config.get("trial") or {}).get("trained_on") or {}
    run = storage.parent(manifest_uri)
    for stage, run_id in trained_on.items():
        current = stages.load(run, stage)
        if current and current["run_id"] != run_id:
            return (f"{run}'s {stage} stage ran again after this model was trained ({stage} run {current['run_id'][:8]}, "
                    f"trained on {run_id[:8]}): its splits may have been drawn again, so these images may include "
                    "the model's training images and the score may be too high")
    return ""


def evaluate(bundle: str, manifest_uri: str, split: str = "test", out: str | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    """Predict every usable row of ``split`` and write the reports; returns the summary metrics (those of
    ``metrics.json``) and ``out``, the reports' folder."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from .bundle import load_bundle
    from .data.catalog import load_manifest
    from .data.images import read_rgb
    from .data.tfdata import split_arrays
    from .train.metrics import classification_metrics

    manifest = load_manifest(manifest_uri, stage="speciesfam clean --workdir RUN")  # fails here, before the model loads
    predictor = load_bundle(bundle)  # CNN or probe: raw RGB in, probabilities out
    labels = predictor.labels
    unknown = sorted(set(manifest.loc[manifest["status"] == "ok", "label"]) - set(labels))
    if unknown:
        raise SpeciesfamError(f"{manifest_uri} has families the bundle does not know: {unknown[:5]}; evaluate with "
                         "the manifest the model was trained on")
    warning = split_warning(predictor.config, manifest_uri)
    if warning:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    paths, y = split_arrays(manifest, split, labels)
    if not len(paths):
        raise SpeciesfamError(f"{manifest_uri} has no usable rows in split {split!r}; splits: "
                         f"{sorted(manifest['split'].dropna().unique())}")
    probs = np.concatenate([  # decoded a batch at a time: full-size images are large
        predictor.predict([read_rgb(p) for p in paths[i:i + batch_size]], batch_size)
        for i in range(0, len(paths), batch_size)])
    pred = probs.argmax(1)
    summary = classification_metrics(probs, y, len(labels))
    summary = {k.replace("val_", f"{split}_"): v for k, v in summary.items()} | {
        "images": int(len(y)), "kind": predictor.kind, **({"warning": warning} if warning else {})}
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    per_class = pd.DataFrame({"family": labels, "precision": p, "recall": r, "f1": f, "support": s})
    cm = confusion_matrix(y, pred, labels=idx)
    pairs = [(labels[i], labels[j], int(cm[i, j])) for i in idx for j in idx if i != j and cm[i, j]]
    pairs = pd.DataFrame(sorted(pairs, key=lambda t: -t[2]), columns=["true", "predicted", "count"])
    out = storage.local_dir(out or os.path.join(os.path.dirname(os.path.abspath(bundle)), f"eval_{split}"))
    storage.write_table(per_class, os.path.join(out, "per_class.csv"))
    storage.write_table(pairs, os.path.join(out, "confused_pairs.csv"))
    storage.write_text(os.path.join(out, "metrics.json"), json.dumps(summary, indent=1))
    plots.confusion(cm, labels, os.path.join(out, "confusion.png"))
    plots.per_class_f1(per_class, os.path.join(out, "per_class_f1.png"))
    return {**summary, "out": out}
