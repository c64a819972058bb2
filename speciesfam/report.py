"""``RUN/report.html``: one self-contained page about a run, rebuilt by every stage and by ``speciesfam report``.

It reads the run folder's data (stage records ``RUN/stages/*.json``, the Parquet/CSV tables, Tune's
``progress.csv`` per trial, the bundle's JSON files and an evaluation's CSVs), never another stage's
Markdown, and renders whatever exists: a section whose files are missing says which command makes them,
and a section that fails to render shows its error instead of breaking the page. Images are inlined as
data URIs, so the page opens offline from anywhere (mail it, copy it off the cluster).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shlex
import time
import traceback
from importlib import resources
from typing import Any, Callable

from . import layout, plots, stages, storage
from .lines import SEARCH_END, final_flag, how_ended, number, scheduler_name, search_cut_by
from .reproduce import reproduce
from .tune.tracking import scored_trials

logger = logging.getLogger(__name__)

THUMB_PX = 96  # gallery thumbnails: small enough that a few hundred keep the page light
MAX_GALLERY = 48  # images per gallery; the CSV beside the report has every row
MAX_ROWS = 200  # rows of a plain table (skipped files, ...)
MAX_CONFUSED = 10  # families in the confusion matrix: the most-confused ones
SECTION_OF = {"catalog": "collection", "clean": "cleaning", "tune": "search", "export": "model"}  # stage -> section


def write_report(workdir: str) -> str | None:
    """Render ``RUN/report.html`` from whatever the run folder holds; returns its path.

    Never raises (a report must not fail the stage that refreshes it): a section that cannot render shows
    its error in the page; if the page itself cannot be written, the reason is logged and None returned.
    """
    try:
        uri = layout.path(workdir, layout.REPORT)
        storage.write_text(uri, render(workdir))
        return uri if storage.is_remote(uri) else storage.filesystem(uri)[1]
    except Exception:  # noqa: BLE001 -- see the docstring
        logger.warning("could not write the report of %s:\n%s", workdir, traceback.format_exc())
        return None


def render(workdir: str) -> str:
    """The report's HTML for ``workdir`` (sections that fail carry their error)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = number
    env.filters["sh"] = shlex.quote  # a path in a command the page shows
    template = env.from_string((resources.files("speciesfam") / "templates" / "report.html.j2").read_text("utf-8"))
    loaded = {s: _safe(lambda s=s: stages.load(workdir, s)) for s in SECTION_OF}
    records = {s: r for s, r in loaded.items() if isinstance(r, dict)}
    sections = {name: _section(fn, workdir, records) for name, fn in (
        ("collection", collection), ("cleaning", cleaning), ("search", search), ("model", best_model),
        ("reproduce", reproduce))}
    for stage, err in loaded.items():  # a damaged record is said, never shown as "not run yet"
        if isinstance(err, Exception):
            logger.warning("report: %s", err)
            sections[SECTION_OF[stage]] = {"error": str(err)}
    for stage, name in SECTION_OF.items():
        if not stages.UPSTREAM[stage] or any(isinstance(loaded[up], Exception) for up in stages.UPSTREAM[stage]):
            continue  # nothing upstream, or an upstream record damaged (said above): freshness unknown
        stale = _safe(lambda stage=stage: stages.check_fresh(workdir, stage))  # an error: built from an older run
        if isinstance(stale, stages.StageOrderError) and stage in records and not sections[name].get("missing"):
            sections[name]["stale"] = str(stale)  # shown, marked: never mixed silently with the newer stages
            sections[name].pop("unfinished", None)  # tune refuses to resume a search of an older run: not offered
    return template.render(workdir=workdir, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), s=sections,
                           headline=headline(sections))


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 -- a damaged record renders as missing
        return err


def _section(fn: Callable, workdir: str, records: dict) -> dict[str, Any]:
    try:
        return fn(workdir, records) or {"missing": True}
    except Exception as err:  # noqa: BLE001 -- one broken section must not hide the others
        # one line on the console (a damaged file is not the tool's bug); the traceback in the stage's log
        logger.warning("report: the %s section could not be rendered (%s: %s); the page says so", fn.__name__,
                       type(err).__name__, err)
        logger.info("report section %s failed:\n%s", fn.__name__, traceback.format_exc())
        return {"error": f"{type(err).__name__}: {err}"}


def data_uri(png_or_jpeg: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png_or_jpeg).decode('ascii')}"


def thumbnail(path: str, px: int = THUMB_PX) -> str | None:
    """A JPEG data URI of image ``path`` at most ``px`` square, through the one decode path; None if unreadable."""
    from PIL import Image

    from .data.images import DecodeError, decode_rgb

    try:
        img = Image.fromarray(decode_rgb(storage.read_bytes(path)))
    except (DecodeError, OSError, ValueError):
        return None
    img.thumbnail((px, px))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return data_uri(buf.getvalue(), "image/jpeg")


def headline(s: dict[str, dict]) -> list[tuple[str, str]]:
    """The main numbers at the top of the page."""
    out = []
    if "rows" in s["collection"]:
        out += [("images catalogued", str(s["collection"]["rows"])), ("families", str(s["collection"]["families"]))]
    if "removed" in s["cleaning"] and not s["cleaning"].get("stale"):  # a stale count is no headline
        out.append(("removed by cleaning", str(s["cleaning"]["removed"])))
    if "trials" in s["search"] and not s["search"].get("stale"):  # an older run's search: its section says so
        out += [("trials", str(len(s["search"]["trials"]))), ("best val macro-F1", number(s["search"]["best_f1"]))]
    for key, value in ({} if s["model"].get("stale") else s["model"].get("eval") or {}).get("metrics", {}).items():
        if key.endswith("macro_f1"):
            out.append((key.replace("_", " ").replace("macro f1", "macro-F1"), number(value)))
    return out


def collection(workdir: str, records: dict) -> dict | None:
    manifest = stages.table(workdir, layout.MANIFEST)
    if manifest is None:
        return None
    cleaned = stages.table(workdir, layout.CLEAN_MANIFEST)
    cleaned_stale = cleaned is not None and isinstance(_safe(lambda: stages.check_fresh(workdir, "clean")), Exception)
    if cleaned_stale:  # clean ran on an older catalog: its counts are of other rows
        cleaned = None
    before = manifest[manifest["status"] == layout.OK]["label"].value_counts()
    after = cleaned[cleaned["status"] == layout.OK]["label"].value_counts() if cleaned is not None else None
    families = [{"family": fam, "before": int(n), "after": None if after is None else int(after.get(fam, 0))}
                for fam, n in before.sort_values(ascending=False).items()]
    skipped = manifest[manifest["status"] != layout.OK]
    source = (records.get("catalog") or {}).get("config", {}).get("source")
    return {"rows": len(manifest), "families": len(before), "source": source, "cleaned_stale": cleaned_stale,
            "status": manifest["status"].value_counts().to_dict(), "table": families,
            "plot": data_uri(plots.class_counts(before, after if after is not None else before)),
            "skipped": [{"path": r.path, "family": r.label, "status": r.status, "reason": r.reason}  # null label: ""
                        for r in skipped[["path", "label", "status", "reason"]].head(MAX_ROWS).fillna("").itertuples()],
            "skipped_total": len(skipped)}


def _gallery(df, score_col: str | None, caption_cols: list[str], path_cols: list[str]) -> list[dict]:
    items = []
    if score_col in df.columns:
        df = df.sort_values(score_col, ascending=False)
    for row in df.head(MAX_GALLERY).to_dict("records"):
        images = [(str(row[c]), thumbnail(str(row[c]))) for c in path_cols if isinstance(row.get(c), str)]
        items.append({"images": images,
                      "score": row.get(score_col) if score_col else None,
                      "caption": [(c, row[c]) for c in caption_cols if c in row and row[c] == row[c]]})
    return items


def cleaning(workdir: str, records: dict) -> dict | None:
    rec = records.get("clean")
    removed = stages.table(workdir, layout.REMOVED)
    if rec is None and removed is None:
        return None
    cfg = (rec or {}).get("config", {})
    summary = (rec or {}).get("summary", {})
    settings = {k: cfg[k] for k in ("model_id", "detector", "removal", "outlier_z", "contamination", "min_per_family",
                                    "zero_shot", "zero_shot_threshold", "label_issue_filter", "drop_label_issues",
                                    "near_duplicate_threshold", "dedupe") if k in cfg}
    settings.pop("contamination" if cfg.get("removal", "threshold") != "quota" else "outlier_z", None)  # unused
    galleries = []
    if removed is not None:
        galleries.append({"title": "Taken out by cleaning", "file": layout.REMOVED, "total": len(removed),
                          "items": _gallery(removed, "score", ["family", "detector", "reason"], ["path"])})
    for name, title in ((layout.LABEL_ISSUES, "Label issues"), (layout.NEAR_DUPLICATES, "Near-duplicates")):
        df = stages.table(workdir, name)
        if df is None:
            continue  # written by newer clean stages only
        paths = [c for c in df.columns if "path" in c or c in ("duplicate_of", "nearest")]
        score = next((c for c in ("score", "similarity", "label_quality", "distance") if c in df.columns), None)
        captions = [c for c in df.columns if c not in paths and c != score]
        galleries.append({"title": title, "file": name, "total": len(df),
                          "items": _gallery(df, score, captions, paths)})
    thresholds = {k: _plain(v) for k, v in summary.items() if k not in ("status", "split_lost_cause")}
    # families left with no image in a split: the console and clean.md warn; the page says it too, in words
    from .data.clean_report import lost_lines

    lost = lost_lines(summary, str)
    return {"removed": len(removed) if removed is not None else summary.get("removed", 0), "settings": settings,
            "summary": thresholds, "galleries": galleries, "taken_out": taken_out(removed), "lost": lost}


def taken_out(removed) -> str:
    """What removed.csv holds, by kind: '6 outliers, 9 label issues, 24 near-duplicates'."""
    if removed is None or not len(removed):
        return ""
    kind = removed["detector"].map({"cleanlab": "label issues", "near_duplicate": "near-duplicates"})
    counts = kind.fillna("outliers").value_counts()
    return ", ".join(f"{counts[k]} {k}" for k in ("outliers", "label issues", "near-duplicates") if k in counts)


def _plain(value: Any) -> Any:
    """A record's nested value as the page shows it: ``key value, ...`` (``none`` when empty), not Python's repr."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_plain(v)) for v in value) or "none"
    return value


def trial_histories(trials) -> tuple[dict[str, Any], float]:
    """trial id -> its per-epoch results (``seconds`` since the search started) from Tune's ``result.json`` (a
    JSON line per result), or its ``progress.csv`` where that is missing. Not the CSV first: Tune appends a resumed
    trial's rows under the columns of its first result since the resume, so when that result wrote no checkpoint
    (a probe trial checkpoints only on a new best) the rows no longer match the file's header."""
    import pandas as pd

    raw = {}
    for t in trials.itertuples():
        if not isinstance(t.trial_path, str):
            continue
        lines, table = storage.join(t.trial_path, "result.json"), storage.join(t.trial_path, "progress.csv")
        if storage.exists(lines):
            rows = [json.loads(line) for line in storage.read_bytes(lines).decode().splitlines() if line.strip()]
            raw[str(t.trial_id)] = pd.DataFrame(rows)
        elif storage.exists(table):
            raw[str(t.trial_id)] = pd.read_csv(io.BytesIO(storage.read_bytes(table)))
    starts = [h["timestamp"].iloc[0] - h["time_total_s"].iloc[0] for h in raw.values() if len(h) and "timestamp" in h]
    t0 = min(starts) if starts else 0.0
    for h in raw.values():
        if "timestamp" in h:
            h["seconds"] = h["timestamp"] - t0
    return raw, t0


def search(workdir: str, records: dict) -> dict | None:
    trials = stages.table(workdir, layout.TRIALS)
    if trials is None:
        return None
    missing = [c for c in ("trial_id", "status", layout.BEST_METRIC, "trial_path") if c not in trials.columns]
    if missing:
        raise ValueError(f"{layout.TRIALS} lacks column(s) {missing}; was it written by `speciesfam tune`?")
    record = records.get("tune") or {}
    cfg = record.get("config", {})
    searches = dict(record.get("searches") or {})
    latest = (record.get("summary") or {}).get("experiment")
    if latest:  # records written before each search kept its own summary: the record's is the latest's
        searches[latest] = {"config": cfg, **searches.get(latest, {}), "summary": record.get("summary") or {}}
    histories, _ = trial_histories(trials)
    search_of = {str(t.trial_id): _search_name(t.trial_path) for t in trials.itertuples()}

    longest: dict[str | None, int] = {}  # each search's most epochs a trial ran
    for tid, h in histories.items():
        if "training_iteration" in h and len(h):
            name = search_of.get(tid)
            longest[name] = max(longest.get(name, 0), int(h["training_iteration"].max()))

    def settings_of(tid: str) -> dict:  # the settings of the search the trial ran in; the latest's if unknown
        return (searches.get(search_of.get(tid)) or {}).get("config") or cfg

    def ended_as(tid: str, h) -> str:
        conf, summary = settings_of(tid), (searches.get(search_of.get(tid)) or {}).get("summary") or {}
        known = conf.get("max_epochs")  # unknown: the longest trial's epochs tell a scheduler's stop at max_t apart
        observed = longest.get(search_of.get(tid)) or None
        final = final_flag(h["final_epoch"].iloc[-1]) if "final_epoch" in h else None  # older runs lack it
        cut_by = "the interrupt" if summary.get("interrupted") else search_cut_by(conf.get("time_budget_s"))
        text = how_ended(str(h["done"].iloc[-1]) == "True", h["training_iteration"].iloc[-1], known or observed,
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
    plot = data_uri(plots.search_timeline(histories, stopped)) if histories else None
    return {"trials": rows, "hp_keys": hp_keys, "best": best, "best_f1": best["f1"] if best else None,
            "plot": plot, "stopped": len(stopped), "scheduler": scheduler, "wall_s": searching_s(trials, histories),
            "unfinished": unfinished(searches, set(search_of.values()), workdir),
            "settings": {k: cfg[k] for k in ("kind", "searcher", "scheduler", "num_samples", "max_epochs",
                                             "grace_period", "workers_per_trial") if k in cfg
                         and not (k == "workers_per_trial" and cfg.get("kind") == "probe")}}  # probes have none


def _search_name(trial_path: Any) -> str | None:
    """The search (Tune experiment) a trial ran in: the name of its trial folder's parent."""
    return os.path.basename(os.path.dirname(trial_path.rstrip("/"))) if isinstance(trial_path, str) else None


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


def _read_json(uri: str) -> Any:
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def _evaluation(workdir: str, bundle_id: str | None) -> dict | None:
    """The run's ``eval_*`` folder of this bundle (``speciesfam evaluate`` writes it beside the bundle), the test
    split's first; one of a bundle exported before this one, or of another run's manifest, is not shown as this
    run's."""
    import numpy as np

    if storage.is_remote(workdir):
        return None
    found = []
    for split in layout.SPLITS[::-1]:  # test first: the unbiased one
        folder = storage.join(workdir, f"eval_{split}")
        metrics = _read_json(storage.join(folder, "metrics.json")) or {}
        if storage.exists(storage.join(folder, "per_class.csv")) and metrics.get("bundle_id") in (None, bundle_id) \
                and metrics.get("run_manifest") is not False:
            found.append((split, folder, metrics))
    if not found:
        return None
    split, folder, metrics = found[0]
    per_class = storage.read_table(storage.join(folder, "per_class.csv"))
    pairs = storage.read_table(storage.join(folder, "confused_pairs.csv"))
    out = {"split": split, "metrics": metrics,
           "per_class": per_class.sort_values("f1").to_dict("records"), "confusion": None}
    if len(pairs):
        # The most-confused families; the diagonal comes back from recall x support (per_class.csv).
        weight = pairs.groupby("true")["count"].sum().add(pairs.groupby("predicted")["count"].sum(), fill_value=0)
        fams = list(weight.sort_values(ascending=False).index[:MAX_CONFUSED])
        idx = {f: i for i, f in enumerate(fams)}
        cm = np.zeros((len(fams), len(fams)), dtype=int)
        by_family = per_class.set_index("family")
        for f in fams:
            if f in by_family.index:
                cm[idx[f], idx[f]] = int(round(by_family.loc[f, "recall"] * by_family.loc[f, "support"]))
        for r in pairs.itertuples():
            if r.true in idx and r.predicted in idx:
                cm[idx[r.true], idx[r.predicted]] = int(r.count)
        out["confusion"] = data_uri(plots.confusion(cm, fams, title=f"Most-confused families ({split})"))
        out["pairs"] = pairs.head(10).to_dict("records")
    return out


def best_model(workdir: str, records: dict) -> dict | None:
    bundle = layout.path(workdir, layout.BUNDLE)
    config = _read_json(storage.join(bundle, "config.json"))
    if config is None:
        trials = layout.path(workdir, layout.TRIALS)
        if storage.exists(trials):
            from .tune.tracking import scored_trials

            if _safe(lambda: len(scored_trials(storage.read_table(trials)))) == 0:  # export would refuse: say why
                return {"missing": True, "why": "Nothing to export yet: no trial of the searches on this run "
                                                "trained and scored (see the search above)."}
        return None
    from .bundle import bundle_id

    metrics = _read_json(storage.join(bundle, "metrics.json")) or {}
    card_uri = storage.join(bundle, "MODEL_CARD.md")
    val_f1 = (metrics.get("checkpoint") or {}).get("per_class_f1") or {}
    return {"config": config, "metrics": {k: v for k, v in metrics.items() if not isinstance(v, dict)},
            "val_per_class": sorted(val_f1.items(), key=lambda kv: kv[1]),
            "eval": _evaluation(workdir, _safe(lambda: bundle_id(bundle))),
            "card": storage.read_bytes(card_uri).decode("utf-8") if storage.exists(card_uri) else None,
            "path": bundle, "last_export": _export_elsewhere(bundle, records)}


def _export_elsewhere(bundle: str, records: dict) -> dict | None:
    """The last export's trial and folder when it wrote another folder than RUN/bundle (`--out`): the section
    shows RUN/bundle while 'How to reproduce' ends with that export's command."""
    last = (records.get("export") or {}).get("summary") or {}
    out = last.get("bundle")
    same = not out or (out == bundle if storage.is_remote(out) or storage.is_remote(bundle)
                       else os.path.realpath(out) == os.path.realpath(bundle))
    return None if same else {"out": out, "trial": last.get("trial_id")}
