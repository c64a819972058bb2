"""The whole pipeline on the bundled demo data: catalog -> clean -> tune -> export -> evaluate -> predict.

Offline-safe: CLIP runs with random weights (``pretrained=None``) and the search trains small CNNs from
scratch, so nothing is downloaded. 3-8 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from importlib import resources

from . import console, layout, stage_log, stages, storage
from .config import CleanConfig, DemoConfig, TuneConfig


def demo_images() -> str:
    """Path of the bundled demo collection (a folder per family)."""
    return str(resources.files("speciesfam") / "demo_data" / "images")


def run_demo(workdir: str | None = None, **overrides) -> dict:
    """Run every stage into ``workdir``, one short summary per stage, ending with report.html's path (full
    logs in ``RUN/logs/``). Returns the artifact paths and the predictions. Defaults: ``DemoConfig``
    (``overrides``: its fields, e.g. ``num_samples``, ``max_epochs``)."""
    cfg = dataclasses.replace(DemoConfig(), **({"workdir": workdir} if workdir else {}), **overrides)
    cfg.validate()
    storage.require_creatable(cfg.workdir, "--workdir", "the run (it is created)")  # a file: as the stages say it
    workdir = storage.local_dir(cfg.workdir)
    refuse_other_run(workdir)
    with stage_log.stage_logs(workdir, "demo"):
        return _stages(workdir, cfg)


def refuse_other_run(workdir: str) -> None:
    """Before its first line: a folder the demo may not write into. A run folder of another collection (the demo
    re-catalogued the bundled images into it, replacing the user's catalog, cleaning and galleries unsaid: round
    48), and a folder holding files of the names a run writes (refused by catalog after '[1/6] catalog')."""
    from .data.catalog_checks import refuse_files_of_yours
    from .errors import SpeciesfamError

    if stages.is_run_folder(workdir):
        source = ((stages.load(workdir, "catalog") or {}).get("config") or {}).get("source")
        if not source or os.path.realpath(source) != os.path.realpath(demo_images()):
            raise SpeciesfamError(f"--workdir {workdir} is the run folder of another collection "
                                  f"({source or 'its catalog record is gone'}): the demo would replace its catalog, "
                                  f"cleaning and searches; give another --workdir (the default is "
                                  f"{DemoConfig().workdir})")
    elif os.path.isdir(workdir):  # a folder of the user's (their images: the next catalog took logs/ as a family)
        theirs = sorted(n for n in set(os.listdir(workdir)) - set(layout.RUN_ENTRIES) if not _nobodys(n))
        if theirs:  # a .DS_Store or Thumbs.db is nobody's data (round 50); a .git or .env is somebody's (round 51)
            from .lines import some

            raise SpeciesfamError(f"--workdir {workdir} holds files that are not a run's ({some(theirs, quote=True)})"
                                  f": the demo writes its run folder there; give a new or empty folder (the default "
                                  f"is {DemoConfig().workdir})")
    refuse_files_of_yours(workdir)


# what an operating system leaves in any folder it shows (macOS's, beside sources.SYSTEM_FILES' Windows ones)
OS_DROPPINGS = {".ds_store", ".localized", ".spotlight-v100", ".trashes", ".fseventsd", ".temporaryitems"}


def _nobodys(name: str) -> bool:
    """Whether entry ``name`` of a folder is no one's data: a file an operating system writes there (.DS_Store,
    a ._x AppleDouble, Thumbs.db), not a hidden one of the user's (.git, .env)."""
    from .data.sources import HIDDEN, skip_reason

    why = skip_reason(name)
    return bool(why) and why != HIDDEN or name.lower() in OS_DROPPINGS or name.startswith("._")


def stop_if_interrupted(workdir: str, cfg: DemoConfig | None = None) -> None:
    """After the search: raise KeyboardInterrupt (the CLI exits 130) when SIGINT/SIGTERM ended it. Tune stops
    on the signal and returns; exporting its cut-short trials would replace an earlier demo's bundle. The hint
    names the flags the demo was given (``cfg``), so the run it starts over is the same one."""
    if stages.summary(workdir, "tune").get("interrupted"):
        console.say(f"demo: stopped after the interrupted search, nothing exported; `{_again(workdir, cfg)}` starts "
                    "over")
        raise KeyboardInterrupt


def _again(workdir: str, cfg: DemoConfig | None) -> str:
    """The ``speciesfam demo`` command of this run: its --workdir unless the default, and each flag whose value
    is not the default."""
    import shlex

    from .flags import config_fields, flag_of

    default, words = DemoConfig(), ["speciesfam", "demo"]
    if workdir.rstrip("/") != os.path.abspath(default.workdir).rstrip("/"):
        words += ["--workdir", shlex.quote(workdir)]
    for f in config_fields(DemoConfig):
        value = getattr(cfg or default, f.name)
        if f.name != "workdir" and value != getattr(default, f.name):
            words += [flag_of(f, value), shlex.quote(str(value))]
    return " ".join(words)


def _start_over(search: str) -> None:
    """Remove the demo's last search: the demo runs again, it does not resume, and a catalog and clean with the
    same outcome keep their run ids, so its search name was refused on the same split (round 73)."""
    import shutil

    if os.path.islink(search) or os.path.isfile(search):
        os.unlink(search)
    elif os.path.isdir(search):
        shutil.rmtree(search)


def _stages(workdir: str, cfg: DemoConfig) -> dict:
    from .data.catalog import run_catalog
    from .data.clean import run_clean
    from .evaluate import evaluate
    from .export import export_bundle
    from .predict import predict_files
    from .summaries import summary_line
    from .report import write_report
    from .tune.search import run_search

    t0 = time.time()
    nest = functools.partial(console.indented, " " * 6)  # each stage's own lines (its trials') under its step

    def done(stage: str) -> None:  # each stage ends with its summary; the report is rebuilt after every stage
        write_report(workdir)
        with nest():
            console.say(summary_line(workdir, stage, resume_hint=None))  # the demo re-runs, it does not resume

    console.say(f"[1/6] catalog {demo_images()}")
    with nest():
        manifest = run_catalog(demo_images(), workdir)
    done("catalog")
    console.say("[2/6] clean: open_clip ViT-S-32 embeddings (random weights: offline) with Ray Data; outliers "
                "(robust z-score), label issues (cleanlab), near-duplicates")
    with nest():
        cleaned = run_clean(workdir, CleanConfig.smoke())
    done("clean")
    console.say("[3/6] tune: scratch CNNs, each trial on Ray Train workers (MultiWorkerMirroredStrategy)")
    tune_cfg = TuneConfig.smoke(kind="scratch", num_samples=cfg.num_samples, max_epochs=cfg.max_epochs,
                                workers_per_trial=2,
                                # BN statistics need a few epochs before val F1 means much
                                grace_period=min(5, cfg.max_epochs), name="demo")
    with nest():
        _start_over(storage.join(workdir, layout.TUNE_DIR, tune_cfg.name))
        run_search(workdir, tune_cfg)
    done("tune")
    stop_if_interrupted(workdir, cfg)
    console.say("[4/6] export the best checkpoint")
    with nest():
        bundle = export_bundle(workdir)
    done("export")
    console.say("[5/6] evaluate the bundle on the test split")
    with nest():
        scores = evaluate(bundle, layout.path(workdir, layout.CLEAN_MANIFEST), "test")
        console.say(f"test macro-F1 {scores['test_macro_f1']:.3f}, accuracy {scores['test_accuracy']:.3f} "
                    f"on {scores['images']} images")
    test = cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "test")].groupby("label").head(1)
    console.say("[6/6] predict on one test image per family")
    preds = predict_files(bundle, test["path"].tolist(), top_k=3)  # CNN or probe bundle alike
    truth = dict(zip(test["path"], test["label"]))
    with nest():
        for p in preds:
            fam, prob = p["top"][0]
            console.say(f"{p['path'].rsplit('/', 2)[-2]}/{p['path'].rsplit('/', 1)[-1]}: {fam} ({prob:.2f})"
                        f"  {'correct' if fam == truth[p['path']] else 'wrong'}")
    artifacts = {name: storage.join(workdir, name) for name in (
        layout.MANIFEST, layout.CATALOG_MD, layout.UNREADABLE, layout.EMBEDDINGS, layout.CLEAN_MANIFEST,
        layout.REMOVED, layout.LABEL_ISSUES, layout.NEAR_DUPLICATES, layout.GALLERY, layout.CLEAN_MD,
        layout.CLASS_COUNTS, layout.TUNE_DIR, layout.TRIALS, layout.TRIALS_MD, layout.SEARCH_PROGRESS, "eval_test")}
    artifacts["bundle"] = bundle
    report = write_report(workdir)
    artifacts["report"] = report
    removed = int((cleaned["status"] == "removed").sum())
    console.say(f"\nDone in {time.time() - t0:.0f} s: {len(manifest)} files catalogued, {removed} outliers removed, "
                f"bundle in {bundle}, full logs in {storage.join(workdir, 'logs')}.")
    console.say(f"report: {report}")
    return {"artifacts": artifacts, "predictions": preds}
