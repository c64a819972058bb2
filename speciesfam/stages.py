"""Stage records: what each stage was built from, so a later stage never reads outputs older than its inputs.

Every stage ends by writing ``RUN/stages/<stage>.json``: a fresh ``run_id``, the ``run_id`` of each upstream
stage it read (``built_from``), its config and a small summary (counts, thresholds, the best trial...). Stages
hand each other data through these records and their tables, never by parsing each other's Markdown.

A stage that reads an upstream output calls ``check_fresh``: when the upstream stage was re-run after the
output was built (``catalog`` again after ``clean``), it refuses with the command that brings it up to date.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from . import layout, records, storage
from .errors import SpeciesfamError, StageOrderError
from .stage_outputs import OUTPUTS, check_outputs, outputs_digest, same_run

# stage -> the stages whose outputs it reads (in the order they run)
UPSTREAM: dict[str, tuple[str, ...]] = {"catalog": (), "clean": ("catalog",), "tune": ("catalog", "clean"),
                                        "export": ("tune",)}
COMMAND = {"catalog": "speciesfam catalog SOURCE --workdir RUN", "clean": "speciesfam clean --workdir RUN",
           "tune": "speciesfam tune KIND --workdir RUN", "export": "speciesfam export --workdir RUN"}


def record_uri(workdir: str, stage: str) -> str:
    return layout.path(workdir, layout.STAGES, f"{stage}.json")


def is_run_folder(workdir: str) -> bool:
    """A folder catalog made (its record, ``stages/catalog.json``, or its manifest: one with a ``status`` and a
    ``split`` column, as a generated run has): the only kind a stage's report and logs go into (an image folder,
    or any other, would gain files the next catalog reads; a family named 'stages', or a user's own
    manifest.parquet of paths and labels, made one pass for a run folder)."""
    if storage.exists(record_uri(workdir, "catalog")):
        return True
    manifest = layout.path(workdir, layout.MANIFEST)
    if not storage.exists(manifest):
        return False
    import pyarrow.parquet as pq

    try:
        fs, where = storage.filesystem(manifest)
        return {"status", "split"} <= set(pq.read_schema(where, filesystem=fs).names)
    except Exception:  # noqa: BLE001 -- not Parquet, damaged, a folder: not catalog's
        return False


def image_folder(workdir: str) -> str | None:
    """The local image folder the run's catalog read (None for a manifest, a bucket or no readable record): a
    place nothing of the run may be written into, as the next catalog would take it for images."""
    source = catalog_source(workdir)
    if not source or storage.is_remote(source) or source.lower().endswith((".csv", ".parquet")):
        return None
    return source


def catalog_source(workdir: str) -> str | None:
    """The SOURCE the run's catalog read, as its record names it (None: no record, or a damaged one)."""
    try:
        source = ((load(workdir, "catalog") or {}).get("config") or {}).get("source")
    except SpeciesfamError:
        return None
    return source if isinstance(source, str) and source else None


def load(workdir: str, stage: str) -> dict[str, Any] | None:
    """The stage's record, or None when the stage has not run (or ran before records existed).

    Raises:
        StageOrderError: the record is damaged (not a JSON record: a disk filled up, a hand edit), naming the
            file and the command that rewrites it; a damaged record never reads as "not run".
    """
    uri = record_uri(workdir, stage)
    if not storage.exists(uri):
        return None
    try:
        rec = json.loads(storage.read_bytes(uri))
    except (ValueError, OSError) as err:  # not JSON (JSONDecodeError, UnicodeDecodeError), a folder, unreadable
        rec = err
    wrong = records.wrong_field(stage, rec) if isinstance(rec, dict) else ""
    if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str) or \
            not isinstance(rec.get("built_from"), dict) or wrong:
        why = (f"not JSON: {rec}" if isinstance(rec, ValueError) else f"cannot be read: {rec}"
               if isinstance(rec, Exception) else f"its {wrong}"
               if wrong else "not a stage record: no run_id or built_from")
        err = StageOrderError(f"{uri} is damaged ({why}); " + _rewrite(workdir, stage, rec, wrong))
        err.damaged = f"{uri} was damaged ({why})"  # what the stage that rewrites it says
        raise err
    for part in (rec, *(rec.get("searches") or {}).values()):  # a config or summary deleted or null: none recorded
        for key in ("config", "summary"):  # (round 61: tracebacks in export's model card and in the report)
            if part.get(key) is None:
                part[key] = {}
    return rec


def _rewrite(workdir: str, stage: str, rec: Any, wrong: str) -> str:
    """How to mend a damaged record: its field edited back, or the stage run again with its recorded settings
    where they are whole (the bare command re-cleaned with the default model, and offline could not load it;
    round 61), with the stages after it, which it makes stale."""
    from .reproduce import command as reproduced

    whole = isinstance(rec, dict) and isinstance(rec.get("config"), dict) and not wrong.startswith(("config", "searches"))
    again = reproduced(stage, rec, workdir) if whole else COMMAND[stage].replace("RUN", workdir)
    later: list[str] = []
    for s in COMMAND:  # in the order they run: each stage built from this one, or from one built from it
        if stage in UPSTREAM[s] or set(later) & set(UPSTREAM[s]):
            later.append(s)
    then = f" (then {', '.join(later[:-1])}{' and ' if len(later) > 1 else ''}{later[-1]} again)" if later else ""
    field = wrong.split(" is ", 1)[0]
    return (f"edit {field} back to what {stage} wrote, or run `{again}` again to rewrite it{then}" if wrong else
            f"run `{again}` again to rewrite it{then}")


def check_upstream(workdir: str, stage: str) -> dict[str, str]:
    """Read the records ``stage`` will be built from now, so a damaged one stops the stage before its work, not
    when it writes its own record at the end (raises ``load``'s StageOrderError), and check that their tables
    are the ones they wrote (``check_outputs``); returns their run ids, for ``finish``: a catalog or clean re-run
    while the stage worked is not what it read."""
    ids = upstream_ids(workdir, stage)
    for up in ids:
        check_outputs(workdir, up)
    return ids


def summary(workdir: str, stage: str) -> dict[str, Any]:
    """What the stage's last run recorded of its result (``{}`` when it has not run)."""
    return (load(workdir, stage) or {}).get("summary") or {}


def table(workdir: str, name: str):
    """A run folder's table (``layout`` name), or None when no stage has written it; damaged: the stage that
    writes it named (``storage.read_table``)."""
    uri = layout.path(workdir, name)
    return storage.read_table(uri) if storage.exists(uri) else None


def refuse_links(workdir: str) -> None:
    """Refuse a run folder whose entries (a file or folder a stage writes, an evaluation's eval_* folder, a record
    in stages/, a log in logs/ or logs/ray/) are links: a stage wrote through them into another folder, and clean
    and evaluate deleted files there (catalog refused them: round 35; the other stages did not: round 70)."""
    from .errors import SourceError
    from .lines import some

    if storage.is_remote(workdir) or not os.path.isdir(storage.local_path(workdir)):
        return
    top = storage.local_path(workdir)
    links = [n for n in sorted(os.listdir(top)) if (n in layout.RUN_ENTRIES or n.startswith("eval_"))
             and os.path.islink(os.path.join(top, n))]
    links += [f"{d}/{n}" for d in (layout.STAGES, layout.LOGS, f"{layout.LOGS}/ray")
              if os.path.isdir(os.path.join(top, d)) and not os.path.islink(os.path.join(top, d))
              and not os.path.islink(os.path.dirname(os.path.join(top, d)))
              for n in sorted(os.listdir(os.path.join(top, d))) if os.path.islink(os.path.join(top, d, n))]
    if links:
        first = os.path.join(top, links[0])
        raise SourceError(f"--workdir {workdir}: {some(links, quote=True)} "
                          f"{'is a link' if len(links) == 1 else 'are links'} ({links[0]} -> "
                          f"{os.path.realpath(first)}); a run writes its own files, and would write through "
                          f"{'it' if len(links) == 1 else 'them'} into another folder. Give a folder without "
                          "them, e.g. a new --workdir")


def refuse_folders_in_place(workdir: str, stage: str) -> None:
    """Before ``stage``'s work: a folder where it writes a file (RUN/embeddings.parquet made a folder) failed
    its last write, after all its work, with 'Failed renaming ...' (round 49); and the run's links
    (``refuse_links``)."""
    if storage.is_remote(workdir):
        return
    refuse_links(workdir)
    for name in layout.OUTPUTS.get(stage, ()):
        if storage.is_dir(layout.path(workdir, name)):
            raise SpeciesfamError(f"{layout.path(workdir, name)} is a folder, where {stage} writes its {name}: move "
                                  f"it away (or remove it), then run {stage} again")
    for name in layout.FOLDER_OUTPUTS.get(stage, ()):  # a file where it makes a folder (gallery: round 50)
        where = layout.path(workdir, name)
        if os.path.lexists(where) and not storage.is_dir(where):  # a link (broken or not) is refused above
            raise SpeciesfamError(f"{where} is a file, where {stage} makes its {name}/ folder: "
                                  f"move it away (or remove it), then run {stage} again")


def writer(uri: str) -> str:
    """The command that writes table ``uri`` anew when it is one of a run folder's own (``layout.WRITTEN_BY``),
    else '' (a user's file: their path to fix). Asked only once a read failed: it looks at the folder."""
    folder, name = storage.parent(uri), uri.rstrip("/").rsplit("/", 1)[-1]
    stage = layout.WRITTEN_BY.get(name)
    return command(stage, folder) if stage and is_run_folder(folder) else ""


def timestamp() -> str:
    """When a stage (or a search) finished, as its record says it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def upstream_ids(workdir: str, stage: str) -> dict[str, str]:
    """The run ids of the records ``stage`` reads now (catalog's and clean's for tune)."""
    recs = {up: load(workdir, up) for up in UPSTREAM.get(stage, ())}
    return {up: rec["run_id"] for up, rec in recs.items() if rec is not None}


def finish(workdir: str, stage: str, config: dict[str, Any] | None = None,
           summary: dict[str, Any] | None = None, built_from: dict[str, str] | None = None,
           run_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """Write ``stage``'s record (a new run id unless ``run_id``: the outputs later stages read are those of that
    run still; the upstream run ids it read: ``built_from``, from ``check_upstream`` at its start, else those of
    now; config, summary, and ``extra`` fields); returns it.

    A run with the last one's config and upstream runs whose ``OUTPUTS`` (the tables later stages read, written
    before this call) are the same keeps its run id: later stages' outputs stay current (an identical clean made
    the search stale, and export refused it, naming a search that refused its name: round 71). Their digest is
    recorded, for ``check_outputs``.

    An upstream stage that ran again while this one worked (a catalog re-run during a search) is said: the
    record names the run this stage read, so later stages refuse its outputs (it named the new run, and export
    took a search's trials for the new catalog's splits: a 'test' set of training images)."""
    read = upstream_ids(workdir, stage) if built_from is None else built_from
    if OUTPUTS.get(stage) and all(storage.exists(layout.path(workdir, name)) for name in OUTPUTS[stage]):
        extra["outputs_sha256"] = outputs_digest(workdir, stage)
        run_id = run_id or same_run(workdir, stage, config or {}, read, extra["outputs_sha256"])
    rec = {"stage": stage, "run_id": run_id or uuid.uuid4().hex, "finished_at": timestamp(),
           "built_from": read, "config": config or {}, "summary": summary or {}, **extra}
    storage.write_text(record_uri(workdir, stage), json.dumps(rec, indent=1, default=_plain, sort_keys=True))
    again = [up for up, run_id in upstream_ids(workdir, stage).items() if read.get(up) != run_id]
    if again:
        from .console import say

        ran = " and ".join(again)
        say(f"{stage}: warning: {ran} ran again on {workdir} while this {stage} worked; its outputs are built from "
            f"the {ran} run{'s' if len(again) > 1 else ''} it read, so later stages refuse them: run "
            f"`{command(stage, workdir, (config or {}).get('kind'))}` again")
    return rec


def _plain(value: Any) -> Any:
    """A value JSON has no type for, as the record keeps it: a NumPy number as the number (``str`` wrote '3', which
    the record's check then called damage: a config given through the Python API; round 61), else its text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def command(stage: str, workdir: str, kind: str | None = None, search: str | None = None,
            resume: bool = False) -> str:
    """The command that runs ``stage`` on ``workdir`` (shell-quoted), for a line that tells the user what to run;
    catalog's and clean's with the source and settings they last ran with (a bare catalog split again with seed 0
    and made a new run: round 74), tune's as search
    ``search`` ran if the record has it, else as its latest search of ``kind`` ran (the same --name replaces
    it), if any; with ``resume``, a search that has trials on the split the folder holds now is resumed (started
    again under its name it is refused: export named such a command after a clean run again as it was; round 75)."""
    import shlex

    if stage in ("catalog", "clean", "tune"):  # as it last ran, with its settings (a bare clean re-cleaned with
        try:                                    # the default model and thresholds); tune's latest search of ``kind``
            rec = load(workdir, stage)
        except SpeciesfamError:  # damaged: said where it is read
            rec = None
        if rec and stage == "tune":
            runs = [(str(s.get("finished_at") or ""), n, s.get("config") or {}, s.get("summary") or {})
                    for n, s in (rec.get("searches") or {}).items()]
            mine = [r for r in runs if r[1] == search]
            runs = mine or sorted((r for r in runs if r[2].get("kind") == kind and kind), key=lambda r: r[:2])
            rec = {"config": {**runs[-1][2], "name": runs[-1][1], **_budget_that_trains(runs[-1][3])}} \
                if runs else None
        if rec and rec.get("config"):
            from .reproduce import command as reproduced
            from .tune.record import ran_on_this_split

            again = resume and stage == "tune" and ran_on_this_split(workdir, rec["config"])
            return reproduced(stage, rec, workdir) + (" --resume" if again else "")
    text = COMMAND[stage].replace("KIND", kind or "KIND").replace("--workdir RUN", f"--workdir {shlex.quote(workdir)}")
    source = catalog_source(workdir) if stage == "catalog" else None
    if source:  # else the placeholder
        text = text.replace("SOURCE", shlex.quote(source))
    return text


def _budget_that_trains(summary: dict) -> dict:
    """A search whose time budget ended it before any trial trained is advised without that budget (the same
    --time-budget would train nothing again): {'time_budget_s': None}; else {}."""
    return {"time_budget_s": None} if summary.get("time_budget_hit") and not summary.get("ok") else {}


def rerun(workdir: str, *names: str) -> str:
    """'re-run `speciesfam catalog IMGS --workdir W`, then `speciesfam clean --workdir W`': the commands, in order."""
    return "re-run " + ", then ".join(f"`{command(name, workdir)}`" for name in names)


def is_stale(workdir: str, stage: str) -> bool:
    """``stage`` has no record, or one built from an upstream run other than the upstream's latest."""
    rec = load(workdir, stage)
    ups = [(up, load(workdir, up)) for up in UPSTREAM.get(stage, ())]
    return any(cur is not None and (rec is None or rec["built_from"].get(up) != cur["run_id"]) for up, cur in ups)


def _trained_now(workdir: str) -> bool:
    """Whether a search trained a trial on the catalog and clean runs the folder holds now (after a re-clean
    and a search that trained nothing, the report's 'run export again' was refused by export)."""
    from .tune.trials_file import trained_searches

    return bool(trained_searches(workdir))


def _stale_chain(workdir: str, stage: str) -> list[str]:
    """The stages to run again before ``stage``, in order: each upstream stage that ran and is stale, or built
    from a stale one (after a re-catalog, a bundle needs clean and tune first: the report said to run export
    again, which export refused; hostile tester round 39)."""
    chain: list[str] = []
    for up in UPSTREAM.get(stage, ()):
        if load(workdir, up) is None:
            continue
        before = _stale_chain(workdir, up)
        if before or is_stale(workdir, up):
            chain += [s for s in [*before, up] if s not in chain]
    return chain


def check_fresh(workdir: str, stage: str, upstream_tables: bool = True) -> dict[str, Any] | None:
    """Refuse ``stage``'s outputs when an upstream stage ran again after them, or when its tables or (with
    ``upstream_tables``) its upstream stages' are not what their runs wrote (``check_outputs``); returns
    ``stage``'s record. The report marks each stage by its own tables only (it marked every later stage: round 75).

    Raises:
        StageOrderError: naming the stale stage and the commands that rebuild it (a stale stage between the one
            that re-ran and ``stage`` first: after a new catalog, clean, then tune).
    """
    rec = load(workdir, stage)
    ups = UPSTREAM.get(stage, ())
    for part in (stage, *(ups if upstream_tables else ())):  # its tables and those it was built from are what
        check_outputs(workdir, part, rec if part == stage else None)  # their runs wrote
    for up in ups:
        current = load(workdir, up)
        if current is None:
            continue
        if rec is None or rec["built_from"].get(up) != current["run_id"]:
            summary = (rec or {}).get("summary") or {}
            kind = (rec or {}).get("config", {}).get("kind") or summary.get("kind")
            todo = _stale_chain(workdir, stage) + [stage]
            if stage == "export" and "tune" not in todo and not _trained_now(workdir):
                todo = ["tune", "export"]  # export alone would refuse: no search trained on this run since
            # a bundle's own search, not the latest of its kind (another --name)
            search = summary.get("search") if stage == "export" else None
            commands = [c for s in todo for c in (_each_search(workdir, s == todo[0]) if s == "tune" and
                                                  stage != "export" else [])
                        or [command(s, workdir, kind, search, resume=s == todo[0])]]  # later: after the first
            tables = [layout.path(workdir, n) for n in OUTPUTS.get(stage, ()) if storage.exists(layout.path(workdir, n))]
            why = f"{' and '.join(tables)} has no record of the {stage} that wrote it (a first {stage} stopped before " \
                "it finished?)" if rec is None and tables else \
                f"{workdir}: the {stage} stage's outputs were built from an older {up} run (or before it)"
            flags = f" (with the flags that {stage} was given: they are not recorded)" if rec is None and tables else ""
            raise StageOrderError(f"{why}; run " + ", then ".join(f"`{c}`" for c in commands) + f" again{flags}")
    return rec


def _each_search(workdir: str, resume: bool = False) -> list[str]:
    """The command of each search the tune record holds, in the order they finished: a stale tune stage is every
    search run again (its latest alone was named: round 50); [] when it holds none."""
    searches = (load(workdir, "tune") or {}).get("searches") or {}
    order = sorted(searches, key=lambda n: (str(searches[n].get("finished_at") or ""), n))
    return [command("tune", workdir, search=name, resume=resume) for name in order]
