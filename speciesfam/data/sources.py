"""Read a catalog source (a folder per family, or a CSV/Parquet manifest) into one row per input file or row.

Nothing is dropped here: every file of a folder and every row of a manifest becomes a row with a ``status``.
Rows that can be used are left with ``status`` None (``catalog`` then reads and decodes them); the others
already carry their status and a reason:

- ``skipped``: a hidden file, a file under a hidden folder (``reason`` starts with ``hidden``), or a file an
  operating system leaves in folders (``Thumbs.db``, ``desktop.ini``: ``reason`` starts with ``system file``);
- ``no_family``: a file at the source's root, in no family folder;
- ``invalid``: a manifest row with an empty, whitespace-only or missing label or path, or a file in a family folder
  whose name is only whitespace;
- ``unreadable``: a broken link, a FIFO, a folder that cannot be listed, a URI scheme we cannot read;
- ``conflict``: a manifest path listed with two or more different labels (every such row keeps this status);
- ``duplicate``: a manifest path listed again with the same label (``duplicate_of`` names the path).

Labels are strings exactly as written: CSV cells are read as text without NA guessing (``007``, ``7``,
``NA`` and ``null`` are four families), Parquet numbers become the text of their value (``7``, ``0.1``).
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import TYPE_CHECKING

from .. import layout, pathtext, storage
from ..errors import SourceError
from ..lines import quoted
from ..listing import top_folders, walk
from .text_table import header_hint, named_columns, read_text_table

if TYPE_CHECKING:
    import pandas as pd

SOURCE_COLUMNS = ["path", "label", "group", "status", "reason", "duplicate_of", "source_row"]
# URI schemes pyarrow reads for us; anything else (http://, ftp://...) is a row `unreadable`, not a crash.
SCHEMES = ("s3", "gs", "gcs", "hdfs", "file")
HIDDEN = "hidden (its name or a folder's name starts with '.')"
# files Windows and macOS write into folders of pictures by themselves: skipped like hidden files, never images
SYSTEM_FILES = {"thumbs.db": "Windows' thumbnail cache", "ehthumbs.db": "Windows' thumbnail cache",
                "ehthumbs_vista.db": "Windows' thumbnail cache", "desktop.ini": "Windows' folder settings",
                "icon\r": "macOS's folder icon"}
# folders a NAS or an operating system keeps beside pictures (thumbnails as JPEGs, deleted files): nothing in them
# is an image of the collection (a Synology copy's @eaDir thumbnails were catalogued as photos: round 48)
SYSTEM_FOLDERS = {"@eadir": "Synology's thumbnails", "#recycle": "Synology's recycle bin",
                  "#snapshot": "Synology's snapshots", "@recycle": "QNAP's recycle bin",
                  "@recently-snapshot": "QNAP's snapshots", "$recycle.bin": "Windows' recycle bin",
                  "system volume information": "Windows' system folder", "__macosx": "macOS's zip metadata"}
ZONE_IDENTIFIER = ":zone.identifier"  # a Windows download's mark, a file of its own once copied through WSL


def read_source(source: str, columns: dict[str, str] | None = None) -> "pd.DataFrame":
    """One row per file (folder source) or per row (manifest source), columns ``SOURCE_COLUMNS``. ``columns``:
    the manifest's columns read as path, label and group (``CatalogConfig.columns``).

    Raises:
        SourceError: the source does not exist, is empty, or a manifest lacks its ``path``/``label`` columns.
    """
    if source.lower().endswith((".csv", ".parquet")):  # MANIFEST.CSV from a Windows export too
        return read_manifest(source, columns)
    named = named_columns(columns)
    if named:  # a folder's labels are its subfolders' names: the flag would be ignored, unsaid
        name, column = next(iter(named.items()))
        raise SourceError(f"--{name}-column {column} names a column of a manifest, and {source} is not one (a "
                          ".csv/.parquet file): a folder's families are its subfolders' names; leave the flag out, "
                          "or give the manifest")
    if not storage.exists(source):
        raise SourceError(f"{source} does not exist: give a folder with one subfolder per family, "
                          "or a .csv/.parquet manifest with 'path' and 'label' columns")
    try:
        return read_folder(source)
    except NotADirectoryError:
        raise SourceError(f"{source} is a file, not a folder: give a folder with one subfolder per family, or a "
                          "manifest named *.csv or *.parquet with 'path' and 'label' columns (save a .tsv or "
                          ".xlsx as CSV)") from None


def read_folder(source: str) -> "pd.DataFrame":
    """Every file under folder ``source``: the first folder level names the family."""
    import pandas as pd

    entries, aliases = walk(source, file_links=True, families=True)
    if not entries:
        raise SourceError(f"{source}: the folder holds no files (expected FAMILY/IMAGE, one folder per family)")
    rows = []
    runs = _run_folders(source, {e.rel.split("/")[0] for e in entries if "/" in e.rel})

    def no_family(top: str) -> bool:  # a top folder skipped whole: hidden, a system folder, an old run folder
        return top.startswith(".") or top.lower() in SYSTEM_FOLDERS or top in runs

    for i, e in enumerate(entries):
        parts = e.rel.split("/")
        label = parts[0] if len(parts) > 1 and not no_family(parts[0]) else None
        if why := skip_reason(e.rel):
            status, reason = layout.SKIPPED, why
        elif len(parts) > 1 and parts[0] in runs:
            status, reason = layout.SKIPPED, "in a speciesfam run folder (its galleries and plots), not an image"
        elif e.problem:
            status, reason = layout.UNREADABLE_STATUS, e.problem
        elif len(parts) == 1:
            status, reason = layout.NO_FAMILY, "file at the source's root, in no family folder"
        elif label is not None and not label.strip():  # '   ', '\r': invalid as such a manifest label (round 56)
            status, reason = layout.INVALID, "family folder name is only whitespace: rename it to the family's name"
        else:
            status, reason = None, ""
        rows.append({"path": e.path, "label": label, "group": None, "status": status, "reason": reason,
                     "duplicate_of": None, "source_row": i})
    df = pd.DataFrame(rows, columns=SOURCE_COLUMNS)
    listed = {e.rel.split("/")[0] for e in entries}
    # a family folder holding no file is no row; catalog.md and the console name it (an emptied or mis-copied one)
    empty = [name for name in map(pathtext.shown, top_folders(source))
             if name not in listed and not name.startswith(".")]
    # files below a family folder's subfolders take its name ('Carnivora/Felidae/x.jpg' -> 'Carnivora'): said, so
    # a taxonomy tree kept as folders does not lose its families unseen (hostile tester round 42)
    deeper = [e.rel for e in entries if e.rel.count("/") >= 2 and not skip_reason(e.rel)  # a skipped run folder's
              and e.rel.split("/")[0] not in runs and e.rel.split("/")[0].strip()]  # or a blank one's: no name (51, 57)
    nested = {"files": len(deeper), "example": deeper[0], "family": deeper[0].split("/")[0]} if deeper else None
    # a top folder skipped as hidden or a system folder, with its files: a family named '...' vanished, said only
    # as 'N skipped' (round 48)
    tops = [e.rel.split("/")[0] for e in entries if "/" in e.rel]
    left_out = {name: tops.count(name) for name in dict.fromkeys(tops) if no_family(name)}
    df.attrs.update(files_seen=len(entries), aliases=aliases, empty_folders=empty, nested=nested,
                    skipped_folders=left_out)
    return df


def _run_folders(source: str, tops: set[str]) -> set[str]:
    """The folders at the top of a local ``source`` that are speciesfam run folders: an old run kept beside the
    family folders was catalogued as a family of its PNGs (round 50)."""
    from .. import stages

    if storage.is_remote(source):  # a request per family folder: not for a bucket
        return set()
    return {top for top in tops if not top.startswith(".") and stages.is_run_folder(os.path.join(source, top))}


def skip_reason(rel: str, listed: bool = False) -> str:
    """Why a file of a source folder (``rel``: its path relative to the folder) is skipped, "" if it is not: it
    is hidden (its name or a folder's name starts with '.'), or a file an operating system writes into folders
    (Thumbs.db, desktop.ini, x.jpg:Zone.Identifier; any case) or into folders of their own (a NAS's @eaDir,
    $RECYCLE.BIN). Catalog gives such files a 'skipped' row; predict skips them too. ``listed``: a path named
    one by one (a manifest's row, predict's argument; round 49: a find-made manifest's @eaDir thumbnails were
    images), whose folders' names are not judged hidden (an absolute path may pass through ~/.cache)."""
    why = _skip_reason(rel, listed)
    if why and listed and not storage.is_remote(rel) and not os.path.lexists(storage.local_path(rel)):
        return ""  # a listed name that is not there is 'file not found', not a hidden file skipped
    return why


def _skip_reason(rel: str, listed: bool) -> str:
    parts = rel.split("/")
    if listed and "\\" in parts[-1]:  # a Windows path ('.\imgs\x.jpg' was skipped as hidden, not 'not found'):
        parts[-1:] = parts[-1].split("\\")  # its file name is what follows the last backslash
    if any(part.startswith(".") for part in (parts[-1:] if listed else parts)):
        return HIDDEN
    folder = next((SYSTEM_FOLDERS[p.lower()] for p in parts[:-1] if p.lower() in SYSTEM_FOLDERS), None)
    if folder:
        return f"in a system folder ({folder}), not an image of the collection"
    name = parts[-1].lower()
    what = SYSTEM_FILES.get(name) or ("Windows' download mark" if name.endswith(ZONE_IDENTIFIER) else None)
    return f"system file ({what}), not an image" if what else ""


def read_manifest(source: str, columns: dict[str, str] | None = None) -> "pd.DataFrame":
    """Rows of a CSV/Parquet manifest with ``path``, ``label`` and optional ``group`` columns (or the columns
    ``columns`` names for them: ``{"label": "family"}``).

    Relative paths resolve against the manifest's own folder and are stored absolute (or as URIs), so later
    stages work from any current directory.
    """
    import pandas as pd

    raw = read_text_table(source, columns)
    missing = {"path", "label"} - set(raw)
    if missing:  # the file's own names (a column read as 'path' is shown as the file has it: round 64)
        own = named_columns(columns)
        raise SourceError(f"{source}: manifest lacks column(s) {sorted(missing)}; it needs 'path' and "
                          f"'label' (and optionally 'group'), or --path-column/--label-column naming the columns "
                          f"that hold them; found {[own.get(c, c) for c in raw]}{header_hint(list(raw))}")
    n = len(raw["path"])
    base = storage.parent(source)  # relative paths are relative to the manifest's folder
    groups = raw.get("group", [None] * n)
    earlier = _run_statuses(source, raw)
    rows = []
    for i, (path, label, group) in enumerate(zip(raw["path"], raw["label"], groups)):
        status, reason = None, ""
        if earlier[i]:  # a speciesfam run's manifest: what its catalog or clean left out stays out
            status, reason = layout.SKIPPED, earlier[i]
        elif path is None or not path.strip():
            status, reason = layout.INVALID, no_path(raw, i)
        else:  # resolved for every row, so an unusable row's path names its file too, from any folder
            path, problem = resolve_path(path, base)
            skipped = skip_reason(path, listed=True)
            if skipped:
                status, reason = layout.SKIPPED, skipped
            elif label is None:
                status, reason = layout.INVALID, "label is missing (null)"
            elif not label.strip():
                status, reason = layout.INVALID, "label is empty" if not label else "label is only whitespace"
            elif problem:
                status, reason = layout.UNREADABLE_STATUS, problem
        rows.append({"path": path, "label": label, "group": group if group and group.strip() else None,
                     "status": status, "reason": reason, "duplicate_of": None, "source_row": i})
    df = pd.DataFrame(rows, columns=SOURCE_COLUMNS)
    _mark_repeats(df)
    # a file's own split column is not the run's (catalog draws per family, --val-fraction/--test-fraction): said,
    # as it was silently replaced (round 64); a run manifest's splits are catalog's own, drawn again
    own_split = next((c for c in raw if str(c).strip().lower() == "split"), None) \
        if not is_run_manifest(raw) else None
    df.attrs.update(rows_read=n, aliases=0, **({"own_split": own_split} if own_split is not None else {}))
    if own_split is not None:
        from ..console import say_err

        say_err(f"catalog: note: {source}'s column {own_split!r} is not used: catalog draws its own train/val/test "
                "split per family (--val-fraction, --test-fraction, --group-split)")
    return df


def is_run_manifest(raw: dict[str, list]) -> bool:
    """Whether a manifest's columns ``raw`` are a speciesfam run's (a catalog's or clean's)."""
    return layout.RUN_MANIFEST_COLUMNS <= set(raw) and not _not_a_run_manifest(raw)


def _not_a_run_manifest(raw: dict[str, list]) -> str:
    """Why a table with a run manifest's columns is not one ('' when it is): statuses of its own (a user's 'status'
    of 'trusted' was read as one: round 68), none, or ok rows without the sha256 catalog gives each (a table of
    'ok' rows without it was scored as a run's test split, its model's training images among them: round 69)."""
    given = [(st, sha) for st, sha in zip(raw["status"], raw["sha256"]) if isinstance(st, str) and st]
    foreign = sorted({st for st, _ in given if st not in layout.STATUSES})
    if foreign:
        from ..lines import some

        return f"statuses of its own ({some(foreign, quote=True)})"
    if not given:
        return "no status in its column 'status'"
    if any(st == layout.OK and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)) for st, sha in given):
        return "'ok' rows without the sha256 catalog gives each"
    return ""


def _run_statuses(source: str, raw: dict[str, list]) -> list[str]:
    """Per row, why it stays out when ``source`` is a speciesfam run's manifest (a catalog's or clean's: status,
    split, sha256 columns) and the row's status there is not ok, else ''. Its removed outliers and skipped files
    came back as images (hostile tester); the statuses of its ok rows are checked again like any row's."""
    n = len(raw["path"])
    if not is_run_manifest(raw):
        if layout.RUN_MANIFEST_COLUMNS <= set(raw):
            from ..console import say_err

            say_err(f"catalog: note: {source} has the columns of a speciesfam run's manifest, but "
                    f"{_not_a_run_manifest(raw)}: read as a manifest of yours, its column 'status' not used")
        return [""] * n
    reasons = raw.get("reason") or [""] * n
    said = [f"'{st}' in the run manifest it comes from" + (f": {why}" if isinstance(why, str) and why else "")
            if isinstance(st, str) and st and st != layout.OK else "" for st, why in zip(raw["status"], reasons)]
    left = sum(bool(s) for s in said)
    if left:
        from ..console import say
        from ..lines import counted

        say(f"catalog: {source} is a speciesfam run's manifest: its {counted(left, 'row')} not 'ok' there (removed, "
            "skipped, ...) stay out, as status skipped; its ok rows are checked again")
    return said


def resolve_path(path: str, base: str) -> tuple[str, str]:
    """(absolute path or URI, problem) for a manifest path; relative paths are relative to ``base``."""
    local = storage.file_uri_path(path)  # file:///x, file://localhost/x, file:/x, any case; %-escapes decoded
    if local is not None:
        return os.path.normpath(local), ""
    if "://" in path:
        scheme = path.split("://", 1)[0].lower()
        if scheme == "file":
            return path, storage.foreign_file_uri(path)
        if scheme not in SCHEMES:
            return path, (f"unsupported URI scheme '{scheme}://' (use a local path, file://, s3:// or gs://; "
                          "download web images first)")
        return path, ""
    if path.startswith("/"):
        return os.path.normpath(path), ""
    if storage.is_remote(base):
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, path))}", ""
    resolved = os.path.normpath(os.path.join(base, path))
    return resolved, _from_here(path, resolved, base)


def _from_here(written: str, path: str, base: str) -> str:
    """'file not found' with why, for a relative path that names no file from the manifest's folder but one from
    the current folder (paths written from a project's root: every row 'file not found', unexplained; round 48;
    predict's and evaluate's manifests too: round 49)."""
    if os.path.lexists(path) or not os.path.exists(written):
        return ""
    return (f"file not found (relative paths are read from the manifest's folder, {base}; {written} is a file "
            "from the current folder: write the paths relative to the manifest's folder, or absolute)")


def no_path(raw: dict[str, list[str | None]], i: int) -> str:
    """Why row ``i`` of a manifest (``read_text_table``'s columns), whose path cell is empty, whitespace or null,
    is not read (catalog's reason, predict's error): a blank line when its other cells are empty too."""
    if not any(cells[i] and cells[i].strip() for column, cells in raw.items() if column != "path"):
        return "blank line: no path and no label"
    return "path is empty" if not raw["path"][i] else "path is only whitespace"


def _mark_repeats(df: "pd.DataFrame") -> None:
    """A path listed with different labels: every such row ``conflict``; again with one label: ``duplicate``."""
    rows = df[df["status"].isna()]
    listed_again = rows[rows.duplicated("path", keep=False)]  # usually few: group only these
    labels = listed_again.groupby("path")["label"].agg(lambda s: sorted(set(s)))
    labels = labels[labels.map(len) > 1]
    times = rows["path"].value_counts()
    hit = df["status"].isna() & df["path"].isin(labels.index)
    df.loc[hit, "status"] = layout.CONFLICT
    df.loc[hit, "reason"] = [f"path listed {times[p]} times with {len(labels[p])} different labels: "
                             + ", ".join(quoted(lab, None) for lab in labels[p]) for p in df.loc[hit, "path"]]
    rows = df[df["status"].isna()]
    again = rows.index[rows.duplicated("path", keep="first")]
    first_row = rows.drop_duplicates("path").set_index("path")["source_row"]
    df.loc[again, "status"] = layout.DUPLICATE
    df.loc[again, "duplicate_of"] = df.loc[again, "path"]
    df.loc[again, "reason"] = [f"path listed again with the same label (the first is source_row {first_row[p]})"
                               for p in df.loc[again, "path"]]
