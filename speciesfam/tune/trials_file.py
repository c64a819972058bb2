"""RUN/trials.csv read back: its trial paths taken to a run folder moved or copied since its searches, and, when it
is missing, emptied, damaged or lacks a search's trials, why, with the --resume of each search that writes them
again (export and the report refuse or say so; a search's own --resume rewrites a damaged table)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import layout, pathtext, storage

if TYPE_CHECKING:
    import pandas as pd


def search_name(trial_path: object) -> str:
    """The search (its --name) a trial ran in: its folder's parent, RUN/tune/NAME/TRIAL ('' if unknown)."""
    return os.path.basename(os.path.dirname(trial_path.rstrip("/"))) if isinstance(trial_path, str) else ""


def read_trials(workdir: str, stage_hint: str = "") -> "pd.DataFrame":
    """RUN/trials.csv, its trial and checkpoint paths taken to this run folder when it was moved or copied
    since its searches (``moved_here``). Missing, though the tune record names searches (deleted): refused
    naming the --resume that writes it again (it said to run tune, which then refused the search's name)."""
    from ..errors import SourceError, StageOrderError

    uri = layout.path(workdir, layout.TRIALS)
    gone = stage_hint and trials_deleted(workdir)
    if gone:
        raise StageOrderError(gone)
    try:
        trials = storage.read_table(uri, stage_hint=stage_hint)
        cut = cut_short(uri, trials) or not_numbers(uri, trials)
        if cut:  # pandas reads a last row cut mid-way with its missing fields empty: a trial of no search
            raise SourceError(cut)
    except SourceError as err:  # emptied or damaged: the --resume that writes it again, if a search ran
        again = stage_hint and rewrite_advice(workdir, unreadable(uri, err))
        if again:
            raise StageOrderError(again) from err
        raise
    return moved_here(trials, workdir)


NOT_TRIALS = "a table of trials (no column trial_id, status or config)"
BINARY = f"it holds binary data, not {NOT_TRIALS}"


def cut_short(uri: str, trials: "pd.DataFrame") -> str:
    """Why RUN/trials.csv was cut short (a copy or disk that stopped mid-write), '' when it is whole: every row
    has the fields a trial always has, and the file ends its last line (as pandas writes it)."""
    needed = [c for c in ("trial_id", "status", "config") if c in trials.columns]
    if not needed:  # binary data or another table: it was called 'cut short: its last line ends mid-row' (round 54)
        binary = b"\x00" in storage.read_bytes(uri)[:65536]
        return f"{uri} is damaged: {BINARY if binary else 'it is not ' + NOT_TRIALS}"
    short = trials[trials[needed].isna().any(axis=1)]
    if len(short):  # the fields that row lacks (it named all three beside a trial id and status: round 49)
        lacking = [c for c in needed if short[c].isna().iloc[0]]
        return f"{uri} is cut short: its line {short.index[0] + 2} lacks {', '.join(lacking)}"
    if uri.endswith(".csv") and not storage.read_bytes(uri).endswith(b"\n"):
        return f"{uri} is cut short: its last line ends mid-row"
    return ""


NUMBERS = (layout.BEST_METRIC, "best_epoch", "epochs_run", "seconds")  # what export ranks and the report shows
# what each may hold: (lowest, highest, whole numbers only, said)
RANGES = {layout.BEST_METRIC: (0.0, 1.0, False, "a macro-F1 from 0 to 1"),
          "best_epoch": (0.0, float("inf"), True, "a whole number of epochs >= 0"),
          "epochs_run": (0.0, float("inf"), True, "a whole number of epochs >= 0"),
          "seconds": (0.0, float("inf"), False, "a finite number of seconds >= 0")}


def not_numbers(uri: str, trials: "pd.DataFrame") -> str:
    """Why RUN/trials.csv is damaged when a column of numbers holds something else or a number it cannot (an edit:
    'abc' was a traceback in export and 'val macro-F1: abc' in the report, round 53; a macro-F1 of inf or 1.5 was
    exported as the best trial, round 54), '' when it does not."""
    import numpy as np
    import pandas as pd

    for column in (c for c in NUMBERS if c in trials.columns):
        values = pd.to_numeric(trials[column], errors="coerce")
        low, high, whole, said = RANGES[column]
        finite = np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        bad = trials[column].notna() & (~finite | (values < low) | (values > high)  # ~finite: 'abc' (NaN) too
                                        | (whole & (values.fillna(0) % 1 != 0)))
        if bad.any():
            held = trials.loc[bad, column].iloc[0]
            held = repr(held if isinstance(held, str) else str(float(held)))  # 'abc', 'inf': as text, alike
            return (f"{uri} is damaged: its column {column} holds {held} on line "
                    f"{bad.idxmax() + 2}, not {said}")
    return ""


def unreadable(uri: str, err: BaseException) -> str:
    """'RUN/trials.csv is empty', or cannot be read and why (the cause ``storage.read_table``'s error carries,
    without its advice to give another path: the table is the run's own)."""
    cause = err.__cause__ or err
    try:
        empty = not storage.read_bytes(uri).strip()
    except OSError:  # a folder of that name
        empty = False
    if str(err).startswith((f"{uri} is cut short", f"{uri} is damaged")):  # cut_short's and not_numbers' own
        return str(err)
    if isinstance(cause, UnicodeDecodeError):  # an image, Parquet or gzip file of that name (round 55)
        return f"{uri} is damaged: {BINARY}"
    return f"{uri} is empty" if empty else \
        f"{uri} cannot be read as a CSV table ({type(cause).__name__}: {pathtext.said(cause, 200)})"


def trials_deleted(workdir: str) -> str:
    """Why RUN/trials.csv is missing though the tune record names searches, with the --resume that writes it
    again ('' when it is there, or no search ran)."""
    uri = layout.path(workdir, layout.TRIALS)
    return "" if storage.exists(uri) else rewrite_advice(workdir, f"{uri} does not exist")


def trials_lost(workdir: str, trials: "pd.DataFrame") -> str:
    """Why RUN/trials.csv lacks the trials of searches that trained on this run's catalog and clean runs (a
    table cut short, or rewritten by one search's --resume after it was damaged: export then took another
    search's worse trial, unsaid; round 38), with the --resume of each; '' when none is missing."""
    missing = [name for name in trained_searches(workdir) if name not in set(trial_searches(trials))]
    if not missing:
        return ""
    return rewrite_advice(workdir, f"{layout.path(workdir, layout.TRIALS)} lists no trial of "
                                   f"{'search' if len(missing) == 1 else 'searches'} {', '.join(missing)}",
                          only=missing)


def trial_searches(trials: "pd.DataFrame") -> list[str]:
    """The search of each row (older tables: from its trial path)."""
    if "search" in trials:
        return [str(s) for s in trials["search"]]
    return [search_name(p) for p in trials["trial_path"]] if "trial_path" in trials else []


def _searches(workdir: str, current: bool) -> dict[str, dict]:
    """The tune record's searches built from the catalog and clean runs the folder holds now (``current``), or
    from older ones (their trials were dropped from trials.csv, rightly)."""
    from .. import stages

    searches = (stages.load(workdir, "tune") or {}).get("searches") or {}
    now = stages.upstream_ids(workdir, "tune")
    return {n: s for n, s in searches.items() if ((s.get("built_from") or now) == now) == current}


def older_searches(workdir: str) -> list[str]:
    """The names of the searches of an older catalog or clean run, sorted."""
    return sorted(_searches(workdir, current=False))


def trained_searches(workdir: str) -> dict[str, dict]:
    """The searches that trained a trial on the catalog and clean runs the folder holds now, oldest first."""
    found = {n: s for n, s in _searches(workdir, current=True).items() if ((s.get("summary") or {}).get("ok") or 0) > 0}
    return dict(sorted(found.items(), key=lambda kv: str(kv[1].get("finished_at") or "")))


def rewrite_advice(workdir: str, said: str, only: list[str] | None = None) -> str:
    """``said`` (what is wrong with RUN/trials.csv), that searches ran here and the --resume of each search
    whose trials belong there (``only`` those) that writes them again; '' when the tune record names no
    search."""
    from .. import stages
    from ..reproduce import command

    searches = (stages.load(workdir, "tune") or {}).get("searches") or {}
    if not searches:
        return ""
    said = f"{said}, though searches ran here ({', '.join(sorted(searches))})"
    current = trained_searches(workdir)
    # --resume of a search whose every trial failed, or none reported, is refused; each command with the flags
    # its search ran with (a bare --resume was refused for the settings it left out)
    trained = {n: s for n, s in current.items() if only is None or n in only}
    if not trained:
        return f"{said}, none of which trained a trial on this run: start a new search (another --name)"
    again = [f"`{command('tune', {'config': {**s['config'], 'name': n}}, workdir)} --resume`"
             for n, s in trained.items()]
    return f"{said}; {', then '.join(again)} {'writes' if len(again) == 1 else 'write'} " \
           f"{'them' if only else 'it'} again (each search's --resume adds its trials)"


def moved_here(trials: "pd.DataFrame", workdir: str) -> "pd.DataFrame":
    """Trials recorded under another run folder's ``tune/`` (RUN/tune/NAME/TRIAL: this folder moved or copied
    since) with their paths under this one's, where they are there or the other is a run folder (a copy's deleted
    search is missing here). The paths are absolute: a moved folder's
    export failed ('has no config.json; was it written by speciesfam?'), a copy's exported the original's
    checkpoints (hostile tester). Searches kept elsewhere (``--storage-path``) keep their paths."""
    if storage.is_remote(workdir) or not len(trials) or "trial_path" not in trials:
        return trials
    here = os.path.realpath(storage.filesystem(workdir)[1])
    trials = trials.copy()
    for i, path in trials["trial_path"].items():
        if not isinstance(path, str) or storage.is_remote(path):
            continue
        run = os.path.dirname(os.path.dirname(os.path.dirname(path.rstrip("/"))))
        # a copy whose search folder was deleted: its trials are missing here, not the original's (they were
        # exported from the other run, unsaid: round 65); another run folder is one with stages/
        if os.path.basename(os.path.dirname(os.path.dirname(path.rstrip("/")))) != "tune" or \
                os.path.realpath(run) == here or not (os.path.isdir(here + path[len(run):]) or
                                                      os.path.isdir(os.path.join(run, "stages"))):
            continue
        trials.at[i, "trial_path"] = here + path[len(run):]
        ckpt = trials.at[i, "best_checkpoint"] if "best_checkpoint" in trials else None
        if isinstance(ckpt, str) and ckpt.startswith(run + "/"):
            trials.at[i, "best_checkpoint"] = here + ckpt[len(run):]
    return trials
