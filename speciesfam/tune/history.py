"""Each trial's per-epoch results across resumes. Tune writes a trial's ``result.json`` in a staging folder and
copies it over the one in the search's storage; on ``--resume`` it restores the stored file first only for a
trial holding a Tune checkpoint, so a resumed CNN trial's file restarted with its first result since the resume
(an interrupt soon after left it empty: the trial read as never trained, its checkpoints orphaned; hostile
tester round 33). Before a resume, every trial's lines so far are kept beside it in ``HISTORY``; a trial's
history is those lines, then the ones of ``result.json`` not among them."""

from __future__ import annotations

import json
from typing import Any

from .. import storage

HISTORY = "speciesfam_history.jsonl"  # in each trial's folder, beside Tune's result.json
RESULTS = "result.json"


def _lines(uri: str) -> list[str]:
    return [line for line in storage.read_bytes(uri).decode().splitlines() if line.strip()] \
        if storage.exists(uri) else []


def merged_lines(trial_path: str) -> list[str]:
    """The trial's result lines: those kept before its resumes, then the current result.json's not among them."""
    kept = _lines(storage.join(trial_path, HISTORY))
    seen = set(kept)
    return kept + [line for line in _lines(storage.join(trial_path, RESULTS)) if line not in seen]


def keep_before_resume(experiment: str) -> None:
    """Before ``--resume``: each trial's lines so far into its ``HISTORY`` (what the resume may overwrite)."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(experiment)
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type != pafs.FileType.Directory:
            continue
        trial = storage.join(experiment, info.base_name)
        if not storage.exists(storage.join(trial, RESULTS)):
            continue
        lines = merged_lines(trial)
        if lines:
            storage.write_text(storage.join(trial, HISTORY), "\n".join(lines) + "\n")


def history(trial_path: str) -> "Any | None":
    """The trial's results as a DataFrame (None when no line was kept before a resume: Tune's own is whole)."""
    import pandas as pd

    if not storage.exists(storage.join(trial_path, HISTORY)):
        return None
    return pd.DataFrame([json.loads(line) for line in merged_lines(trial_path)])


def best_kept(trial_path: object, metric: str) -> float | None:
    """A resumed trial's best ``metric`` over all its results, kept ones included (None when none were kept, or
    the kept file cannot be read: its console line then says what this run saw)."""
    try:
        hist = history(trial_path) if isinstance(trial_path, str) else None
    except (OSError, ValueError):
        return None
    if hist is None or metric not in hist or not hist[metric].notna().any():
        return None
    return float(hist[metric].max())
