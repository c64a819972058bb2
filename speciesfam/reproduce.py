"""The report's "How to reproduce" section: each stage's command rebuilt from its record (only the flags whose
values differ from where the command starts), in the order the stages and searches ran, and the versions of
the stack that ran them."""

from __future__ import annotations

import json
import os
import platform
import shlex
from importlib import metadata

from . import layout, stages, storage

VERSION_PACKAGES = ("speciesfam", "ray", "tensorflow", "keras", "torch", "open_clip_torch", "scikit-learn", "numpy",
                    "pandas", "pyarrow", "optuna", "cleanlab")


def command(stage: str, rec: dict, workdir: str = "RUN") -> str:
    """The shell command that re-runs ``stage`` with its recorded config: the flags whose values differ from
    what the command starts from (``--smoke-test``'s settings when it was given), each value shell-quoted, after
    the PYTHONPATH that finds the user's own modules it names."""
    conf = dict(rec.get("config", {}))
    return _pythonpath(_own_modules(conf)) + _command(stage, conf, workdir)


def _command(stage: str, conf: dict, workdir: str) -> str:
    from . import config as cfgmod
    from .flags import config_fields, flag_of

    conf.pop("resume", None)  # a resumed search is reproduced by its own command: nothing to resume in a new run
    klass = {"catalog": cfgmod.CatalogConfig, "clean": cfgmod.CleanConfig, "tune": cfgmod.TuneConfig}.get(stage)
    kind = conf.pop("kind", None)
    head = stages.COMMAND.get(stage, f"speciesfam {stage} --workdir RUN").replace("KIND", str(kind or "KIND"))
    head = head.replace("SOURCE", shlex.quote(str(conf.pop("source", "SOURCE"))))
    head = head.replace("--workdir RUN", f"--workdir {shlex.quote(workdir)}")
    if stage == "export":  # the trial it was given, and a bundle folder other than RUN/bundle
        default_out = os.path.join(workdir, layout.BUNDLE)
        flags = [f"--trial {shlex.quote(str(conf['trial']))}"] if conf.get("trial") else []
        flags += [f"--out {shlex.quote(conf['out'])}"] if conf.get("out") not in (None, default_out) else []
        return " ".join([head, *flags])
    if klass is None:
        return head
    smoke = bool(conf.pop("smoke_test", False)) and klass is cfgmod.TuneConfig
    base = klass.smoke() if smoke else klass()
    unread = cfgmod.TuneConfig(kind=kind, scheduler=conf.get("scheduler", "asha")).unused(set(conf)) \
        if stage == "tune" and kind else {}  # flags this search does not read (the command would name them)
    flags = ["--smoke-test"] if smoke else []
    for f in config_fields(klass):
        defaults = [getattr(base, f.name)]
        if f.name == "grace_period" and defaults == [None]:  # recorded as the grace in force, the default's too
            defaults.append(cfgmod.TuneConfig(max_epochs=conf.get("max_epochs", base.max_epochs)).grace)
        if f.name == "seed" and stage == "tune" and defaults == [None]:  # recorded as the name's, taken again
            defaults.append(cfgmod.name_seed(conf.get("name") or str(kind)))
        if f.name not in conf or f.name in unread or conf[f.name] in defaults:
            continue
        if f.name == "pretrained" and str(conf.get("model")).startswith(("local-dir:", "hf-hub:")):
            continue  # not read with such a model (the command refuses it)
        value, flag = conf[f.name], flag_of(f, conf[f.name])
        if isinstance(value, bool):
            flags.append(flag)
        else:
            text = "none" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)
            # a value starting with '-' (a column '-family') is taken by argparse for a flag unless joined by '='
            flags.append(f"{flag}={shlex.quote(text)}" if text.startswith("-") else f"{flag} {shlex.quote(text)}")
    return " ".join([head, *flags])


def _own_modules(conf: dict) -> list[str]:
    """The user's modules a stage's settings name (--space, a module:attr searcher, scheduler or embedder, a
    'model': 'module:attr' in --extra): the command needs them importable."""
    named = [conf.get("space")] + [v.partition(":")[0] for v in (conf.get("searcher"), conf.get("scheduler"),
                                                                 conf.get("embedder"),
                                                                 (conf.get("extra") or {}).get("model"))
                                   if isinstance(v, str) and ":" in v]
    return [m for m in named if isinstance(m, str) and m and m.split(".")[0] not in ("search_spaces", "speciesfam")]


def _pythonpath(modules: list[str]) -> str:
    """'PYTHONPATH=FOLDERS ' for modules outside the installed packages, found where this process finds them (a
    module it cannot find: its name, as a reminder); '' when there is none."""
    import importlib.util
    import sysconfig

    site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    folders = []
    for module in modules:
        try:
            origin = importlib.util.find_spec(module).origin
        except (ImportError, AttributeError, ValueError):
            origin = None
        if not origin or not os.path.isfile(origin):
            folders.append(f"FOLDER_OF_{module.split('.')[0]}")
            continue
        root = os.path.dirname(origin)  # up one folder per dotted part (a package's __init__.py: one more)
        for _ in range(module.count(".") + (os.path.basename(origin) == "__init__.py")):
            root = os.path.dirname(root)
        if os.path.realpath(root) not in site and root not in folders:
            folders.append(root)
    return f"PYTHONPATH={shlex.quote(os.pathsep.join(folders))} " if folders else ""


def versions() -> list[tuple[str, str]]:
    """Python and the installed versions of the stack (from package metadata: nothing heavy is imported)."""
    out = [("python", platform.python_version()), ("platform", platform.platform())]
    for name in VERSION_PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return out


def _sources_first(searches: list[tuple[str | None, dict]]) -> list[dict]:
    """Records of searches (name, record) in the order they ended, except that a search warm-started from
    another (``--init-from NAME``) comes after it: a finished search resumed later ends last, yet the searches
    started from it need it first (run in the listed order, they were refused)."""
    names = {n for n, _ in searches}
    pending = sorted(searches, key=lambda nr: str(nr[1].get("finished_at") or ""))
    out: list[dict] = []
    placed: set = set()
    while pending:
        ready = [i for i, (n, r) in enumerate(pending)
                 if (r.get("config") or {}).get("init_from") in placed | {n} or
                 (r.get("config") or {}).get("init_from") not in names]
        name, rec = pending.pop(ready[0] if ready else 0)  # none ready: a loop no run can have; time order
        out.append(rec)
        placed.add(name)
    return out


def ended(rec: dict) -> str:
    """How a stage's run ended, as the section says it: a search stopped early or that trained nothing is not
    'finished' (a search whose every trial failed read as one that did)."""
    summary = rec.get("summary") or {}
    if summary.get("interrupted"):
        return "interrupted"
    return "trained nothing, ended" if summary.get("ok") == 0 and "trials" in summary else "finished"


def reproduce(workdir: str, records: dict) -> dict:
    if not storage.is_remote(workdir):  # commands that work from any folder, whatever `report` was given
        workdir = os.path.abspath(workdir)
    runs = []
    for s, rec in records.items():  # every search on the same catalog and clean runs, in the order they ended
        latest = (rec.get("summary") or {}).get("experiment")
        earlier = [(n, {"config": e["config"], "finished_at": e.get("finished_at"), "summary": e.get("summary")})
                   for n, e in (rec.get("searches") or {}).items() if n != latest]  # the record sorts by name
        runs += [(s, r) for r in _sources_first([*earlier, (latest, rec)])]
    # a search that trained nothing made nothing later stages read: its command would only fail again (its too
    # small --time-budget, say: hostile tester round 43); the section names it instead
    idle = [(s, r) for s, r in runs if s == "tune" and (r.get("summary") or {}).get("ok") == 0]
    steps = [{"stage": s, "command": command(s, r, workdir) + _trial_note(s, r), "finished_at": r.get("finished_at"),
              "ended": ended(r), "run_id": r.get("run_id"),
              "config": json.dumps(r.get("config", {}), indent=1, sort_keys=True, default=str)}
             for s, r in runs if (s, r) not in idle]
    left_out = [f"search {(r.get('config') or {}).get('name') or (r.get('summary') or {}).get('experiment')!r} "
                f"({ended(r)})" for _, r in idle]
    return {"steps": steps, "left_out": left_out, "versions": versions(), "workdir": workdir}


def _trial_note(stage: str, rec: dict) -> str:
    """A shell comment after an export of a chosen trial: a search run again draws other trial ids."""
    trial = (rec.get("config") or {}).get("trial") if stage == "export" else None
    return (f"   # {trial}: this run's trial id; a search run again draws new ids: give its trial of the same "
            "settings (RUN/trials.csv)") if trial else ""
