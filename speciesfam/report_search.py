"""report.html's search section: every trial of every search on the run (its settings, score, how it ended),
the best by the one ranking export uses, each trial's per-epoch history (Tune's result.json) on a timeline, and
the searches an interrupt stopped with the command that continues them.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from typing import TYPE_CHECKING, Any

from . import layout, plots, stages, storage
from .errors import SourceError, StageOrderError
from .lines import SEARCH_END, final_flag, how_ended, scheduler_name, search_cut_by
from .tune.history import merged_lines
from .tune.tracking import scored_trials
from .tune.trials_file import read_trials, search_name, trials_deleted, trials_lost

if TYPE_CHECKING:
    import pandas as pd


IDLE_GAP_S = 60.0  # no trial running for longer than this: the time between two commands, not the search's


def trial_histories(trials) -> tuple[dict[str, Any], list[float]]:
    """trial id -> its per-epoch results from Tune's ``result.json`` (a JSON line per result), or its
    ``progress.csv`` where that is missing, and where the timeline leaves out idle time. Not the CSV first: Tune
    appends a resumed trial's rows under the columns of its first result since the resume, so when that result
    wrote no checkpoint (a probe trial checkpoints only on a new best) the rows no longer match the file's header.

    ``seconds`` counts search time: from the first trial's start, less every stretch over ``IDLE_GAP_S`` in which
    no trial ran (between two searches on the run, before a --resume); the second value is where those cuts are
    on that axis (a plot spanned ~570 s for 57 s of search: round 47)."""
    import pandas as pd

    raw = {}
    for t in trials.itertuples():
        if not isinstance(t.trial_path, str):
            continue
        lines, table = storage.join(t.trial_path, "result.json"), storage.join(t.trial_path, "progress.csv")
        if storage.exists(lines):  # with the lines kept before a resume (tune.history)
            raw[str(t.trial_id)] = pd.DataFrame([json.loads(line) for line in merged_lines(t.trial_path)])
        elif storage.exists(table):
            raw[str(t.trial_id)] = pd.read_csv(io.BytesIO(storage.read_bytes(table)))
    busy = sorted(span for h in raw.values() if len(h) and "timestamp" in h for span in _running(h))
    idle: list[tuple[float, float]] = []  # (when it ended, how long it was), in time order
    end = busy[0][1] if busy else 0.0
    for start, stop in busy[1:]:
        if start - end > IDLE_GAP_S:
            idle.append((start, start - end))
        end = max(end, stop)
    t0 = busy[0][0] if busy else 0.0
    for h in raw.values():
        if "timestamp" in h:
            h["seconds"] = [t - t0 - sum(gap for until, gap in idle if until <= t) for t in h["timestamp"]]
    return raw, [until - t0 - sum(gap for u, gap in idle if u <= until) for until, _ in idle]


def _running(h) -> list[tuple[float, float]]:
    """When a trial was running: each result's interval (Tune's ``time_this_iter_s`` before its ``timestamp``;
    the time since the trial's previous result, or its start, where a result lacks it)."""
    stamps = [float(x) for x in h["timestamp"]]
    took = [float(x) for x in h["time_this_iter_s"]] if "time_this_iter_s" in h else [float("nan")] * len(stamps)
    first = stamps[0] - float(h["time_total_s"].iloc[0]) if "time_total_s" in h else stamps[0]
    spans = []
    for i, (stamp, t) in enumerate(zip(stamps, took)):
        start = stamp - t if t == t else (stamps[i - 1] if i else first)
        if start == start and stamp == stamp:  # NaN in a damaged result: no interval
            spans.append((start, stamp))
    return spans


def running_now(workdir: str) -> str:
    """'search 'x' (pid N) runs on this run folder now: ...' while searches started on this machine run there
    (the page showed an older search as the state of things, unsaid: round 53), else ''."""
    from .lines import some
    from .locks import running_searches

    running = [] if storage.is_remote(workdir) else running_searches(workdir)
    one = len(running) == 1
    return (f"{'Search' if one else 'Searches'} {some(running)} {'runs' if one else 'run'} on this run folder now: "
            f"{'its' if one else 'their'} trials are not in this report yet (it is written again as "
            f"{'it ends' if one else 'each ends'})") if running else ""


def checked_trials(workdir: str) -> tuple["pd.DataFrame | None", str]:
    """RUN/trials.csv (None when it cannot be read) and what is wrong with it, as export says it (deleted, emptied,
    damaged or cut short though searches ran, with the --resume that writes it again; '' when nothing is)."""
    try:
        if not storage.exists(layout.path(workdir, layout.TRIALS)):  # deleted after searches ran: not 'Not run yet'
            return None, trials_deleted(workdir)  # (a damaged tune record: said, round 60)
        trials = read_trials(workdir, stage_hint=stages.command("tune", workdir))
    except (StageOrderError, SourceError) as err:  # SourceError: no search recorded, said without a --resume
        return None, str(err)
    try:
        return trials, trials_lost(workdir, trials)  # cut short, though searches trained: not '0 trials'
    except StageOrderError:  # a damaged catalog or clean record: said by its own section, not as the trials'
        return trials, ""  # (it was the search section's error, and `speciesfam report` exited 2: round 61)


def trials_damage(workdir: str) -> str:
    """What is wrong with RUN/trials.csv (``checked_trials``), '' when nothing is."""
    return checked_trials(workdir)[1]


def search(workdir: str, records: dict) -> dict | None:
    running = running_now(workdir)
    trials, damage = checked_trials(workdir)
    if damage or trials is None:
        why = damage or running and running + "."
        return {"missing": True, "why": why} if why else None
    missing = [c for c in ("trial_id", "status", layout.BEST_METRIC, "trial_path") if c not in trials.columns]
    if missing:
        raise ValueError(f"{layout.TRIALS} lacks column(s) {missing}; was it written by `speciesfam tune`?")
    record = records.get("tune") or {}
    cfg = record.get("config", {})
    searches = dict(record.get("searches") or {})
    latest = (record.get("summary") or {}).get("experiment")
    if latest:  # records written before each search kept its own summary: the record's is the latest's
        searches[latest] = {"config": cfg, **searches.get(latest, {}), "summary": record.get("summary") or {}}
    histories, cuts = trial_histories(trials)
    search_of = {str(t.trial_id): (search_name(t.trial_path) or None) for t in trials.itertuples()}

    def epochs(h):  # a trial's epochs (Tune's iteration count restarts on a resume; older results lack epoch)
        return h["epoch"] if "epoch" in h and h["epoch"].notna().all() else h["training_iteration"]

    longest: dict[str | None, int] = {}  # each search's most epochs a trial ran
    for tid, h in histories.items():
        if "training_iteration" in h and len(h):
            name = search_of.get(tid)
            longest[name] = max(longest.get(name, 0), int(epochs(h).max()))

    def settings_of(tid: str) -> dict:  # the settings of the search the trial ran in; the latest's if unknown
        return (searches.get(search_of.get(tid)) or {}).get("config") or cfg

    def ended_as(tid: str, h) -> str:
        conf, summary = settings_of(tid), (searches.get(search_of.get(tid)) or {}).get("summary") or {}
        known = conf.get("max_epochs")  # unknown: the longest trial's epochs tell a scheduler's stop at max_t apart
        observed = longest.get(search_of.get(tid)) or None
        final = final_flag(h["final_epoch"].iloc[-1]) if "final_epoch" in h else None  # older runs lack it
        cut_by = "the interrupt" if summary.get("interrupted") else search_cut_by(conf.get("time_budget_s"))
        text = how_ended(str(h["done"].iloc[-1]) == "True", epochs(h).iloc[-1], known or observed,
                         scheduler_name(conf.get("scheduler", "asha")), final, cut_by)
        return "finished" if known is None and final is None and text == "early stopping" else text

    scheduler = scheduler_name(cfg.get("scheduler", "asha"))
    ended = {tid: ended_as(tid, h) for tid, h in histories.items()
             if len(h) and "done" in h and "training_iteration" in h}
    rows, hp_keys = [], []
    for t in trials.to_dict("records"):
        conf = json.loads(t["config"]) if isinstance(t.get("config"), str) else {}
        model = t.get("model") if isinstance(t.get("model"), str) else conf.get("model", "")
        hp = {k: v for k, v in conf.items() if k != "model"}
        hp_keys += [k for k in hp if k not in hp_keys]
        rows.append({"trial_id": t["trial_id"], "search": search_of.get(str(t["trial_id"])) or "", "model": model,
                     "status": t["status"],
                     "ended": "error" if t["status"] == "error" else "not trained" if t["status"] == "not_trained"
                     else ended.get(str(t["trial_id"]), "finished"),
                     "f1": t.get(layout.BEST_METRIC), "best_epoch": t.get("best_epoch"), "epochs": t.get("epochs_run"),
                     "seconds": t.get("seconds"), "hp": hp, "error": t.get("error") if t["status"] == "error" else ""})
    # stopped by a scheduler (a failed trial: "error"); not those an interrupt, time budget or the search's end cut
    stopped = {str(r["trial_id"]) for r in rows if r["ended"].startswith("stopped by ")
               and not r["ended"].startswith(("stopped by the interrupt", f"stopped by {SEARCH_END}",
                                              "stopped by the time budget"))}
    # the best of the trials that finished (the one ranking, as export's): a failed trial's last score is no result
    scored = scored_trials(trials)
    best = next(r for r in rows if str(r["trial_id"]) == str(scored["trial_id"].iloc[0])) if len(scored) else None
    if best is not None:  # the settings of the search the best trial ran in (the record's own is the latest)
        cfg = settings_of(str(best["trial_id"]))
        scheduler = scheduler_name(cfg.get("scheduler", "asha"))
    png = plots.search_timeline(histories, stopped, cuts=cuts) if histories else None  # RUN/search_progress.png
    # a search none of whose trials scored: why each ended, as trials.csv says (the page read '2 trials; 0 stopped
    # early'; a search that trained nothing beside one that did showed only its 'not trained' rows)
    scored_in = {search_of.get(str(t)) for t in scored["trial_id"]}
    why_none: dict[str, Counter] = {}
    for t in trials.to_dict("records"):
        name = search_of.get(str(t["trial_id"])) or ""
        if name not in scored_in:
            error = t.get("error") if isinstance(t.get("error"), str) and t.get("error") else ""
            status = str(t["status"]).replace("_", " ")
            why_none.setdefault(name, Counter())[f"{status}: {error}" if error else status] += 1
    return {"trials": rows, "hp_keys": hp_keys, "best": best, "best_f1": best["f1"] if best else None,
            "running": running,
            "why_none": [{"search": name, "why": "; ".join(f"{n} {why}" for why, n in ends.most_common())}
                         for name, ends in sorted(why_none.items())],
            "plot": plots.data_uri(png) if png else None, "png": png, "stopped": len(stopped), "scheduler": scheduler, "wall_s": searching_s(trials, histories),
            # each scheduler's stops, as each trial's own search ran (a FIFO best trial labelled ASHA's cuts FIFO's)
            "stopped_by": sorted(Counter(r["ended"][len("stopped by "):] for r in rows
                                         if str(r["trial_id"]) in stopped).items()),
            "unfinished": unfinished(searches, set(search_of.values()), workdir),
            "settings": {k: cfg[k] for k in ("kind", "searcher", "scheduler", "num_samples", "max_epochs",
                                             "grace_period", "workers_per_trial") if k in cfg
                         and not (k == "workers_per_trial" and cfg.get("kind") == "probe")  # probes have none
                         and not (k == "grace_period" and cfg.get("scheduler") == "fifo")}}  # FIFO ignores it


def unfinished(searches: dict, shown: set, workdir: str) -> list[dict]:
    """The searches of the shown trials that an interrupt stopped: name, trials run of those planned, and the
    command that continues it (with --resume), or says to start it again (no trial reported)."""
    from .reproduce import command

    out = []
    for name, entry in sorted(searches.items()):
        summary = entry.get("summary") or {}
        if name not in shown or not summary.get("interrupted"):
            continue
        again = command("tune", {"config": entry.get("config") or {}},
                        workdir if storage.is_remote(workdir) else os.path.abspath(workdir))
        out.append({"name": name, "trials": summary.get("trials"), "planned": summary.get("planned"),
                    "command": f"{again} --resume" if summary.get("resumable") else again,
                    "resumable": bool(summary.get("resumable"))})
    return out


def searching_s(trials, histories: dict[str, Any]) -> float | None:
    """Seconds the searches ran: each search's first trial start to its last result, summed over the searches
    (the time between two commands on the run is no search's)."""
    spans: dict[str, list[float]] = {}
    for t in trials.itertuples():
        h = histories.get(str(t.trial_id))
        if h is None or not len(h) or "seconds" not in h:
            continue
        name = os.path.dirname(str(t.trial_path).rstrip("/"))
        start = float(h["seconds"].iloc[0] - h["time_total_s"].iloc[0]) if "time_total_s" in h else 0.0
        span = spans.setdefault(name, [start, float(h["seconds"].max())])
        span[0], span[1] = min(span[0], start), max(span[1], float(h["seconds"].max()))
    return sum(end - start for start, end in spans.values()) if spans else None
