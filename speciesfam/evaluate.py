"""Evaluate a bundle on a split of a manifest: macro-F1, accuracy, per-class report, confusion plots.

    speciesfam evaluate RUN/bundle --manifest RUN/clean_manifest.parquet --split test [--out RUN/eval]
    speciesfam evaluate RUN/bundle --manifest new_photos.csv        # a labelled set: path, label[, split]

Writes ``metrics.json``, ``per_class.csv`` (precision, recall, F1, support), ``confusion.png``,
``per_class_f1.png``, ``confused_pairs.csv`` (the most-confused family pairs) and ``rows.csv`` (every row of
the split with its status and reason) to ``out``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import layout, pathtext, plots, seen, storage
from .console import Progress, say_err
from .data.catalog_report import look_alike_key
from .data.text_table import named_columns
from .errors import SpeciesfamError
from .evaluate_out import NOT_SCORED, REPORTS, ROWS_COLUMNS, bundle_folder, earlier_metrics, refuse_out
from .evaluate_warnings import (moved_warning, own_run, recleaned_warning, removed_warning, split_warning,
                                 trained_from)
from .lines import counted, quoted, some

if TYPE_CHECKING:
    import pandas as pd


HELD_BYTES = 256 * 2**20  # decoded images held before they are predicted (a batch of 64 8000 px photos is 12 GB)


def evaluation_rows(manifest_uri: str, split: str | None, columns: dict[str, str] | None = None) -> "pd.DataFrame":
    """The rows to score, with columns path, label, status ('ok' so far, or why not) and reason.

    A catalog manifest (``RUN/manifest.parquet`` or ``RUN/clean_manifest.parquet``): its usable rows of
    ``split`` (default test). Any other CSV or Parquet with ``path`` and ``label`` columns (a labelled set of new
    images) is read as catalog reads a manifest (labels as text exactly as written, relative paths against its
    folder; ``columns``: its columns read as path and label, e.g. ``{"label": "family"}``): its rows of ``split``
    (default test) when it has a ``split`` column, else every row (``split`` must then be None); a row with no
    label or an unusable path gets its status here. ``attrs``: ``catalog`` (which
    of the two it is), ``split`` (the split scored, named ``test`` for a whole labelled set) and, for a labelled
    set with a split column, ``other_splits`` (rows per other split) and ``warning`` (rows whose split reads like
    the one scored: another case, or empty)."""
    import pandas as pd

    from .data.sources import is_run_manifest
    from .data.text_table import read_text_table
    from .predict import SKIPPED, input_rows

    if split is not None and not split.strip():
        raise SpeciesfamError("--split is empty: name the split to score (e.g. test), or leave it out")
    if not storage.exists(manifest_uri):
        raise SpeciesfamError(f"--manifest {manifest_uri} does not exist: give RUN/clean_manifest.parquet, or a "
                              "labelled set (CSV or Parquet with path and label columns)")
    table = read_text_table(manifest_uri, columns)  # a user's file: its errors say what to fix in it
    columns = set(table)
    if is_run_manifest(table):  # statuses of speciesfam's (a user's 'status' of its own: a labelled set, round 68)
        from .stage_outputs import check_table

        check_table(manifest_uri)  # a run folder's: what its stage's last finished run wrote
        split = (split or "test").strip()  # spaces at the ends aside, as for a labelled set (catalog's are bare)
        manifest = pd.DataFrame({column: table[column] for column in ("path", "label", "status", "split", "sha256")})
        rows = manifest.loc[(manifest["status"] == "ok") & (manifest["split"] == split), ["path", "label", "sha256"]]
        if not len(rows):
            raise SpeciesfamError(f"{manifest_uri} has no usable rows in split {split!r}; splits with usable rows: "
                                  f"{sorted(manifest.loc[manifest['status'] == 'ok', 'split'].dropna().unique())}")
        rows = rows.assign(status="ok", reason="").reset_index(drop=True)
        rows.attrs.update(catalog=True, split=split)
        return rows
    if not {"path", "label"} <= columns:
        from .data.text_table import header_hint

        raise SpeciesfamError(f"{manifest_uri} is neither a catalog manifest nor a labelled set (columns "
                              f"{some(sorted(columns), 10, quote=True)}; a labelled set needs 'path' and 'label' "
                              f"columns, or --path-column/--label-column naming the ones that hold them)"
                              f"{header_hint(sorted(columns))}")
    rows = input_rows(manifest=manifest_uri, table=table)
    if not len(rows):
        raise SpeciesfamError(f"{manifest_uri} has no rows: nothing to score")
    for column in ("label", "split"):  # a null cell (Parquet) is an empty one, as in a CSV
        if column in rows:
            rows[column] = rows[column].fillna("")
    if "split" in rows:
        split = split or "test"
        given = rows["split"].str.strip()
        if not (given == split.strip()).any():
            raise SpeciesfamError(f"{manifest_uri} has no rows in split {split!r}; its splits: "
                                  f"{some(sorted(given.unique()), 10, quote=True)} (give --split, or drop the split "
                                  "column to score every row)")
        others = given[given != split.strip()].value_counts()
        near = {name: int(n) for name, n in others.items() if name.casefold() == split.strip().casefold() or not name}
        rows = rows[given == split.strip()]
        rows.attrs["other_splits"] = {name: int(n) for name, n in others.items()}
        if near:  # "Test" or an empty cell: most likely meant as this split; said, not dropped unsaid
            rows.attrs["warning"] = (
                f"{counted(sum(near.values()), 'row')} of {manifest_uri} "
                + ("is not scored though it" if sum(near.values()) == 1 else "are not scored though they")
                + f" may be meant as split {split.strip()!r}: "
                + ", ".join(f"{n} with split {name!r}" if name else f"{n} with no split" for name, n in near.items())
                + " (splits are compared exactly, spaces at the ends aside; fix the file, or give --split NAME)")
    elif split is not None:
        raise SpeciesfamError(f"{manifest_uri} has no split column, so --split {split} chooses nothing: leave it "
                              "out to score every row")
    rows = rows.reset_index(drop=True)
    rows.attrs["whole_set"] = "split" not in rows  # scored whole; its scores are named test_* all the same
    rows["status"] = "ok"
    rows["reason"] = ""
    bad = rows["error"] != ""
    rows.loc[bad, "status"] = "unreadable"
    rows.loc[bad, "reason"] = rows.loc[bad, "error"]
    skipped = rows["error"].str.startswith(SKIPPED)  # a hidden or system file listed: as predict and catalog skip it
    rows.loc[skipped, "status"] = "skipped"
    rows.loc[skipped, "reason"] = rows.loc[skipped, "error"].str.slice(len(SKIPPED))
    no_label = (rows["status"] == "ok") & (rows["label"].str.strip() == "")
    rows.loc[no_label, ["status", "reason"]] = "unlabelled", "no label"
    # one image (by its bytes, as catalog: a file listed again, reached through a link, or copied) is scored once;
    # listed under two labels, none of its rows is scored
    image = _content_keys(rows)
    usable = rows["status"] == "ok"
    labels = rows[usable].groupby(image[usable])["label"].agg(lambda s: sorted(set(s)))
    conflict = usable & image.map(lambda d: len(labels.get(d, ())) > 1)
    rows.loc[conflict, "status"] = "conflict"
    rows.loc[conflict, "reason"] = image[conflict].map(lambda d: "the same image is listed with labels "
                                                       f"{', '.join(map(repr, labels[d]))}: fix its label in the file")
    kept = usable & ~conflict
    again = kept & image.where(kept).duplicated()  # among the scorable rows only
    first = pd.Series(rows.index[kept], index=image[kept]).groupby(level=0).first()
    rows.loc[again, "status"] = "duplicate"
    # named by its path: a row number would count the split's rows, not the file's
    rows.loc[again, "reason"] = image[again].map(lambda d: f"the same image as {rows.at[first[d], 'path']} (scored "
                                                           "once)")
    attrs = dict(rows.attrs)
    rows = rows[["path", "label", "status", "reason"]].assign(sha256=image)  # which images the bundle has seen
    rows.attrs.update(attrs, catalog=False, split=(split or "test").strip())
    return rows


def _content_keys(rows: pd.DataFrame) -> pd.Series:
    """The sha256 of each usable row's file. A file that cannot be read becomes ``unreadable`` here, with the
    reason scoring would give, and so do all the rows of bytes listed more than once that are no image (empty
    files, copies of a broken one): they are no image to score once, nor to give two labels."""
    import hashlib

    import pandas as pd

    from .data.images import DecodeError, read_rgb

    keys = pd.Series("", index=rows.index)
    for k in rows.index[rows["status"] == "ok"]:
        try:
            keys[k] = hashlib.sha256(storage.read_bytes(rows.at[k, "path"])).hexdigest()
        except (OSError, ValueError) as err:
            rows.loc[k, ["status", "reason"]] = "unreadable", pathtext.read_error(err, rows.at[k, "path"])
    listed = keys[rows["status"] == "ok"]
    for key, same in listed.groupby(listed).groups.items():
        if len(same) > 1:  # rare: decoded once more here (a single file is decoded when it is scored)
            try:
                read_rgb(rows.at[same[0], "path"])
            except DecodeError as err:
                rows.loc[same, ["status", "reason"]] = "unreadable", str(err)
    return keys


def default_out(bundle: str, manifest_uri: str, split: str, own_run: bool,
                columns: dict[str, str] | None = None) -> str:
    """Beside the bundle: ``eval_SPLIT`` for the bundle's own run folder's manifest (the report shows it; another
    bundle of that run than RUN/bundle: ``eval_SPLIT-BUNDLE``, as two of them shared one, unsaid), else
    ``eval_NAME-HASH`` (the file's name as a safe slug; the hash of its full path, the split and the bundle's
    id, so two sets, two splits of one, or two bundles in one folder never share a folder: the second bundle's
    reports replaced the first's, unsaid; hostile tester; and the columns read as path and label when not the
    default ones: labels from another column are another scoring)."""
    import hashlib

    from .bundle import bundle_id
    from .layout import label_slug

    where = bundle_folder(bundle)
    if own_run:  # RUN/bundle's, which the report shows; another bundle of the run keeps its own (they shared it)
        name = os.path.basename(os.path.realpath(bundle))
        return os.path.join(where, f"eval_{split}" if name == layout.BUNDLE else f"eval_{split}-{label_slug(name)}")
    stem = label_slug(os.path.splitext(os.path.basename(manifest_uri.rstrip("/")))[0]).rsplit("-", 1)[0]
    try:
        bid = bundle_id(bundle)
    except (OSError, ValueError):  # no bundle there: loading it says so, in its own words
        bid = ""
    key = f"{manifest_uri if storage.is_remote(manifest_uri) else os.path.realpath(manifest_uri)}|{split}|{bid}"
    key += "".join(f"|{name}={column}" for name, column in named_columns(columns).items())  # labels from another
    return os.path.join(where, f"eval_{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}")


# rows.csv statuses of rows the scores leave out


def no_family(label: str, folded: dict[str, str]) -> str:
    """The reason of a row whose family the bundle lacks, naming the bundle's family it looks like (``folded``:
    ``look_alike_key`` -> family): 'felidae', 'Felidae ', a decomposed 'é', most likely meant as that one. Both as
    ``quoted``: a decomposed 'é' as JSON, so two names that render alike read apart (round 45)."""
    alike = folded.get(look_alike_key(label))
    return f"the bundle has no family {quoted(label, None)}" + (
        f" (it has {quoted(alike, None)}: labels are compared exactly as written)" if alike else "")


def evaluate(bundle: str, manifest_uri: str, split: str | None = None, out: str | None = None,
             batch_size: int = 64, weights_dir: str | None = None,
             columns: dict[str, str] | None = None) -> dict[str, Any]:
    """Predict every usable row of ``split`` (``evaluation_rows``) and write the reports; returns the summary
    metrics (those of ``metrics.json``) and ``out``, the reports' folder. ``rows.csv`` gives each row of the split
    one status: ``ok`` (scored, with the predicted family), or one of ``NOT_SCORED`` with the reason:
    ``unreadable`` (an unusable path, or the image cannot be decoded), ``changed`` (a catalog manifest's image
    whose sha256 is not the one catalog recorded), ``unlabelled``, ``duplicate`` (a labelled set's image listed
    again, by any path: the same bytes, scored once), ``conflict`` (listed under two labels), ``unknown_family``
    (a labelled set's family the bundle was not trained on; a catalog manifest's is refused), ``seen`` (in a set
    other than the bundle's own run's splits, an image it was trained on or chosen by: ``seen.py``); the scores count
    the ok rows, ``metrics.json`` counts the others by status."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    from .bundle import bundle_id, load_bundle, read_config
    from .data.images import ChangedError, DecodeError, read_rgb
    from .train.metrics import classification_metrics

    if not storage.is_remote(manifest_uri):  # a file URI as its path ('clean%5Fmanifest.parquet' was read as a
        manifest_uri = storage.local_path(manifest_uri)  # labelled set of its own, scored unchecked: round 75)
    rows = evaluation_rows(manifest_uri, split, columns)  # fails here, before the model loads
    split, catalog = rows.attrs["split"], rows.attrs["catalog"]
    this_run = own_run(bundle, manifest_uri, catalog)
    given, out = out, out or default_out(bundle, manifest_uri, split, this_run, columns)
    from .stages import is_run_folder

    if given and not this_run and is_run_folder(bundle_folder(bundle)):
        own = {os.path.realpath(os.path.join(bundle_folder(bundle), f"eval_{s}")) for s in layout.SPLITS}
        if not storage.is_remote(given) and os.path.realpath(given) in own:  # replaced the run's own score (round 47)
            raise SpeciesfamError(f"--out {given} is where the run's own {os.path.basename(given)[5:]} split's "
                                  "evaluation goes (the report shows it): a labelled set of yours would replace it; "
                                  "leave --out out (its own folder beside the bundle) or give another")
    if not storage.is_remote(out):
        refuse_out(out, bundle, manifest_uri if catalog and not storage.is_remote(manifest_uri) else None)
    config = read_config(bundle)
    # the model's splits (its run ids; a bundle that predates them: the run's own manifest): its train or val split
    # is scored as asked, with the warning below; any other rows (even the test split of the cleaned run's catalog
    # manifest, where clean moved copies into train): the images the model saw are left out of the score
    older = this_run and not (config.get("trial") or {}).get("trained_on")
    trained = older or trained_from(config, manifest_uri, exact=split not in ("train", "val"))
    marked = None if trained else seen.mark(rows, rows["sha256"], bundle)
    cannot_tell = marked is None and not trained  # which images the bundle saw
    warning = split_warning(config, manifest_uri, marked) if catalog else rows.attrs.get("warning", "")
    if cannot_tell and not (catalog and warning):  # (that one says it may hold training images)
        warning = "; ".join(w for w in (warning, f"{seen.CANNOT_TELL}: any of them here is scored as a new image")
                            if w)
    fitted = {"train": "the train split is what this model was trained on: its score measures fit, not how it "
                       "does on new images (--split test does)",
              "val": "the val split chose this model (its best epoch and trial): its score is optimistic "
                     "(--split test is not)"}.get(split, "") if trained else ""
    moved = moved_warning(manifest_uri, rows[rows["status"] == "ok"], split) if catalog else ""  # not seen ones
    recleaned = recleaned_warning(config, manifest_uri, bundle) if catalog else ""
    warning = "; ".join(w for w in (warning, recleaned, removed_warning(bundle, manifest_uri, this_run), fitted, moved)
                        if w)
    if warning:
        say_err(f"evaluate: warning: {warning}")
    predictor = load_bundle(bundle, weights_dir)  # CNN or probe: raw RGB in, probabilities out
    labels = predictor.labels
    unknown = (rows["status"] == "ok") & ~rows["label"].isin(labels)
    if unknown.any() and catalog:
        raise SpeciesfamError(f"{manifest_uri}'s {split} split has families the bundle does not know: "
                              f"{some(sorted(set(rows.loc[unknown, 'label'])), quote=True)}; evaluate with the "
                              "manifest the model was trained on")
    rows.loc[unknown, "status"] = "unknown_family"  # a new labelled set: scored on the families the model knows
    folded = {look_alike_key(lab): lab for lab in labels}
    rows.loc[unknown, "reason"] = rows.loc[unknown, "label"].map(lambda label: no_family(label, folded))
    index = {lab: i for i, lab in enumerate(labels)}
    probs, images, held = [], [], 0
    size = getattr(predictor, "image_size", None)  # a CNN's input: decoded straight to it, as batch predict does
    sha = rows["sha256"]  # each file's bytes when catalog (or evaluation_rows) read it: checked as it is decoded
    todo = np.flatnonzero(rows["status"].to_numpy() == "ok")
    progress = Progress("evaluate", len(todo), "images predicted")  # 80 s of silence on 640 images (round 62)
    for k in todo:
        try:
            images.append(read_rgb(rows.at[k, "path"], size, sha.at[k] if isinstance(sha.at[k], str) and sha.at[k]
                                   else None))
        except DecodeError as err:  # deleted, truncated or replaced since catalog: a row, not a crash
            rows.loc[k, ["status", "reason"]] = "changed" if isinstance(err, ChangedError) else "unreadable", str(err)
            continue
        held += images[-1].nbytes
        if len(images) == batch_size or held >= HELD_BYTES:  # full-size photos for a probe's embedder are large
            probs.append(predictor.predict(images, batch_size))
            progress.add(len(images))
            images, held = [], 0
    if images:
        probs.append(predictor.predict(images, batch_size))
    ok = (rows["status"] == "ok").to_numpy()
    rows_csv = rows.assign(predicted=None, probability=np.nan)[list(ROWS_COLUMNS)]
    counts: dict[str, int | None] = {status: int((rows["status"] == status).sum()) for status in NOT_SCORED}
    if cannot_tell:
        counts["seen"] = None  # metrics.json says null, not 0
    out = storage.local_dir(out)
    earlier = (earlier_metrics(out) or {}).get("bundle_id")  # an --out (or eval_SPLIT) of another bundle: said
    if not ok.any():  # the reasons kept; an earlier evaluation's scores there would pass for this one's
        for name in REPORTS:
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        storage.write_table(rows_csv, os.path.join(out, "rows.csv"))
        first = rows.iloc[0]
        which = "" if rows.attrs.get("whole_set") else f"{split} "  # a set with no split column is scored whole
        raise SpeciesfamError(f"none of the {len(rows)} {which}images of {manifest_uri} could be scored ("
                              f"{', '.join(f'{n} {s}' for s, n in counts.items() if n)}; first: {first['path']}: "
                              f"{first['reason']}; all in {os.path.join(out, 'rows.csv')})")
    probs = np.concatenate(probs)
    y = rows.loc[ok, "label"].map(index).to_numpy(dtype=np.int32)
    pred = probs.argmax(1)
    summary = classification_metrics(probs, y, len(labels))
    summary = {k.replace("val_", f"{split}_"): v for k, v in summary.items()} | {
        "split": split, "images": int(len(y)), **counts, "kind": predictor.kind, "bundle_id": bundle_id(bundle),
        "manifest": manifest_uri if storage.is_remote(manifest_uri) else os.path.abspath(manifest_uri),
        "run_manifest": this_run,
        **({"rows_in_other_splits": rows.attrs["other_splits"]} if rows.attrs.get("other_splits") else {}),
        **({"whole_set": True} if rows.attrs.get("whole_set") else {}),
        **({"columns": named} if (named := named_columns(columns)) else {}),
        **({"warning": warning} if warning else {})}
    idx = list(range(len(labels)))
    per_class = per_class_table(labels, y, pred)
    s, scored = per_class["support"], per_class["scored"]
    summary.update(families=len(labels), families_with_images=int((s > 0).sum()),  # beside the macro-F1 (round 49)
                   families_predicted_absent=int((scored & (s == 0)).sum()))  # F1 0 in it (round 50)
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
    # the families the macro-F1 averages: predicted though absent too, at F1 0 (left out of the plot: round 62)
    plots.per_class_f1(per_class[per_class["scored"]], os.path.join(out, "per_class_f1.png"))
    return {**summary, "out": out, "replaced": earlier if earlier and earlier != summary["bundle_id"] else None}


def per_class_table(labels: list[str], y: np.ndarray, pred: np.ndarray) -> "pd.DataFrame":
    """per_class.csv: each family's precision, recall, F1 and support (an int: sklearn gives floats when no
    prediction is right), and ``scored``: the macro-F1 counts it (the mask classification_metrics averages over):
    it has a scored image, or the model predicted it for an image of another family (F1 0); one neither holds is
    left out, its 0s no F1 of 0 (round 40: a family predicted once, support 0, was 'scored: False' yet averaged in)."""
    import pandas as pd
    from sklearn.metrics import precision_recall_fscore_support

    from .train.metrics import f1_per_class

    p, r, f, s = precision_recall_fscore_support(y, pred, labels=list(range(len(labels))), zero_division=0)
    _, scored = f1_per_class(pred, y.astype(np.int64), len(labels))
    return pd.DataFrame({"family": labels, "precision": p, "recall": r, "f1": f, "support": s.astype(np.int64),
                         "scored": scored})
