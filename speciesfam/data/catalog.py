"""Catalog stage: scan a folder per family (or a CSV/Parquet manifest) into ``RUN/manifest.parquet``.

Every input file (folder source) or row (manifest source) ends as exactly one row with a ``status``:
``ok`` (usable, has a ``split``), ``duplicate`` (same bytes as an earlier row, or a manifest path listed
again; it takes that row's split so no image sits in two splits), ``conflict`` (the same bytes under two or
more labels: every copy), ``unreadable``, ``too_small`` (its family
has fewer than ``min_images`` usable images, or with ``group_split`` fewer than 3 groups), or one of the
statuses ``data/sources.py`` gives before any file is read (``invalid``, ``conflict``, ``skipped``,
``no_family``). Every status but ``ok`` has a ``reason``.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .. import layout, pathtext, storage
from ..config import CatalogConfig
from ..console import Progress
from ..lines import counted, quoted, some
from ..errors import SourceError, SpeciesfamError
from .catalog_checks import refuse_files_of_yours, refuse_source_replaced, refuse_workdir_inside
from .catalog_report import class_weights, report
from .images import DecodeError, probe, sniff
from .sources import read_source

if TYPE_CHECKING:
    import pandas as pd

SHOWN_FRAMES = 20  # images of several frames catalog.md names (all are counted)
FAILED_CATALOG = "catalog-nothing-usable"  # under logs/: a re-catalog that found no usable image

__all__ = ["run_catalog", "build_manifest", "read_source", "load_manifest", "class_weights", "report"]

MANIFEST_COLUMNS = ["path", "label", "group", "sha256", "width", "height", "mode", "bytes", "status",
                    "reason", "duplicate_of", "split", "source_row"]
# A file whose first bytes name no image format is decoded only up to this size (bytes): a 4 GB video
# named .jpg is refused without reading it whole. Pillow knows formats without magic bytes (TGA), hence
# a limit rather than a refusal.
MAX_UNKNOWN_BYTES = 64 * 2**20


def _read(path: str) -> bytes | None:
    """The file's bytes; None when its header names no image format and it is larger than MAX_UNKNOWN_BYTES."""
    with storage.open_input(path) as f:  # refuses a FIFO or device instead of blocking on it
        head = f.read(16)
        if sniff(head) is None:
            rest = f.read(MAX_UNKNOWN_BYTES + 1 - len(head))
            return None if len(head) + len(rest) > MAX_UNKNOWN_BYTES else head + rest
        return head + f.read()


def not_found(path: str) -> str:
    """'file not found', with the likely cause when a manifest's path shows one (``pathtext.path_hint``)."""
    return f"file not found{pathtext.path_hint(path)}"


def _inspect(path: str) -> dict:
    """Read, hash and decode one file: status ``ok`` with its size and mode, or ``unreadable`` and why."""
    try:
        data = _read(path)
    except FileNotFoundError as err:
        return {"status": layout.UNREADABLE_STATUS,
                "reason": pathtext.BROKEN_LINK if str(err) == pathtext.BROKEN_LINK else not_found(path)}
    except storage.NotRegularFileError as err:  # a FIFO, socket, device or folder: as a folder's walk says
        return {"status": layout.UNREADABLE_STATUS, "reason": str(err)}
    except PermissionError:
        return {"status": layout.UNREADABLE_STATUS, "reason": "permission denied"}
    except (OSError, ValueError) as err:  # a folder, an I/O error; ArrowInvalid (a ValueError) for a bad URI
        return {"status": layout.UNREADABLE_STATUS, "reason": pathtext.read_error(err, path)}
    if data is None:
        return {"status": layout.UNREADABLE_STATUS,
                "reason": f"not an image file (format not recognised, larger than {MAX_UNKNOWN_BYTES} bytes)"}
    info = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    try:
        info.update(probe(data), status=layout.OK, reason="")
    except DecodeError as err:
        info.update(status=layout.UNREADABLE_STATUS, reason=str(err))
    return info


def _assign_splits(df: "pd.DataFrame", cfg: CatalogConfig) -> "pd.Series":
    """Per family, shuffle units (images, or groups when ``group_split``: a row without a group is a group of
    its own) and cut test/val/train: test and val take units until they hold their fraction of the family's
    images, train the rest. Every split gets at least one unit (a family has >= 3), and with groups the
    largest group goes to train first (a group holding most of a family must not fill test or val and leave
    train with none)."""
    split = np.full(len(df), None, dtype=object)
    rng = np.random.default_rng(cfg.seed)
    for _, fam in df.groupby("label", sort=True):
        units = fam["group"].fillna(fam["path"]) if cfg.group_split else fam["path"]
        order = list(rng.permutation(units.unique()))
        sizes = units.value_counts()
        if cfg.group_split:
            order.insert(0, order.pop(max(range(len(order)), key=lambda i: (sizes[order[i]], -i))))
        n = len(fam)
        want = {"test": max(1, round(n * cfg.test_fraction)), "val": max(1, round(n * cfg.val_fraction))}
        unit_split, filled = {}, {"train": 0, "test": 0, "val": 0}
        for i, u in enumerate(order):
            empty = [s for s in ("test", "val", "train") if not filled[s]]
            if cfg.group_split and i == 0:
                target = "train"
            elif len(order) - i <= len(empty):  # as many units left as splits without one: one each
                target = empty[0]
            else:
                target = next((s for s in ("test", "val") if filled[s] < want[s]), "train")
            unit_split[u] = target
            filled[target] += sizes[u]
        split[df.index.get_indexer(fam.index)] = units.map(unit_split).to_numpy()
    return split


def build_manifest(source: str, cfg: CatalogConfig | None = None, workers: int = 16) -> "pd.DataFrame":
    """Scan ``source`` and return the manifest (columns ``MANIFEST_COLUMNS``), one row per input file or row.

    ``attrs`` carries ``files_seen`` (folder) or ``rows_read`` (manifest), and ``aliases`` (links to folders
    already listed, and files reached again through them; a link to a file gets a row), for the report.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    cfg = cfg or CatalogConfig()
    cfg.validate()
    src = read_source(source, cfg.columns)
    if cfg.group_split and not src["group"].notna().any():  # each image its own group: no grouping at all, unsaid
        raise SourceError(f"--group-split: no row of {source} has a group " + (
            f"(it has no column {cfg.group_column!r}, or every cell of it is empty); give --group-column naming its "
            "column of groups (e.g. species)" if source.lower().endswith((".csv", ".parquet")) else
            "(a folder's files have none); give a manifest with a column of groups (e.g. species)")
            + ", or leave --group-split out")
    attrs = dict(src.attrs)
    # stable sort: repeated manifest paths keep their input order (the first one is the one used)
    df = src.sort_values("path", kind="mergesort", na_position="last").reset_index(drop=True)
    # Rows a manifest lists under two labels (``conflict``) are read too, for their bytes only: a copy of
    # such an image under another path is a label clash as well (``_mark_label_clashes``).
    conflicted = df.index[df["status"] == layout.CONFLICT]
    verdict = df.loc[conflicted, ["status", "reason"]].copy()
    todo = df.index[df["status"].isna()].union(conflicted)
    with ThreadPoolExecutor(workers) as pool:
        # a bar in a terminal (disable=None: none without a TTY); piped or logged, a line every 30 s
        bar = tqdm(pool.map(_inspect, df.loc[todo, "path"]), total=len(todo), desc="catalog", unit="file",
                   disable=None)
        progress = Progress("catalog", len(todo), "files read") if bar.disable else None
        infos = []
        for info in bar:
            infos.append(info)
            if progress:
                progress.add()
    info = pd.DataFrame(infos, index=todo)
    for col in [*MANIFEST_COLUMNS, "frames"]:
        if col not in df.columns:
            df[col] = None
    for col in info.columns:
        df[col] = df[col].astype(object)
        df.loc[todo, col] = info[col]
    df.loc[conflicted, ["status", "reason"]] = verdict
    for col in ("width", "height", "bytes"):
        df[col] = pd.to_numeric(df[col]).astype("Int64")  # whole numbers, empty where unread (floats, NaN: round 67)
    _mark_label_clashes(df)
    ok = df["status"] == layout.OK
    # the copy that stays: a real file before a link to it (a link is judged like a copy), then the first listed:
    # a manifest's earliest row (path order made a later row the one kept: round 68), a folder's first by path
    links = df.loc[ok, "path"].map(lambda p: not storage.is_remote(p) and os.path.islink(storage.local_path(p)))
    order = pd.DataFrame({"link": links, "row": df.loc[ok, "source_row"] if "rows_read" in attrs else 0})
    first = df[ok].loc[order.sort_values(["link", "row"], kind="stable").index].groupby("sha256")["path"].transform(
        "first")
    dup = ok & (df["path"] != first.reindex(df.index))
    df.loc[dup, "duplicate_of"] = first[dup]
    df.loc[dup, "status"] = layout.DUPLICATE
    df.loc[dup, "reason"] = "same bytes as " + first[dup].astype(str)  # the copy that stays, by name
    usable = df["status"] == layout.OK
    counts = df[usable].groupby("label").size()
    small = usable & df["label"].map(counts).lt(cfg.min_images)
    df.loc[small, "status"] = layout.TOO_SMALL
    df.loc[small, "reason"] = f"family has fewer than min_images={cfg.min_images} usable images"
    if cfg.group_split:  # a group-disjoint split needs a group for each of train, val and test
        ok = df[df["status"] == layout.OK]
        units = ok["group"].fillna(ok["path"]).groupby(ok["label"]).nunique()
        few = (df["status"] == layout.OK) & df["label"].map(units).lt(3)
        df.loc[few, "status"] = layout.TOO_SMALL
        df.loc[few, "reason"] = ("group_split needs >= 3 groups (e.g. species) per family; this family has " +
                                 df.loc[few, "label"].map(units).astype(str))
    ok = df["status"] == layout.OK
    df["split"] = None
    df.loc[ok, "split"] = _assign_splits(df[ok], cfg)
    follow_originals(df, ok)
    # an animated GIF, a multi-page TIFF: its first frame is the image, said (round 67)
    frames = pd.to_numeric(df["frames"])  # 0: several, their count unknown (a damaged page list)
    several = df[(df["status"] == layout.OK) & (frames.gt(1) | frames.eq(0))]
    attrs["several_frames"] = {"files": len(several), "shown": [[p, int(n)] for p, n in zip(
        several["path"].iloc[:SHOWN_FRAMES], several["frames"].iloc[:SHOWN_FRAMES])]} if len(several) else None
    df = df[MANIFEST_COLUMNS]
    df.attrs.update(attrs)
    return df


def _mark_label_clashes(df: "pd.DataFrame") -> None:
    """The same bytes under two or more labels: every copy ``conflict`` (which label is right is unknown, and a
    copy in each family would teach the model both), a manifest path listed again included, and a copy of a
    path the manifest lists under two labels; copies under one label stay for the duplicate step."""
    known = df[df["status"].isin([layout.OK, layout.CONFLICT]) & df["sha256"].notna()]
    labels = known.groupby("sha256")["label"].agg(lambda s: sorted(set(s)))
    clash = labels[labels.map(len) > 1]
    if clash.empty:
        return
    hit = (df["status"] == layout.OK) & df["sha256"].isin(clash.index)
    reason = dict(zip(df.loc[hit, "path"], [f"the same image (bytes) is under {len(clash[h])} different labels: "
                                            + ", ".join(quoted(lab, None) for lab in clash[h])
                                            for h in df.loc[hit, "sha256"]]))
    hit |= (df["status"] == layout.DUPLICATE) & df["duplicate_of"].isin(reason)  # the same path listed again
    df.loc[hit, "status"] = layout.CONFLICT
    df.loc[hit, "reason"] = df.loc[hit, "path"].map(reason)
    df.loc[hit, "duplicate_of"] = None


def follow_originals(df: "pd.DataFrame", originals: "pd.Series") -> None:
    """Give every ``duplicate`` row the split of the row it copies (``duplicate_of``), found among the rows
    ``originals`` marks (their paths are unique: a path listed again is a duplicate or conflict row)."""
    split_of = dict(zip(df.loc[originals, "path"], df.loc[originals, "split"]))
    dup = df["status"] == layout.DUPLICATE
    df.loc[dup, "split"] = df.loc[dup, "duplicate_of"].map(split_of).fillna(df.loc[dup, "split"])


def run_catalog(source: str, workdir: str, cfg: CatalogConfig | None = None) -> "pd.DataFrame":
    """Catalog stage: write RUN/manifest.parquet, RUN/unreadable.csv and RUN/catalog.md.

    Raises:
        SourceError: the source cannot be read, or no row is usable (the reports are written first).
    """
    from dataclasses import asdict

    from .. import stages
    from ..errors import SourceError
    from ..locks import say_running

    if not storage.is_remote(source):  # the record names the source wherever the command ran from
        source = storage.filesystem(source)[1]
    refuse_workdir_inside(source, workdir)
    if not source.lower().endswith((".csv", ".parquet")) and stages.is_run_folder(source):  # its logs/ and stages/
        table = next((n for n in (layout.CLEAN_MANIFEST, layout.MANIFEST) if storage.exists(layout.path(source, n))),
                     None)  # the one it holds (it named clean's of a run clean never ran in: round 50)
        raise SourceError(f"{source} is a speciesfam run folder, not a folder of images (its logs/ and stages/ "
                          "would be catalogued as families): give the folder that holds one folder per family"
                          + (f", or its {table} as a manifest" if table else ""))
    refuse_source_replaced(source, workdir)
    refuse_files_of_yours(workdir)
    storage.check_creatable(workdir)  # a path under a file fails now, not after reading every image
    stages.refuse_folders_in_place(workdir, "catalog")
    say_running(workdir, "catalog")
    started_at = stages.timestamp()  # files modified after it may not hold the bytes hashed (clean's cache check)
    manifest = build_manifest(source, cfg)
    counts = manifest["status"].value_counts().to_dict()
    # a re-catalog that found nothing usable (a wrong or emptied folder) replaced a run's catalog with it, and
    # every later stage then refused the run: its reports go to logs/, a catalog with usable rows stays (round 68)
    keep = not counts.get(layout.OK) and _usable_catalog(workdir)
    failed = layout.path(workdir, layout.LOGS, FAILED_CATALOG)
    if storage.is_dir(failed):  # an earlier attempt's: replaced (links in it removed, never written through)
        storage.filesystem(failed)[0].delete_dir(storage.filesystem(failed)[1])
    unwritten = ""
    try:
        _write_reports(manifest, source, cfg or CatalogConfig(), failed if keep else workdir)
    except OSError as err:  # logs/ a file: the error said that, not that the source has no usable image
        if not keep:
            raise
        unwritten = f" (they could not be written there: {err})"
    if not keep:
        stages.finish(workdir, "catalog", config={"source": source, **asdict(cfg or CatalogConfig())},
                      summary={"rows": len(manifest), "status": counts, **manifest.attrs},
                      started_at=started_at)  # the same again (its manifest too): clean and the searches stay current
    if not counts.get(layout.OK):
        among = f"among {counted(len(manifest), 'row')} ({', '.join(f'{n} {k}' for k, n in counts.items())})" \
            if len(manifest) else "in it: it has no rows"
        kept = f"; {workdir} keeps its catalog{keep} as it was (this attempt's manifest and report are in {failed}" \
            f"{unwritten})" if keep else ""
        raise SourceError(f"{source}: no usable image {among}{_none_usable_fix(manifest, cfg or CatalogConfig())}"
                          + ("" if unwritten else f"; see {layout.path(failed if keep else workdir, layout.CATALOG_MD)}")
                          + kept)
    return manifest


def _usable_catalog(workdir: str) -> str:
    """' of SOURCE' (or why not), when run folder ``workdir`` holds a catalog with usable rows that a catalog
    finding none must not replace; '' when it holds none (a new folder, or a catalog itself with nothing usable:
    the new attempt replaces it), or a manifest that cannot be read."""
    from .. import stages
    from ..errors import StageOrderError

    try:
        if not storage.exists(layout.path(workdir, layout.MANIFEST)) or not (
                storage.read_table(layout.path(workdir, layout.MANIFEST))["status"] == layout.OK).any():
            return ""
    except (OSError, ValueError, KeyError, SpeciesfamError):
        return ""
    try:
        rec = stages.load(workdir, "catalog")
    except StageOrderError:
        rec = None
    return f" of {rec['config']['source']}" if rec and rec.get("config", {}).get("source") else " (no record names " \
        "its source)"


def _write_reports(manifest: "pd.DataFrame", source: str, cfg: CatalogConfig, folder: str) -> None:
    """The manifest, unreadable.csv and catalog.md of ``manifest`` in ``folder``."""
    storage.write_table(manifest, layout.path(folder, layout.MANIFEST))
    bad = manifest[manifest["status"] == layout.UNREADABLE_STATUS][["path", "label", "reason"]]
    storage.write_table(bad, layout.path(folder, layout.UNREADABLE))
    storage.write_text(layout.path(folder, layout.CATALOG_MD), report(manifest, source, cfg))


def _none_usable_fix(manifest: "pd.DataFrame", cfg: CatalogConfig) -> str:
    """What to change when no row is usable, where the rows tell it (it showed a dict and no fix: round 48)."""
    counts = manifest["status"].value_counts()
    if counts.get(layout.TOO_SMALL):
        groups = " or fewer than 3 groups (--group-split)" if cfg.group_split else ""
        return (f": families with fewer than --min-images {cfg.min_images} usable images{groups} cannot be split "
                "three ways; give a lower --min-images, or more images")
    if counts.get(layout.NO_FAMILY) and set(counts.index) <= {layout.NO_FAMILY, layout.SKIPPED}:
        return (": every file is at the folder's root: give the folder that holds one folder per family (is this one"
                " a family folder itself?)")
    if set(counts.index) == {layout.SKIPPED}:  # it said 'at the folder's root' of system files in families (round 49)
        folders = manifest.attrs.get("skipped_folders") or {}  # why, from the rows (an old run folder's files
        why = manifest["reason"].value_counts()  # were said to be 'hidden or system files': round 51)
        return f": every file was skipped ({'; '.join(f'{n} {reason}' for reason, n in why.head(3).items())}" + (
            f"; folders {some(folders, quote=True)}" if folders else "") + ")"
    if counts.get(layout.UNREADABLE_STATUS) and set(counts.index) <= {layout.UNREADABLE_STATUS, layout.SKIPPED}:
        unreadable = manifest.loc[manifest["status"] == layout.UNREADABLE_STATUS, "reason"]
        return f": the commonest reason is {unreadable.value_counts().index[0]}"  # the fix is in it
    return ""


def load_manifest(uri: str, stage: str | None = None) -> "pd.DataFrame":
    """Read a manifest and check its columns; a missing file says which stage (``stage``: its command; catalog's
    on the manifest's folder by default) writes it."""
    import posixpath

    from .. import stages

    df = storage.read_table(uri, stage_hint=stage or stages.command("catalog", posixpath.dirname(uri)))
    missing = [c for c in ("path", "label", "status", "split") if c not in df.columns]
    if missing:
        raise SourceError(f"{uri}: missing column(s) {missing}; was it written by `speciesfam catalog`?")
    return df


def check_images_readable(manifest: "pd.DataFrame", manifest_uri: str, n: int = 5) -> None:
    """Before any work: every local image a trial reads (train and val: a stat each, ~20 ms per 10,000), or ``n``
    spread over them in a bucket. None there: the data is not mounted here (or the bucket not readable); some:
    files deleted since catalog (the first one alone read as "not mounted"; one the 5 checked missed failed the
    search half a minute in, when the image cache reached it)."""
    rows = manifest[manifest["status"] == "ok"]
    if "split" in rows:
        rows = rows[rows["split"].isin(["train", "val"])]
    remote = rows["path"].map(storage.is_remote)
    local, bucket = list(dict.fromkeys(rows.loc[~remote, "path"])), list(dict.fromkeys(rows.loc[remote, "path"]))
    bucket = [bucket[i] for i in sorted(set(np.linspace(0, len(bucket) - 1, min(n, len(bucket))).astype(int)))]
    picks = local + bucket
    missing = [p for p in local if not os.path.exists(p)] + [p for p in bucket if not storage.exists(p)]
    if missing and len(missing) == len(picks):
        raise SpeciesfamError(f"{manifest_uri} lists images that cannot be read from here (none of the "
                              f"{len(picks)} checked), e.g. {missing[0]!r}; is the data path mounted (or the bucket "
                              "readable) on this machine?")
    if missing:
        from .. import stages

        raise SpeciesfamError(f"{manifest_uri} lists images deleted since catalog ({len(missing)} of the "
                              f"{len(picks)} checked), e.g. {missing[0]!r}; "
                              f"{stages.rerun(storage.parent(manifest_uri), 'catalog', 'clean')}, then tune")
