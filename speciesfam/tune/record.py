"""A search's record on storage: what it is (its val split and settings) and whether it may be resumed or its
name reused. Read by the driver (``search.run_search``) and by warm starts (``warmstart``).

Tune restores a search's searcher, scheduler, space and trial count from its own state and silently ignores new
arguments; this record is how the tool notices a resume that would mix or ignore them.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from .. import storage
from ..config import TuneConfig
from ..errors import ConfigError
from .tracking import same_val_split


SPLIT_RECORD = "speciesfam_split.json"  # in the experiment's folder: the val split its trials are scored on
# What a search is, fixed when it starts: Tune restores its searcher, scheduler, space and trial count from its
# own state, and trials read the rest, so a resumed search that took other values would mix or ignore them.
SEARCH_SETTINGS = ("kind", "space", "searcher", "scheduler", "num_samples", "max_epochs", "grace_period",
                   "reduction_factor", "max_concurrent", "time_budget_s", "seed", "smoke_test", "extra", "image_size",
                   "weights", "precision", "init_from", "image_cache", "wandb", "max_failures")
# Tune restores its callbacks (W&B) and failure settings too: a resume with another --wandb logged nothing new
# What a trial is given: a resume that leaves them out takes them from the record (a bare --resume of a search
# started with --cpus-per-worker 0.5 was refused as not fitting the cluster: round 52); one that gives others
# may (another cluster), said: the trials it restores keep theirs
RESOURCE_SETTINGS = ("workers_per_trial", "cpus_per_worker", "gpus_per_worker", "cpus_per_trial", "wandb_project")


def read_record(experiment: str) -> dict[str, Any] | None:
    """The record of the search in folder ``experiment`` (``{"val_split": ..., "settings": {...}}``), or None
    for a search that never recorded one (started before the record existed, or never started)."""
    uri = storage.join(experiment, SPLIT_RECORD)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def as_started(storage_path: str, name: str, cfg: TuneConfig) -> TuneConfig:
    """``cfg`` of a resume with what it may leave out taken from the search's record: its ``--init-from`` (the
    tune record and the report's reproduce command lost it, and listed the search before its source)."""
    import dataclasses

    if not cfg.resume or cfg.init_from is not None:
        return cfg
    started = ((read_record(storage.join(storage_path, name)) or {}).get("settings") or {}).get("init_from")
    return dataclasses.replace(cfg, init_from=started)


def check_resumable(storage_path: str, name: str) -> None:
    """Refuse ``--resume`` of a search that was never started here (it would start a new one silently),
    naming the searches that can be resumed."""
    from ray import tune

    if tune.Tuner.can_restore(storage.join(storage_path, name)):
        return
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(storage_path)
    found = [i.base_name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
             if i.type == pafs.FileType.Directory and tune.Tuner.can_restore(storage.join(storage_path, i.base_name))
             and reported(storage.join(storage_path, i.base_name))]  # one stopped before any result: refused too
    raise ConfigError(f"--resume: there is no search named {name!r} in {storage_path} to continue ("
                      f"{'searches there: ' + ', '.join(sorted(found)) if found else 'none was started there'}); "
                      "give --name of one of them, or leave out --resume to start a new search")


def reported(experiment: str) -> bool:
    """Whether a trial of the search in folder ``experiment`` reported a result (a non-empty Tune result.json, or
    results kept before a resume: tune.history)."""
    from .history import HISTORY

    return any(_trial_files(experiment, "result.json")) or any(_trial_files(experiment, HISTORY))


def failed(experiment: str) -> int:
    """How many trials of the search in folder ``experiment`` failed (Tune's error.txt in their folder)."""
    return sum(_trial_files(experiment, "error.txt"))


def _trial_files(experiment: str, name: str) -> list[bool]:
    """For each trial folder of ``experiment``: whether it holds a non-empty file ``name``."""
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(experiment)
    found = []
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type == pafs.FileType.Directory:
            file = fs.get_file_info(f"{info.path}/{name}")
            found.append(file.type == pafs.FileType.File and bool(file.size))
    return found


def _settings(cfg: TuneConfig | None, names: tuple[str, ...] = SEARCH_SETTINGS) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in names} if cfg is not None else {}


def check_record(storage_path: str, name: str, val_split: str, resume: bool, cfg: TuneConfig | None = None,
                 older_split: str = "") -> None:
    """Before any work (Ray, the image cache): may this search start, or be resumed, under ``name``? A resumed
    search must find the val split and the settings (``SEARCH_SETTINGS``) it started with.

    Raises:
        ConfigError: ``resume`` of a search never started there, or started on another catalog/clean run (its
            finished trials were trained and scored on splits that no longer exist), or with other settings; a
            new search under the name of one that already ran on this split (its trials would leave
            RUN/trials.csv). Searches recorded before these checks resume.
    """
    experiment = storage.join(storage_path, name)
    was = read_record(experiment)
    if not resume:
        from ray import tune

        if (was is not None and same_val_split(was.get("val_split"), val_split, older_split)
                and tune.Tuner.can_restore(experiment)
                and reported(experiment)):  # stopped or failed before any trial reported: the name is free
            how = "" if _budget_spent(was) else "--resume to continue it, or "
            raise ConfigError(f"--name {shlex.quote(name)}: a search of that name already ran on this run folder's catalog and "
                              f"clean ({experiment}); its trials would leave trials.csv. Give "
                              f"{how}another --name to keep both")
        return
    check_resumable(storage_path, name)
    if not reported(experiment):  # Tune's restore of such a search fails ("no search space has been defined")
        errors = failed(experiment)
        why = (f"every trial of that search failed before reporting a result ({errors}: see their errors in "
               "trials.csv)" if errors else "that search stopped before any trial reported a result")
        raise ConfigError(f"--resume --name {shlex.quote(name)}: {why}, so there is nothing to continue; start it again without "
                          "--resume (its name is free; its failed trials' rows in trials.csv are replaced)")
    if was is None:  # recorded before this check
        return
    budget = _budget_spent(was)
    if budget:
        raise ConfigError(f"--resume --name {shlex.quote(name)}: its time budget ({budget:g} s) ended that search, and a resumed "
                          "search has only what is left of it (Tune's time budget spans the whole search), so "
                          "nothing would train. Start a new search with another --name (--init-from "
                          f"{name} starts it from this one's best settings)")
    if was.get("val_split") != val_split and same_val_split(was.get("val_split"), val_split, older_split):
        # recorded by an older version: in the current form, so it stays the same split after this clean's run id
        storage.write_text(storage.join(experiment, SPLIT_RECORD), json.dumps({**was, "val_split": val_split}))
    elif not same_val_split(was.get("val_split"), val_split, older_split):
        raise ConfigError(f"--resume --name {shlex.quote(name)}: that search's trials were scored on another split "
                          f"({was.get('val_split')}); the run folder's is now {val_split} (catalog or clean ran again "
                          "since). Start a new search: leave out --resume, or give another --name")
    changed = _changed(was.get("settings") or {}, cfg) if cfg is not None else []
    if changed:
        raise ConfigError(f"--resume --name {shlex.quote(name)}: a resumed search continues with the settings it started with, "
                          f"and these differ; resume it with {'; '.join(changed)}, or start a new search with "
                          "another --name")


def _changed(before: dict[str, Any], cfg: TuneConfig) -> list[str]:
    """The recorded settings ``cfg`` changes, each as the flag that resumes it and the value now ('--smoke-test
    (now no --smoke-test)', '--num-samples 2 (now 8)'), --smoke-test first (it sets the others). Not a change: a
    flag this search does not read, the default grace period given by its value, a resume without --init-from
    (no warm start is drawn again)."""
    import dataclasses

    from ..flags import config_fields, flag_of

    now = json.loads(json.dumps(_settings(cfg), default=str))  # compared as stored: JSON
    unread = cfg.unused(set(before))
    fields = {f.name: f for f in config_fields(TuneConfig)}
    out = []
    for k in sorted(before, key=lambda k: k != "smoke_test"):
        if k not in now or k in unread or before[k] == now[k] or (k == "init_from" and now[k] is None):
            continue
        if k == "grace_period" and dataclasses.replace(cfg, grace_period=before[k]).grace == cfg.grace:
            continue
        if k == "kind":
            out.append(f"`tune {before[k]}` (now {now[k]})")
        elif isinstance(before[k], bool):  # '--no-image-cache', or 'no --smoke-test' for an on/off flag
            said = [flag_of(fields[k], v) if v or fields[k].default else f"no {flag_of(fields[k])}"
                    for v in (before[k], now[k])]
            out.append(f"{said[0]} (now {said[1]})")
        else:  # the value now may be a default the user never typed: shown as a value, not as a flag
            out.append(f"{flag_of(fields[k])} {_shown(before[k])} (now {_shown(now[k])})")
    return out


def _shown(value: Any) -> str:
    """A setting as typed on the command line: none, a JSON object, a bare word."""
    if isinstance(value, float):
        return f"{value:g}"  # 100, as typed (100.0)
    return "none" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


def ran_on_this_split(workdir: str, config: dict[str, Any]) -> bool:
    """Whether the search of recorded ``config`` (its ``name``) has trials on the run folder's split now: started
    again under its name it is refused, so the command that brings it up to date resumes it (export named the
    command without --resume after a clean run again as it was: round 75)."""
    from ..errors import SpeciesfamError
    from .tracking import older_split_id, val_split_id

    experiment = storage.join(config.get("storage_path") or storage.join(workdir, "tune"), str(config.get("name")))
    try:
        was, split = read_record(experiment), val_split_id(workdir)
    except (SpeciesfamError, OSError, ValueError, KeyError):  # no split now, a damaged record: a plain command
        return False
    return bool(was) and same_val_split(was.get("val_split"), split, older_split_id(workdir, split)) \
        and reported(experiment) and not _budget_spent(was)


def _budget_spent(record: dict[str, Any]) -> float | None:
    """The time budget of a recorded search whose runs have used it up (None: no budget, or time left)."""
    budget = (record.get("settings") or {}).get("time_budget_s")
    return budget if budget and record.get("seconds", 0) >= budget else None


def used_seconds(storage_path: str, name: str) -> float:
    """The wall time of the search's earlier runs (a resumed search's time budget is what they left of it)."""
    return float((read_record(storage.join(storage_path, name)) or {}).get("seconds", 0))


def add_seconds(storage_path: str, name: str, seconds: float) -> None:
    """Add a run of the search's wall time to its record."""
    experiment = storage.join(storage_path, name)
    record = read_record(experiment) or {}
    record["seconds"] = float(record.get("seconds", 0)) + seconds
    storage.write_text(storage.join(experiment, SPLIT_RECORD), json.dumps(record, default=str))


def write_record(storage_path: str, name: str, val_split: str, cfg: TuneConfig | None = None) -> None:
    """Record a new search's val split and settings in its experiment folder (once nothing refused it)."""
    storage.write_text(storage.join(storage_path, name, SPLIT_RECORD),
                       json.dumps({"val_split": val_split, "settings": _settings(cfg),
                                   "resources": _settings(cfg, RESOURCE_SETTINGS)}, default=str))
