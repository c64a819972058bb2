"""The run folder's layout: every file name, shared column name and the search metric, in one place.

Stages find each other's outputs through these names (never string literals of their own), and any name
taken from the data (a family label) becomes a file name only through ``label_slug``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from . import storage

# The metric every trial reports each epoch and every stage ranks by.
METRIC, MODE = "val_macro_f1", "max"
BEST_METRIC = f"best_{METRIC}"

# Run-folder artifacts, by stage.
MANIFEST = "manifest.parquet"          # catalog: one row per input file/row, with status and reason
UNREADABLE = "unreadable.csv"
CATALOG_MD = "catalog.md"
EMBEDDINGS = "embeddings.parquet"      # clean
CLEAN_MANIFEST = "clean_manifest.parquet"
REMOVED = "removed.csv"
LABEL_ISSUES = "label_issues.csv"
NEAR_DUPLICATES = "near_duplicates.csv"
GALLERY = "gallery"
CLASS_COUNTS = "class_counts.png"
CLEAN_MD = "clean.md"
TUNE_DIR = "tune"                      # tune: Tune storage (default), trial table, progress plot
IMAGE_CACHE = "image_cache"            # tune: decoded, resized images per size (data/image_cache.py)
TRIALS = "trials.csv"
TRIALS_MD = "trials.md"
SEARCH_PROGRESS = "search_progress.png"
BUNDLE = "bundle"                      # export
REPORT = "report.html"                 # report
LOGS = "logs"
STAGES = "stages"                      # stages/<stage>.json: what each stage was built from and its summary
# what the stages write at a run folder's top: a user's file of one of these names there would be replaced
RUN_ENTRIES = (MANIFEST, UNREADABLE, CATALOG_MD, EMBEDDINGS, CLEAN_MANIFEST, REMOVED, LABEL_ISSUES, NEAR_DUPLICATES,
               GALLERY, CLASS_COUNTS, CLEAN_MD, TUNE_DIR, IMAGE_CACHE, TRIALS, TRIALS_MD, SEARCH_PROGRESS, BUNDLE,
               REPORT, LOGS, STAGES)

# the files each stage writes at a run folder's top, and the stage that writes each (a damaged one is written
# anew by running it again; a folder in its place is refused before the stage's work)
OUTPUTS = {"export": (TRIALS_MD,), "catalog": (MANIFEST, UNREADABLE, CATALOG_MD), "tune": (TRIALS, TRIALS_MD),
           "clean": (EMBEDDINGS, CLEAN_MANIFEST, REMOVED, LABEL_ISSUES, NEAR_DUPLICATES, CLASS_COUNTS, CLEAN_MD)}
WRITTEN_BY = {name: stage for stage, names in OUTPUTS.items() for name in names}  # trials.md: tune's
FOLDER_OUTPUTS = {"clean": (GALLERY,)}  # a file there is refused too

# trials.csv columns (written by tune.tracking, read by export and the report). ``val_split`` names the split
# every trial was scored on, so trials of different searches (CNN and probe) are compared only on the same one.
TRIAL_COLUMNS = ["trial_id", "search", "kind", "model", "status", "error", BEST_METRIC, "best_epoch", "epochs_run", "seconds",
                 "best_checkpoint", "config", "trial_path", "val_split"]

# Columns of the CSVs speciesfam writes that hold names from the data or ids: read back as text exactly as
# written (a family "NA" or "null" stays one, "007" is not 7, a trial id "01234567" keeps its zero).
TEXT_COLUMNS = frozenset({"path", "label", "family", "given_family", "suggested_family", "family_a", "family_b",
                          "path_a", "path_b", "true", "predicted", "reason", "status", "error", "detector", "trial_id",
                          "search", "kind", "model", "config", "trial_path", "best_checkpoint", "val_split", "split"})

# Manifest statuses (every row has exactly one; every status but ok has a reason).
OK, DUPLICATE, UNREADABLE_STATUS, TOO_SMALL, REMOVED_STATUS = "ok", "duplicate", "unreadable", "too_small", "removed"
INVALID = "invalid"      # manifest row with an empty/whitespace/missing label or path; a whitespace-named family folder
CONFLICT = "conflict"    # a manifest path, or the same bytes, under two or more different labels (every such row)
SKIPPED = "skipped"      # hidden file, a file under a hidden folder, or a system file (Thumbs.db, desktop.ini)
NO_FAMILY = "no_family"  # file at a folder source's root, in no family folder
STATUSES = frozenset({OK, DUPLICATE, UNREADABLE_STATUS, TOO_SMALL, REMOVED_STATUS, INVALID, CONFLICT, SKIPPED,
                      NO_FAMILY})  # every status a catalog's or clean's manifest gives a row
RUN_MANIFEST_COLUMNS = frozenset({"path", "label", "status", "split", "sha256", "reason"})  # a catalog's or clean's manifest
SPLITS = ("train", "val", "test")


def path(workdir: str, name: str, *more: str) -> str:
    """URI of artifact ``name`` (one of the constants above) inside run folder ``workdir``."""
    return storage.join(workdir, name, *more)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def label_slug(label: str, max_len: int = 60) -> str:
    """A safe file name (no extension) for a label taken from the data.

    Safe characters only (ASCII letters, digits, ``.``, ``_``, ``-``; never a leading dot, so never ``..`` or
    a hidden file), at most ``max_len`` of them, plus a short hash of the exact label, so two different
    labels never share a file name (``007`` vs ``7``, ``Felidae`` vs ``felidae``, ``a/b`` vs ``a_b``).
    """
    text = unicodedata.normalize("NFKD", str(label)).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("_", text).strip("._-")[:max_len] or "label"
    digest = hashlib.sha256(str(label).encode("utf-8")).hexdigest()[:8]
    return f"{stem}-{digest}"
