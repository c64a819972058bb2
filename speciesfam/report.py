"""``RUN/report.html``: one self-contained page about a run, rebuilt by every stage and by ``speciesfam report``.

It reads the run folder's data (stage records ``RUN/stages/*.json``, the Parquet/CSV tables, Tune's
``progress.csv`` per trial, the bundle's JSON files and an evaluation's CSVs), never another stage's
Markdown, and renders whatever exists: a section whose files are missing says which command makes them,
and a section that fails to render shows its error instead of breaking the page. Images are inlined as
data URIs, so the page opens offline from anywhere (mail it, copy it off the cluster).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shlex
import time
import traceback
from importlib import resources
from typing import Any, Callable

from . import layout, pathtext, plots, stages, storage
from .lines import counted, number, score
from .markdown import to_html, twins, visible
from .report_search import search
from .reproduce import reproduce

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
    uri = layout.path(workdir, layout.REPORT)
    try:
        html, sections = _render(workdir)
        if (sections.get("search") or {}).get("png"):  # the search's timeline as the page shows it (all searches)
            storage.write_bytes(layout.path(workdir, layout.SEARCH_PROGRESS), sections["search"]["png"])
        storage.write_text(uri, html)
        return uri if storage.is_remote(uri) else storage.filesystem(uri)[1]
    except OSError as err:  # the storage's answer (a full disk, a read-only folder): one line, the rest logged
        logger.info("could not write %s", uri, exc_info=True)
        logger.warning("could not write %s: %s", uri, pathtext.said(err))
        return None
    except Exception:  # noqa: BLE001 -- see the docstring
        logger.warning("could not write the report of %s:\n%s", workdir, traceback.format_exc())
        return None


FAMILY_COLUMNS = ("family", "given_family", "suggested_family", "family_a", "family_b", "true", "predicted")


def family_shown(manifest: Any) -> Callable[[Any], str]:
    """How the page writes a family: ``markdown.visible`` ('Felidae ' as 'Felidae\\x20', a newline as '\\n'), and
    one that renders as another of the collection ('Café' in two Unicode forms: ``twins``) as its JSON string;
    the per-family tables showed two identical 'Café' rows, 'Felidae ' as 'Felidae' (hostile tester round 36)."""
    alike = twins(manifest["label"]) if hasattr(manifest, "columns") and "label" in manifest else frozenset()
    return lambda v: json.dumps(v) if isinstance(v, str) and v in alike else visible(v)


def render(workdir: str) -> str:
    """The report's HTML for ``workdir`` (sections that fail carry their error)."""
    return _render(workdir)[0]


def _render(workdir: str) -> tuple[str, dict]:
    """The report's HTML and the sections it was made of."""
    import jinja2

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = number
    env.filters["sh"] = shlex.quote  # a path in a command the page shows
    env.filters["fam"] = family_shown(_safe(lambda: stages.table(workdir, layout.MANIFEST)))
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
    stale_why: dict[str, str] = {}
    for stage, name in SECTION_OF.items():
        if any(isinstance(loaded[up], Exception) for up in stages.UPSTREAM[stage]):
            continue  # an upstream record damaged (said above): freshness unknown
        stale = _safe(lambda stage=stage: stages.check_fresh(workdir, stage, upstream_tables=False))  # an error:
        why = str(stale) if isinstance(stale, stages.StageOrderError) else ""  # built from an older run, or its
        sections[name]["stale_table"] = getattr(stale, "not_written", False)  # own table not what it wrote
        behind = [up for up in stages.UPSTREAM[stage]  # (a stage on a table run again as it was is not stale)
                  if stale_why.get(up) and not sections[SECTION_OF[up]].get("stale_table")]
        if not why and behind:  # a bundle of trials a re-catalog made stale: fresh against them, yet of the old run
            why = f"built from the {behind[0]} stage, itself stale: {stale_why[behind[0]]}"
        stale_why[stage] = why if stage in records else ""
        if why and stage in records and not sections[name].get("missing"):
            sections[name]["stale"] = why  # shown, marked: never mixed silently with the newer stages
            sections[name].pop("unfinished", None)  # tune refuses to resume a search of an older run: not offered
    model = sections["model"]
    if model.get("last_export") and not model.get("stale"):  # RUN/bundle, an older export: its own runs tell
        model["stale"] = _trained_on_older(model.get("config") or {}, records)  # (round 65: shown as current)
    for step in sections["reproduce"].get("steps", []):  # its command ran on older runs of the stages above it
        step["stale"] = bool(stale_why.get(step["stage"]))
        step["stale_table"] = sections[SECTION_OF[step["stage"]]].get("stale_table") if step["stale"] else False
    return template.render(workdir=workdir, family_columns=FAMILY_COLUMNS, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), s=sections,
                           headline=headline(sections)), sections


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
    return plots.data_uri(buf.getvalue(), "image/jpeg")


def headline(s: dict[str, dict]) -> list[tuple[str, str]]:
    """The main numbers at the top of the page."""
    out = []
    if "rows" in s["collection"] and not s["collection"].get("stale"):  # a table catalog did not write: no headline
        # every file or manifest row catalog listed (non-images, copies and broken links too), then the usable
        out += [("files or rows catalogued", str(s["collection"]["rows"])),
                ("usable images", str(s["collection"]["status"].get(layout.OK, 0))),
                ("families", str(s["collection"]["families"]))]
    if "removed" in s["cleaning"] and not s["cleaning"].get("stale"):  # a stale count is no headline
        out.append(("removed by cleaning", str(s["cleaning"]["removed"])))
    if "trials" in s["search"] and not s["search"].get("stale"):  # an older run's search: its section says so
        out += [("trials", str(len(s["search"]["trials"]))), ("best val macro-F1", score(s["search"]["best_f1"]))]
    metrics = ({} if s["model"].get("stale") else s["model"].get("eval") or {}).get("metrics", {})
    for key, value in metrics.items():
        if key.endswith("macro_f1"):  # over how many families, when it is not all (109 of 202 read as all: 62)
            scored = (metrics.get("families_with_images") or 0) + (metrics.get("families_predicted_absent") or 0)
            over = f" (over {scored} of {metrics['families']} families)" if 0 < scored < (metrics.get("families")
                                                                                          or 0) else ""
            out.append((key.replace("_", " ").replace("macro f1", "macro-F1") + over, score(value)))
    return out


def collection(workdir: str, records: dict) -> dict | None:
    manifest = stages.table(workdir, layout.MANIFEST)
    if manifest is None:  # catalog ran and its table is gone: said with its command, not 'Not run yet' (round 74)
        gone = _safe(lambda: stages.check_outputs(workdir, "catalog")) if records.get("catalog") else None
        return {"missing": True, "why": str(gone)} if isinstance(gone, Exception) else None
    cleaned = stages.table(workdir, layout.CLEAN_MANIFEST)
    problem = _safe(lambda: stages.check_fresh(workdir, "clean")) if cleaned is not None or records.get("clean") \
        else None  # clean ran on an older catalog, or its table is gone or not what it wrote: no counts, and why
    cleaned_note = str(problem) if isinstance(problem, Exception) else \
        f"{layout.path(workdir, layout.CLEAN_MANIFEST)} is gone: run `{stages.command('clean', workdir)}` again" \
        if cleaned is None and records.get("clean") else ""  # a record from before it held its table's digest
    if cleaned_note:
        cleaned = None
    before = manifest[manifest["status"] == layout.OK]["label"].value_counts()
    after = cleaned[cleaned["status"] == layout.OK]["label"].value_counts() if cleaned is not None else None
    families = [{"family": fam, "before": int(n),
                 "after": None if after is None else int(after.get(fam, 0))}
                for fam, n in before.sort_values(ascending=False).items()]
    skipped = manifest[manifest["status"] != layout.OK]
    source = (records.get("catalog") or {}).get("config", {}).get("source")
    from .data.catalog import FAILED_CATALOG

    failed = layout.path(workdir, layout.LOGS, FAILED_CATALOG, layout.CATALOG_MD)  # a later catalog found nothing
    return {"rows": len(manifest), "families": len(before), "source": source, "cleaned_note": cleaned_note,
            "failed_catalog": failed if storage.exists(failed) else None,
            "status": manifest["status"].value_counts().to_dict(), "table": families,
            "plot": plots.data_uri(plots.class_counts(before, after if after is not None else before)),
            "skipped": [{"path": r.path, "family": r.label, "status": r.status, "reason": r.reason}  # null label: ""
                        for r in skipped[["path", "label", "status", "reason"]].head(MAX_ROWS).fillna("").itertuples()],
            "skipped_total": len(skipped)}


def _gallery(df, score_col: str | None, caption_cols: list[str], path_cols: list[str]) -> list[dict]:
    items = []
    if score_col in df.columns:
        df = df.sort_values(score_col, ascending=False)
    for row in df.head(MAX_GALLERY).to_dict("records"):
        images = [(str(row[c]), thumbnail(str(row[c]))) for c in path_cols if isinstance(row.get(c), str)]
        items.append({"images": images,  # similarities all read 1.000 (0.999 to 0.99993): as near_duplicates.csv
                      "score": row.get(score_col) if score_col else None, "digits": 5 if score_col == "similarity" else 3,
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
    thresholds = {k: _plain(v) for k, v in summary.items() if k not in ("status", "split_lost_cause")
                  and not (k in settings and summary[k] == settings[k])}  # the threshold was there twice (62)
    if isinstance(summary.get("split_lost"), dict) and summary["split_lost"]:  # named in the lines above: counted
        thresholds["split_lost"] = ", ".join(f"{split}: {counted(len(fams), 'family', 'families')}"  # (185 names
                                             for split, fams in summary["split_lost"].items())  # in one cell: 62)
    # families left with no image in a split: the console and clean.md warn; the page says it too, in words
    from .data.clean_report import lost_lines

    manifest = stages.table(workdir, layout.MANIFEST)  # a family that renders as another of the collection: JSON
    lost = lost_lines(summary, visible, twins(manifest["label"]) if manifest is not None else frozenset())
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


def _read_json(uri: str) -> Any:
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def _evaluation(workdir: str, bundle_id: str | None) -> dict | None:
    """The run's ``eval_*`` folder of this bundle (``speciesfam evaluate`` writes it beside the bundle), the test
    split's first; one of a bundle exported before this one, or of another run's manifest, is not shown as this
    run's."""
    import numpy as np
    import pandas as pd

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
    for column in ("f1", "precision", "recall", "support"):  # an edited 'x' lost the whole page (round 60): blank
        if column in per_class:
            per_class[column] = pd.to_numeric(per_class[column], errors="coerce")
    pairs = storage.read_table(storage.join(folder, "confused_pairs.csv"))
    # the families the macro-F1 counts (evaluate's column; older tables: those with an image of the split)
    scored = per_class["scored"].astype(str) == "True" if "scored" in per_class else per_class["support"] > 0
    out = {"split": split, "metrics": metrics, "per_class": per_class[scored].sort_values("f1").to_dict("records"),
           "unscored": per_class.loc[~scored, "family"].tolist(), "confusion": None}
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
        other = np.zeros(len(fams), dtype=int)  # each row's images predicted as a family not shown (round 62)
        for r in pairs.itertuples():
            if r.true in idx and r.predicted in idx:
                cm[idx[r.true], idx[r.predicted]] = int(r.count)
            elif r.true in idx:
                other[idx[r.true]] += int(r.count)
        out["confusion"] = plots.data_uri(plots.confusion(cm, fams, title=f"Most-confused families ({split})",
                                                          other=other))
        out["pairs"] = pairs.head(10).to_dict("records")
    return out


def best_model(workdir: str, records: dict) -> dict | None:
    from .bundle import read_config

    bundle = layout.path(workdir, layout.BUNDLE)
    # what predict and evaluate would say of it (a file missing, changed, unreadable), shown with it
    checked = None if storage.is_remote(bundle) or not os.path.isdir(bundle) else _safe(lambda: read_config(bundle))
    damaged = str(checked) if isinstance(checked, Exception) else None
    config = checked if isinstance(checked, dict) else _safe(lambda: _read_json(storage.join(bundle, "config.json")))
    shown = isinstance(config, dict) and isinstance(config.get("labels"), list) and (
        config.get("kind") != "probe" or isinstance(config.get("embedder"), dict))  # what the section reads
    if isinstance(config, Exception) or (damaged and not shown):  # nothing to show but why ('"labels": 7' crashed)
        return {"error": damaged or f"{bundle}/config.json cannot be read ({config})"}
    if config is None:
        trials = layout.path(workdir, layout.TRIALS)
        if storage.exists(trials):
            from .tune.tracking import scored_trials

            if _safe(lambda: len(scored_trials(storage.read_table(trials)))) == 0:  # export would refuse: say why
                return {"missing": True, "why": "Nothing to export yet: no trial of the searches on this run "
                                                "trained and scored (see the search above)."}
        last = (records.get("export") or {}).get("summary") or {}
        if last.get("bundle") and not storage.exists(last["bundle"]):  # removed since: not 'Not run yet' (round 53)
            return {"missing": True, "why": f"The bundle export wrote ({last['bundle']}, trial "
                                            f"{last.get('trial_id')}) is gone: run `{stages.command('export', workdir)}`"
                                            " again to write it."}
        if last.get("bundle"):  # written with --out, none here
            return {"missing": True, "why": f"The last export (trial {last.get('trial_id')}) wrote its bundle to "
                                            f"{last['bundle']}; none is at {bundle}."}
        return None
    from .bundle import bundle_id

    metrics = _read_json(storage.join(bundle, "metrics.json")) or {}
    card_uri = storage.join(bundle, "MODEL_CARD.md")
    val_f1 = (metrics.get("checkpoint") or {}).get("per_class_f1") or {}
    return {"config": config, "metrics": {k: v for k, v in metrics.items() if not isinstance(v, dict)},
            "val_per_class": sorted(val_f1.items(), key=lambda kv: kv[1]),
            "eval": _evaluation(workdir, _safe(lambda: bundle_id(bundle))),
            "card": _safe(lambda: to_html(storage.read_bytes(card_uri).decode("utf-8"))) if storage.exists(card_uri)
            else None,
            "path": bundle, "last_export": _export_elsewhere(bundle, records), "damaged": damaged}


def _export_elsewhere(bundle: str, records: dict) -> dict | None:
    """The last export's trial and folder when it wrote another folder than RUN/bundle (`--out`): the section
    shows RUN/bundle while 'How to reproduce' ends with that export's command."""
    last = (records.get("export") or {}).get("summary") or {}
    out = last.get("bundle")
    same = not out or (out == bundle if storage.is_remote(out) or storage.is_remote(bundle)
                       else os.path.realpath(out) == os.path.realpath(bundle) or _moved_with_run(out, bundle))
    return None if same else {"out": out, "trial": last.get("trial_id")}


def _trained_on_older(config: dict, records: dict) -> str:
    """Why a bundle that is not the last export's was trained on older runs of catalog or clean than the run's
    now ('' when not, or unknown: a bundle exported before its runs were recorded)."""
    trained_on = (config.get("trial") or {}).get("trained_on") or {}
    for stage in ("catalog", "clean") if trained_on else ():
        now = (records.get(stage) or {}).get("run_id")
        if now and trained_on.get(stage) != now:
            was = f"{stage} run {trained_on[stage][:8]}" if trained_on.get(stage) else f"no {stage} run"
            return (f"this bundle was trained on {was}; the run's {stage} is now run {now[:8]}: run "
                    "speciesfam export again for a bundle of it")
    return ""


def _moved_with_run(out: str, bundle: str) -> bool:
    """Whether ``out``, where the last export wrote RUN/bundle, is ``bundle`` before its run folder moved (its
    config names that run folder): a moved run's report said its own bundle was another (hostile tester round 47)."""
    from .bundle import recorded_trial

    return os.path.basename(out) == os.path.basename(bundle) and \
        recorded_trial(bundle).get("run_folder") == os.path.dirname(out)
