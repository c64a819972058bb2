"""Each trial's per-epoch results across resumes. Tune writes a trial's ``result.json`` in a staging folder and
copies it over the one in the search's storage; on ``--resume`` it restores the stored file first only for a
trial holding a Tune checkpoint, so a resumed CNN trial's file restarted with its first result since the resume
(an interrupt soon after left it empty: the trial read as never trained, its checkpoints orphaned; hostile
tester round 33). Before a resume, every trial's lines so far are kept beside it in ``HISTORY``; a trial's
history is those lines, then the ones of ``result.json`` not among them."""

from __future__ import annotations

import json
import os
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


def rehome_search_state(experiment: str) -> None:
    """Before ``--resume``: Tune gives every trial it creates after a resume the storage its search algorithm's
    saved state holds (``search_gen_state-*.json``: Optuna and the other searchers; ``basic-variant-state-*.json``:
    random, grid), and rewrites only the restored trials' storage to the folder restored from. In a run folder
    copied or moved since, the new trials then wrote their results (and probe trials their checkpoints) into the
    old folder, and trials.csv read them as never trained (Ray 2.60). Each saved state is taken to ``experiment``."""
    import pyarrow.fs as pafs
    from ray import cloudpickle

    fs, path = storage.filesystem(experiment)
    path = path.rstrip("/")
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))]
    for prefix in ("search_gen_state-", "basic-variant-state-"):
        saved = sorted(n for n in names if n.startswith(prefix) and n.endswith(".json"))
        if not saved:
            continue
        uri = storage.join(experiment, saved[-1])  # the one Tune restores: the last by name
        state = cloudpickle.loads(storage.read_bytes(uri))
        moved = [c for c in _storage_contexts(state, set()) if c.experiment_fs_path.rstrip("/") != path]
        for ctx in moved:
            ctx.storage_filesystem, ctx.storage_fs_path = fs, os.path.dirname(path)
            ctx.experiment_dir_name = os.path.basename(path)
        if moved:
            storage.write_bytes(uri, cloudpickle.dumps(state))


def _storage_contexts(obj: Any, seen: set[int]) -> list:
    """The Ray ``StorageContext`` objects within a search algorithm's saved state (through dicts, lists and Ray's
    own objects: a searcher's library objects, an Optuna study, are not walked)."""
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if type(obj).__name__ == "StorageContext" and hasattr(obj, "experiment_fs_path"):
        return [obj]
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif type(obj).__module__.startswith("ray.") and hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return []
    return [ctx for item in items for ctx in _storage_contexts(item, seen)]
