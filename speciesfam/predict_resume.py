"""A resumable predict's bookkeeping: which input rows its output already holds, which to predict, and the output
in the input's order.

An input row is known by its key (``row_keys``): its path, the manifest columns carried to the output (label,
split) and which repeat of them it is; with the file's stamp (``file_stamps``: size and modification time) a
row of a file changed since its prediction is not done. The output file and the parts a killed run left
(``<out>.parts/``) are read together (``read_done``); ``check_resume`` refuses an output of another bundle,
--top-k or input, and ``merged`` puts one output row per input row, in the input's order.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import storage
from .errors import SpeciesfamError
from .lines import counted

if TYPE_CHECKING:
    import pandas as pd

PREDICTION_COLUMNS = ["path", "family", "probability", "top_families", "top_probabilities", "error", "seen", "bundle_id",
                      "stamp"]
CARRIED = ("label", "split")  # manifest columns copied to the output (e.g. to score predictions later)


def file_stamps(paths: list[str], errors: list[str]) -> list[str]:
    """``size:mtime_ns`` of each local file (what tells a resumed predict that a file changed since its row was
    written); "" for rows already in error, remote paths and files that cannot be stat'ed (read, then, as they are)."""
    stamps = []
    for path, error in zip(paths, errors):
        try:
            st = os.stat(path) if path and not error and not storage.is_remote(path) else None
        except (OSError, ValueError):
            st = None
        stamps.append(f"{st.st_size}:{st.st_mtime_ns}" if st else "")
    return stamps


def read_done(out: str) -> "pd.DataFrame":
    """Rows already predicted: the output file and the parts of an interrupted run."""
    import pandas as pd

    try:
        frames = [storage.read_table(out)] if storage.exists(out) else []
        parts = out + ".parts"
        if storage.exists(parts):
            frames += [storage.read_table(p) for p in storage.list_files(parts) if p.endswith(".parquet")]
    except SpeciesfamError as err:  # a folder, another program's file, a damaged file
        raise SpeciesfamError(f"{out} exists and is not a speciesfam predictions file ({err}); give another --out "
                              "(predict would resume into it)") from err
    if any(not {"path", "bundle_id"} <= set(f.columns) for f in frames):
        raise SpeciesfamError(f"{out} exists and is not a speciesfam predictions file (no 'path' and 'bundle_id' "
                              "columns); give another --out (predict would resume into it)")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)


def key_columns(rows: "pd.DataFrame", stamp: bool = True) -> list[str]:
    """What identifies an input row: its path and the manifest columns carried to the output, and (``stamp``) the
    file as it is now: a row of a file changed since is not done."""
    return ["path", *(c for c in CARRIED if c in rows.columns), *(["stamp"] if stamp else [])]


def row_keys(df: "pd.DataFrame", columns: list[str]) -> "pd.Series":
    """One key per row: its ``columns`` (path and the carried label/split) and which repeat of them it is, so a
    manifest that lists a path twice (two labels, or the same one) has two rows to predict and to resume."""
    import json

    import pandas as pd

    values = [df[c] if c in df.columns else pd.Series(None, index=df.index, dtype=object) for c in columns]
    base = pd.Series([json.dumps([None if v is None or v != v else str(v) for v in row]) for row in zip(*values)],
                     index=df.index, dtype=object)
    return base + "#" + base.groupby(base).cumcount().astype(str)


def to_predict(rows: "pd.DataFrame", done: "pd.DataFrame", stamp: bool = True) -> "pd.DataFrame":
    """The input rows not predicted yet (``done``: what the output and its parts hold), repeats counted; with
    ``stamp``, also the rows of files changed since."""
    columns = key_columns(rows, stamp)
    return rows[~row_keys(rows, columns).isin(set(row_keys(done, columns)))].reset_index(drop=True)


def merged(done: "pd.DataFrame", rows: "pd.DataFrame", columns: list[str]) -> "pd.DataFrame":
    """The output: one row of ``done`` (the output and its parts) per input row, in the input's order (a resume
    appended its rows after the earlier ones), rows no longer in the input left out. A row found twice (in the
    output and in a part a kill left) is kept once: its repeat's key is not the input's."""
    keys, wanted = row_keys(done, columns), row_keys(rows, columns)
    missing = rows.loc[~wanted.isin(set(keys)), "path"]
    if len(missing):  # every input row must be accounted for; a gap is a bug, not a result
        raise RuntimeError(f"predict: {counted(len(missing), 'input row')} without an output row, e.g. "
                           f"{missing.tolist()[:3]}")
    where = dict(zip(keys, range(len(keys))))
    return done.iloc[[where[k] for k in wanted]].reset_index(drop=True)


def check_resume(done: "pd.DataFrame", rows: "pd.DataFrame", out: str, bid: str, top_k: int | None = None) -> None:
    """``out`` may be resumed only by the same bundle, with the same ``top_k`` (the families listed per row, at
    most the bundle's), on the same input: another input's rows would stay in it
    beside this one's (and rows of both with the same path would keep the other's label and split). Rows of
    files deleted since they were predicted are this input's as it was: left out of the output, and said."""
    if len(done) and (done["bundle_id"] != bid).any():
        raise SpeciesfamError(f"{out} holds predictions of another bundle (id {done['bundle_id'].iloc[0]}, this one "
                              f"{bid}); give another --out or delete it")
    listed = done.loc[done["error"].fillna("") == "", "top_families"].map(len) if "top_families" in done else []
    if top_k and len(listed) and listed.max() != top_k:  # rows of two shapes in one output, unsaid (hostile tester)
        raise SpeciesfamError(f"{out} holds predictions with --top-k {listed.max()} (this run: {top_k}); give --top-k "
                              f"{listed.max()} to resume it, or another --out")
    columns = key_columns(rows, stamp=False)  # a file changed since is this input's still: predicted again
    other = done.loc[~row_keys(done, columns).isin(set(row_keys(rows, columns))), "path"]
    there = next((p for p in other.unique() if _still_there(p)), None)  # one request for another bucket's input
    if there is not None or (len(other) and len(other) == len(done)):  # none of it this input's: an unmounted disk
        raise SpeciesfamError(f"{out} holds predictions of another input ({counted(len(other), 'row')} not this "
                              f"input's as given now, e.g. {other.iloc[0] if there is None else there!r}"
                              + ("" if there is not None else "; none of its rows is this input's, and their files "
                                 "are gone from here, or not mounted")
                              + "); predict resumes only the same folder or manifest: give another --out or delete it")
    if len(other):
        print(f"predict: {counted(len(other), 'row')} in {out} of files deleted since (e.g. {other.iloc[0]!r}): "
              "left out of it")


def without_own_output(rows: "pd.DataFrame", out: str) -> "pd.DataFrame":
    """A folder's rows less ``out`` and its parts, when a link in the folder reaches them (check_out refuses an
    --out inside the folder; through a link, the next predict listed its own output as a file that failed)."""
    if storage.is_remote(out):
        return rows
    real_out = os.path.realpath(storage.local_path(out))
    real = rows["path"].map(lambda p: os.path.realpath(p) if p and not storage.is_remote(p) else "")
    own = (real == real_out) | real.str.startswith(real_out + ".parts" + os.sep)
    if own.any():
        print(f"predict: {counted(int(own.sum()), 'file')} of the folder {'is' if own.sum() == 1 else 'are'} its "
              f"own output {out}, reached through a link: not predicted")
    kept = rows[~own].reset_index(drop=True)
    kept.attrs = dict(rows.attrs)
    return kept


def todo_line(rows: "pd.DataFrame", done: "pd.DataFrame", todo: "pd.DataFrame", out: str) -> str:
    """predict's line before the work: rows in the input, already in ``out``, to predict (of which changed
    since their row was written, and of those, files gone: a manifest's row of a file deleted since)."""
    fresh = to_predict(rows, done, stamp=False)  # not in the output at all; the others in todo changed since
    changed, gone = len(todo) - len(fresh), _unstamped(todo) - _unstamped(fresh)
    links = rows.attrs.get("aliases", 0)
    return (f"predict: {counted(len(rows), 'row')}, {len(rows) - len(todo)} already in {out}, {len(todo)} to predict"
            + (f" ({changed} of them changed since their row was written"
               + (f", {gone} of these as their file is gone)" if gone else ")") if changed else "")
            + (f" ({counted(links, 'link')} to folders already listed: not walked again)" if links else ""))


def _unstamped(rows: "pd.DataFrame") -> int:
    """Rows with no error whose file could not be stat'ed (gone; or remote, which has no stamp either way)."""
    return int(((rows["stamp"] == "") & (rows["error"] == "")).sum())


def _still_there(path: str) -> bool:
    """Whether an earlier row's file is still there (a broken link is: it is listed, as an error row)."""
    if not path:
        return True  # a manifest's empty path: not a file that could have gone
    try:
        return os.path.lexists(path) if not storage.is_remote(path) else storage.exists(path)
    except (OSError, ValueError, SpeciesfamError):  # cannot tell: not taken for gone
        return True
