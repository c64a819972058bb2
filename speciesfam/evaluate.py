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


REPORTS = ("metrics.json", "per_class.csv", "confused_pairs.csv", "rows.csv", "confusion.png", "per_class_f1.png")


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


def _refuse_out_in_bundle(out: str, bundle: str) -> None:
    """An --out inside the bundle would overwrite its metrics.json: the bundle's checksums then fail."""
    real_out, real_bundle = os.path.realpath(out), os.path.realpath(bundle)
    if os.path.commonpath([real_out, real_bundle]) == real_bundle:
        raise SpeciesfamError(f"--out {out} is inside the bundle {bundle}: evaluate's reports would change the "
                              "bundle's files (predict then refuses it as damaged); choose a folder outside it")


def evaluate(bundle: str, manifest_uri: str, split: str = "test", out: str | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    """Predict every usable row of ``split`` and write the reports; returns the summary metrics (those of
    ``metrics.json``) and ``out``, the reports' folder. ``rows.csv`` gives each row of the split one status:
    ``ok`` (scored, with the predicted family) or ``unreadable`` with the reason; the scores count the ok rows."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from .bundle import bundle_id, load_bundle
    from .data.catalog import load_manifest
    from .data.images import DecodeError, read_rgb
    from .train.metrics import classification_metrics

    out = out or os.path.join(os.path.dirname(os.path.abspath(bundle)), f"eval_{split}")
    if not storage.is_remote(out):
        _refuse_out_in_bundle(out, bundle)
    manifest = load_manifest(manifest_uri, stage="speciesfam clean --workdir RUN")  # fails here, before the model loads
    rows = manifest[(manifest["status"] == "ok") & (manifest["split"] == split)]
    if not len(rows):
        raise SpeciesfamError(f"{manifest_uri} has no usable rows in split {split!r}; splits: "
                              f"{sorted(manifest['split'].dropna().unique())}")
    predictor = load_bundle(bundle)  # CNN or probe: raw RGB in, probabilities out
    labels = predictor.labels
    unknown = sorted(set(rows["label"]) - set(labels))
    if unknown:
        raise SpeciesfamError(f"{manifest_uri}'s {split} split has families the bundle does not know: "
                              f"{unknown[:5]}; evaluate with the manifest the model was trained on")
    warning = split_warning(predictor.config, manifest_uri)
    if warning:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    paths = rows["path"].to_numpy(dtype=str)
    index = {lab: i for i, lab in enumerate(labels)}
    probs, failed = [], {}
    for start in range(0, len(paths), batch_size):  # decoded a batch at a time: full-size images are large
        images = []
        for k, path in enumerate(paths[start:start + batch_size], start):
            try:
                images.append(read_rgb(path))
            except DecodeError as err:  # deleted, truncated or replaced since catalog: a row, not a crash
                failed[k] = str(err)
        if images:
            probs.append(predictor.predict(images, batch_size))
    ok = np.array([k not in failed for k in range(len(paths))], dtype=bool)
    rows_csv = pd.DataFrame({"path": paths, "label": rows["label"].to_numpy(), "predicted": None,
                             "probability": np.nan, "status": np.where(ok, "ok", "unreadable"),
                             "reason": [failed.get(k, "") for k in range(len(paths))]})
    out = storage.local_dir(out)
    if not ok.any():  # the reasons kept; an earlier evaluation's scores there would pass for this one's
        for name in REPORTS:
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        storage.write_table(rows_csv, os.path.join(out, "rows.csv"))
        raise SpeciesfamError(f"none of the {len(paths)} {split} images of {manifest_uri} could be read (first: "
                              f"{paths[0]}: {failed[0]}; all in {os.path.join(out, 'rows.csv')}); re-run `speciesfam "
                              "catalog` on the images as they are now")
    probs = np.concatenate(probs)
    y = rows["label"].map(index).to_numpy(dtype=np.int32)[ok]
    pred = probs.argmax(1)
    summary = classification_metrics(probs, y, len(labels))
    summary = {k.replace("val_", f"{split}_"): v for k, v in summary.items()} | {
        "images": int(len(y)), "unreadable": len(failed), "kind": predictor.kind, "bundle_id": bundle_id(bundle),
        **({"warning": warning} if warning else {})}
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    per_class = pd.DataFrame({"family": labels, "precision": p, "recall": r, "f1": f, "support": s})
    cm = confusion_matrix(y, pred, labels=idx)
    pairs = [(labels[i], labels[j], int(cm[i, j])) for i in idx for j in idx if i != j and cm[i, j]]
    pairs = pd.DataFrame(sorted(pairs, key=lambda t: -t[2]), columns=["true", "predicted", "count"])
    rows_csv.loc[ok, "predicted"] = [labels[i] for i in pred]
    rows_csv.loc[ok, "probability"] = probs.max(1)
    storage.write_table(per_class, os.path.join(out, "per_class.csv"))
    storage.write_table(pairs, os.path.join(out, "confused_pairs.csv"))
    storage.write_table(rows_csv, os.path.join(out, "rows.csv"))
    storage.write_text(os.path.join(out, "metrics.json"), json.dumps(summary, indent=1))
    plots.confusion(cm, labels, os.path.join(out, "confusion.png"))
    plots.per_class_f1(per_class, os.path.join(out, "per_class_f1.png"))
    return {**summary, "out": out}
