"""Evaluate a bundle on a split of a manifest: macro-F1, accuracy, per-class report, confusion plots.

    speciesfam evaluate RUN/bundle --manifest RUN/clean_manifest.parquet --split test [--out RUN/eval]

Writes ``metrics.json``, ``per_class.csv`` (precision, recall, F1, support), ``confusion.png``,
``per_class_f1.png`` and ``confused_pairs.csv`` (the most-confused family pairs) to ``out``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from . import plots, storage
from .errors import SpeciesfamError

if TYPE_CHECKING:
    import pandas as pd


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


NOT_SCORED = ("unreadable", "unlabelled", "unknown_family")  # rows.csv statuses of rows the scores leave out


def evaluation_rows(manifest_uri: str, split: str) -> "pd.DataFrame":
    """The rows to score, with columns path, label, status ('ok' so far, or why not) and reason.

    A catalog manifest (``RUN/manifest.parquet`` or ``RUN/clean_manifest.parquet``): its usable rows of
    ``split``. Any other CSV or Parquet with ``path`` and ``label`` columns (a labelled set of new images) is
    read as catalog reads a manifest (labels as text exactly as written, relative paths against its folder):
    its rows of ``split`` when it has a ``split`` column, else every row; a row with no label or an unusable path
    gets its status here. ``attrs["catalog"]``: which of the two it is."""
    from .data.catalog import load_manifest

    columns = set(storage.read_table(manifest_uri, stage_hint="speciesfam clean --workdir RUN").columns)
    if {"status", "split"} <= columns or not {"path", "label"} <= columns:  # a catalog's (or a column missing)
        manifest = load_manifest(manifest_uri, stage="speciesfam clean --workdir RUN")
        rows = manifest.loc[(manifest["status"] == "ok") & (manifest["split"] == split), ["path", "label"]]
        if not len(rows):
            raise SpeciesfamError(f"{manifest_uri} has no usable rows in split {split!r}; splits: "
                                  f"{sorted(manifest['split'].dropna().unique())}")
        rows = rows.assign(status="ok", reason="").reset_index(drop=True)
        rows.attrs["catalog"] = True
        return rows
    from .predict import input_rows

    rows = input_rows(manifest=manifest_uri)
    if "split" in rows:
        chosen = rows["split"].fillna("").str.strip() == split
        if not chosen.any():
            raise SpeciesfamError(f"{manifest_uri} has no rows in split {split!r}; its splits: "
                                  f"{sorted(rows['split'].dropna().unique())[:10]} (give --split, or drop the "
                                  "split column to score every row)")
        rows = rows[chosen]
    rows = rows.reset_index(drop=True)
    label = rows["label"].fillna("")
    rows["status"] = "ok"
    rows["reason"] = ""
    bad = rows["error"] != ""
    rows.loc[bad, "status"] = "unreadable"
    rows.loc[bad, "reason"] = rows.loc[bad, "error"]
    no_label = (rows["status"] == "ok") & (label.str.strip() == "")
    rows.loc[no_label, ["status", "reason"]] = "unlabelled", "no label"
    rows.attrs["catalog"] = False
    return rows[["path", "label", "status", "reason"]]


def default_out(bundle: str, manifest_uri: str, split: str, catalog: bool) -> str:
    """Beside the bundle: ``eval_SPLIT`` for the run's own manifest (the report shows it), ``eval_NAME-HASH``
    for a labelled set (a safe slug of its file name: not mistaken for the run's own test split)."""
    from .layout import label_slug

    name = split if catalog else label_slug(os.path.splitext(os.path.basename(manifest_uri.rstrip("/")))[0])
    return os.path.join(os.path.dirname(os.path.abspath(bundle)), f"eval_{name}")


def evaluate(bundle: str, manifest_uri: str, split: str = "test", out: str | None = None,
             batch_size: int = 64) -> dict[str, Any]:
    """Predict every usable row of ``split`` (``evaluation_rows``) and write the reports; returns the summary
    metrics (those of ``metrics.json``) and ``out``, the reports' folder. ``rows.csv`` gives each row of the split
    one status: ``ok`` (scored, with the predicted family), or one of ``NOT_SCORED`` with the reason:
    ``unreadable`` (an unusable path, or the image cannot be decoded), ``unlabelled``, ``unknown_family`` (a
    labelled set's family the bundle was not trained on; a catalog manifest's is refused); the scores count the
    ok rows, ``metrics.json`` counts the others by status."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from .bundle import bundle_id, load_bundle
    from .data.images import DecodeError, read_rgb
    from .train.metrics import classification_metrics

    rows = evaluation_rows(manifest_uri, split)  # fails here, before the model loads
    out = out or default_out(bundle, manifest_uri, split, rows.attrs["catalog"])
    if not storage.is_remote(out):
        _refuse_out_in_bundle(out, bundle)
    predictor = load_bundle(bundle)  # CNN or probe: raw RGB in, probabilities out
    labels = predictor.labels
    unknown = (rows["status"] == "ok") & ~rows["label"].isin(labels)
    if unknown.any() and rows.attrs["catalog"]:
        raise SpeciesfamError(f"{manifest_uri}'s {split} split has families the bundle does not know: "
                              f"{sorted(set(rows.loc[unknown, 'label']))[:5]}; evaluate with the manifest the model "
                              "was trained on")
    rows.loc[unknown, "status"] = "unknown_family"  # a new labelled set: scored on the families the model knows
    rows.loc[unknown, "reason"] = "the bundle has no family " + rows.loc[unknown, "label"].map(repr)
    warning = split_warning(predictor.config, manifest_uri)
    if warning:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    index = {lab: i for i, lab in enumerate(labels)}
    probs = []
    todo = np.flatnonzero(rows["status"].to_numpy() == "ok")
    for start in range(0, len(todo), batch_size):  # decoded a batch at a time: full-size images are large
        images = []
        for k in todo[start:start + batch_size]:
            try:
                images.append(read_rgb(rows.at[k, "path"]))
            except DecodeError as err:  # deleted, truncated or replaced since catalog: a row, not a crash
                rows.loc[k, ["status", "reason"]] = "unreadable", str(err)
        if images:
            probs.append(predictor.predict(images, batch_size))
    ok = (rows["status"] == "ok").to_numpy()
    rows_csv = rows.assign(predicted=None, probability=np.nan)[["path", "label", "predicted", "probability",
                                                                 "status", "reason"]]
    counts = {status: int((rows["status"] == status).sum()) for status in NOT_SCORED}
    out = storage.local_dir(out)
    if not ok.any():  # the reasons kept; an earlier evaluation's scores there would pass for this one's
        for name in REPORTS:
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        storage.write_table(rows_csv, os.path.join(out, "rows.csv"))
        first = rows.iloc[0]
        raise SpeciesfamError(f"none of the {len(rows)} {split} images of {manifest_uri} could be scored ("
                              f"{', '.join(f'{n} {s}' for s, n in counts.items() if n)}; first: {first['path']}: "
                              f"{first['reason']}; all in {os.path.join(out, 'rows.csv')})")
    probs = np.concatenate(probs)
    y = rows.loc[ok, "label"].map(index).to_numpy(dtype=np.int32)
    pred = probs.argmax(1)
    summary = classification_metrics(probs, y, len(labels))
    summary = {k.replace("val_", f"{split}_"): v for k, v in summary.items()} | {
        "images": int(len(y)), **counts, "kind": predictor.kind, "bundle_id": bundle_id(bundle),
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
