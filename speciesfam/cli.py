"""``speciesfam`` command: one subcommand per stage; each calls the library and nothing more.

Its subcommands and flags are ``speciesfam.cli_args`` (those of ``catalog``, ``clean``, ``tune`` and ``demo``
generated from the config dataclasses: defaults and help live there only). Heavy frameworks are imported inside
the subcommand that needs them, so ``speciesfam --help`` is instant.

Exit codes: 0 done; 1 the work ran but produced nothing usable (e.g. every trial failed); 2 a user error
(bad flag or value, missing input, stage run out of order), printed as one line. Anything else is a bug and
shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .config import CatalogConfig, DemoConfig
from .errors import SearchFailedError, SpeciesfamError
from .cli_args import clean_config, parse, tune_config, use_address
from .flags import OneLineParser, config_from_args


def _fetch(args: argparse.Namespace) -> int:
    from .data.fetch import fetch_rare_species

    fetch_rare_species(args.out, args.source, label=args.label, folders=args.layout == "folders",
                       revision=args.revision)
    print(open(f"{args.out}/FETCH.md").read())
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from .data.catalog import run_catalog

    run_catalog(args.source, args.workdir, config_from_args(CatalogConfig, args))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from .data.clean import run_clean

    use_address(getattr(args, "address", None))
    run_clean(args.workdir, clean_config(args))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .tune.search import run_search

    from . import stages

    run_search(args.workdir, tune_config(args), address=args.address)

    # a search stopped by SIGINT/SIGTERM kept its state: not a success (exit 130, as Ctrl-C); its summary line
    # says how to continue it
    return 130 if stages.summary(args.workdir, "tune").get("interrupted") else 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_bundle

    export_bundle(args.workdir, args.trial, args.out)
    return 0


def _unread_weights_dir(args: argparse.Namespace) -> None:
    """A note that --weights-dir is not read: a CNN bundle carries its whole model, and a probe bundle whose
    embedder reads no local file (a tag, a hub model, random weights, a factory) has nothing to read there."""
    from .bundle import CONFIG
    from .bundle_embedder import reads_local_files

    if args.weights_dir:
        try:
            with open(os.path.join(args.bundle, CONFIG), encoding="utf-8") as f:
                config = json.load(f)
            local = reads_local_files(config.get("embedder") or {})
        except (OSError, ValueError, AttributeError):
            return  # the bundle's own check says what is wrong with it
        why = ("this bundle is a CNN's, whose model.keras holds all its weights" if config.get("kind") == "cnn" else
               "this bundle's embedder reads no local weights file" if not local else "")
        if why:
            from .console import say_err

            say_err(f"{args.command}: note: --weights-dir {args.weights_dir} is not read: {why}")


def _predict(args: argparse.Namespace) -> int:
    """``predict``: files -> console (this process); a folder or --manifest -> predictions.parquet (Ray Data).
    Exit status 1 when any input could not be predicted."""
    from . import storage
    from .predict import check_counts

    _unread_weights_dir(args)
    check_counts(args.batch_size, args.num_actors)  # also with image files, which do not use them

    def is_folder(path: str) -> bool:  # s3://bucket/folder too; an unreachable bucket is a file that fails its row
        try:
            return storage.is_dir(path)
        except OSError:
            return False

    folders = [p for p in args.paths if is_folder(p)]
    if args.path_column != "path" and not args.manifest:  # it would be ignored: a folder's rows are its files
        raise SpeciesfamError(f"--path-column {args.path_column} names a column of --manifest, and none is given: "
                              "give --manifest M, or leave --path-column out")
    if args.manifest or folders or args.out:
        if len(args.paths) > 1 or (args.manifest and args.paths):
            given = f"{len(args.paths)} path{'s' * (len(args.paths) > 1)}"
            given += " and --manifest" if args.manifest else ""
            given += f" ({len(folders)} of them folders)" if folders else ""
            raise SpeciesfamError(f"predict got {given}: batch prediction (to a file, with Ray Data) takes one "
                                  "folder or --manifest M; one or more image files, with no folder, no --manifest "
                                  "and no --out, are predicted here and printed")
        if args.format:  # it would be ignored: the user expects that format
            raise SpeciesfamError(f"--format {args.format} is how image files are printed here; a folder or --manifest "
                                  "is written to a Parquet file (--out, default ./predictions.parquet): leave "
                                  "--format out, and read the file with pandas.read_parquet")
        from .predict import failed, predict_collection
        from .raycluster import init_ray

        if args.address:
            init_ray(args.address)
        table = predict_collection(args.bundle, args.out, source=(folders or [None])[0],
                                   manifest=args.manifest, top_k=args.top_k, batch_size=args.batch_size,
                                   num_actors=args.num_actors, use_gpu=not args.cpu, weights_dir=args.weights_dir,
                                   path_column=args.path_column)
        return 1 if failed(table).any() else 0
    if not args.paths:
        raise SpeciesfamError("give image files, a folder or --manifest M")
    from .console import say_err
    from .predict import files_outcome, predict_files, print_results

    if args.address:  # read by a batch prediction only (hostile tester round 43: silently ignored)
        say_err(f"predict: note: --address {args.address} is not read for image files, which are predicted here; "
                "a folder or --manifest is predicted on the cluster")
    results = predict_files(args.bundle, args.paths, top_k=args.top_k, weights_dir=args.weights_dir)  # it checked the bundle: labels as loaded
    with open(os.path.join(args.bundle, "config.json"), encoding="utf-8") as f:
        print_results(results, args.format or "table", json.load(f)["labels"])
    return files_outcome(results, args.bundle)


def _evaluate(args: argparse.Namespace) -> int:
    from . import storage
    from .evaluate import evaluate
    from .evaluate_out import say_result

    _unread_weights_dir(args)
    left_out = say_result(evaluate(args.bundle, args.manifest, args.split, args.out, weights_dir=args.weights_dir,
                                   columns={"path": args.path_column, "label": args.label_column}))
    run = os.path.dirname(os.path.abspath(args.bundle))  # a bundle inside a run folder: refresh its report, for
    # --out in that folder too (RUN/eval_test given by name left the report saying to run evaluate: round 47)
    inside = args.out is None or (not storage.is_remote(args.out) and storage.within(os.path.abspath(args.out), run))
    if inside and os.path.isdir(os.path.join(run, "stages")):
        from .console import say
        from .report import write_report

        say(_report_line(write_report(run), run, "evaluate"))  # it said 'report: None' (round 60)
    return 1 if left_out else 0


def _report_line(report: str | None, workdir: str, command: str) -> str:
    """'report: PATH', or where the log of ``command`` says why the page was not written ('report: None' when
    report.html was made a folder: round 50)."""
    from . import storage

    return f"report: {report}" if report else \
        f"report: not written (why: {storage.join(workdir, 'logs', command + '.log')})"


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    from dataclasses import asdict

    run_demo(**asdict(config_from_args(DemoConfig, args)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from . import layout, stages, storage
    from .report import write_report

    if not storage.exists(args.workdir):
        raise SpeciesfamError(f"--workdir {args.workdir} does not exist; give a run folder made by `speciesfam "
                              "catalog` (or `speciesfam demo`)")
    if not stages.is_run_folder(args.workdir):
        # an image folder or any other: writing report.html there would add a file the next catalog reads
        raise SpeciesfamError(f"--workdir {args.workdir} is not a run folder (no {layout.STAGES}/catalog.json, nor "
                              f"catalog's {layout.MANIFEST}); give one made by `speciesfam catalog` (or `speciesfam "
                              "demo`)")
    storage.require_creatable(args.workdir, "--workdir", "the report (report.html)")
    stages.refuse_links(args.workdir)
    from .report_search import running_now, trials_damage

    path = write_report(args.workdir)
    running, damage = running_now(args.workdir), trials_damage(args.workdir)  # said in the page alone (rounds 53, 54)
    if running:
        print(f"report: {running[0].lower()}{running[1:]}")
    if damage:
        print(f"report: {damage}")
    print(f"report: {path}" if path else f"speciesfam report: could not write {args.workdir}/report.html (see the "
          "warning above)")
    return 0 if path else 1


COMMANDS = {"fetch": _fetch, "catalog": _catalog, "clean": _clean, "tune": _tune, "export": _export,
            "predict": _predict, "evaluate": _evaluate, "demo": _demo, "report": _report}
STAGES = ("catalog", "clean", "tune", "export")  # keep full logs in RUN/logs/, end with a summary and the report
# commands that keep their logs in RUN/logs/ when given the run's own bundle, and what their exit status 1 means
LEFT_OUT = {"predict": "some inputs could not be predicted", "evaluate": "some rows were not scored"}


def _typed(args: argparse.Namespace) -> list[str]:
    """The command as typed, for the last line of its log."""
    return [OneLineParser.shown_as or "speciesfam", *getattr(args, "argv", sys.argv[1:])]


def _run_stage(args: argparse.Namespace) -> int:
    """A stage with its logs kept under RUN/logs/; it ends with a one-line summary and the report's path."""
    import contextlib
    import io

    from . import console, interrupts, stage_log, stages, storage
    from .summaries import summary_line
    from .locks import stage_lock
    from .report import write_report

    # a file, or a path under one ('afile/', 'afile/run'): said before its logs folder is named
    storage.require_creatable(args.workdir, "--workdir",
                              "the run (it is created)" if args.command == "catalog" else "the run")
    failed = None
    typed = _typed(args)
    held = stage_lock(args.workdir, args.command) if args.command in ("catalog", "clean") else None
    with stage_log.stage_logs(args.workdir, args.command, typed), contextlib.closing(held or io.StringIO()), \
            interrupts.interrupts_holdable():
        try:
            rc = COMMANDS[args.command](args)
        except SearchFailedError as err:  # it ran and trained nothing: its summary and report still stand
            failed = err
        finally:  # renders what exists, also after a failure; not in a folder that is no run folder (refused:
            # an image folder given as --workdir, a stage before catalog) nor in one not made yet
            report = write_report(args.workdir) if stages.is_run_folder(args.workdir) else None
        console.say(summary_line(args.workdir, args.command))  # in the stage's log too
        console.say(_report_line(report, args.workdir, args.command))
        if failed is not None:
            raise failed  # `speciesfam COMMAND: failed: ...`, exit 1
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = take_verbose(list(sys.argv[1:] if argv is None else argv))
    args = parse(argv)
    args.argv = argv  # the stage's log records the command as typed
    return run(args)


def entry(argv: list[str] | None = None) -> int:
    """The ``speciesfam`` command and the job scripts: ``main``, then the Ray it started shut down with Ctrl-C
    and SIGTERM ignored. The work is done and written by then; a Ctrl-C in Ray's own shutdown at exit printed 'Exception
    ignored in atexit callback ... KeyboardInterrupt' after the summary. (``main`` leaves Ray running: a caller
    in Python, a notebook or the tests, shares it.)"""
    from . import cluster_watch

    cluster_watch.ARMED.set()  # this process is the command's: a gone cluster ends it, said (cluster_watch.py)
    code = main(argv)
    if cluster_watch.GONE.is_set():  # ray.shutdown would wait on the gone cluster, then Ray ends the process
        cluster_watch.end(code or 1)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        _shutdown_ignoring_signals(ray)
    return code


def _shutdown_ignoring_signals(ray) -> None:
    """``ray.shutdown()`` with Ctrl-C and SIGTERM ignored (in the 2 s after a search's summary they ended the
    command with 1 or 143 and left Ray's daemons running: round 53). Ray's core worker puts SIGTERM's default
    action back as it shuts down, before the ~1 s of stopping its daemons, so they are ignored again right after
    it (a SIGTERM there still exited 143: round 54)."""
    import signal

    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    ignore()
    state = getattr(getattr(getattr(ray, "_private", None), "state", None), "state", None)
    disconnect = getattr(state, "disconnect", None)  # called between the core worker's shutdown and the daemons'
    if callable(disconnect):
        def ignore_then_disconnect(*args, **kwargs):
            ignore()
            return disconnect(*args, **kwargs)
        state.disconnect = ignore_then_disconnect
    try:
        ray.shutdown()
    finally:
        if callable(disconnect):
            del state.disconnect  # the class's own method again


def take_verbose(argv: list[str]) -> list[str]:
    """``argv`` without ``--verbose`` (accepted anywhere on the line, before or after the subcommand), with the
    console set up for it; call it before TensorFlow or Ray is imported: they read their log levels once."""
    from . import console

    console.setup(True if "--verbose" in argv else None)
    return [a for a in argv if a != "--verbose"]


def run(args: argparse.Namespace) -> int:
    """One parsed command, as ``speciesfam COMMAND`` runs it (a stage keeps its logs and ends with its summary
    and the report; errors in one line); returns the exit status. The job scripts run their stages through it."""
    from . import cluster_watch, console, interrupts, pathtext, storage

    who = OneLineParser.shown_as or f"speciesfam {args.command}"  # a job script's lines name the script
    cluster_watch.WHO[0] = who
    interrupts.stop_on_ctrl_c()
    try:
        # '' would be the current folder, or '/manifest.parquet'
        for name, shown in (("workdir", "--workdir"), ("out", "--out"), ("manifest", "--manifest"),
                            ("source", "SOURCE"), ("bundle", "BUNDLE"), ("weights_dir", "--weights-dir")):
            if isinstance(getattr(args, name, None), str) and not getattr(args, name).strip():
                raise SpeciesfamError(f"{shown} {getattr(args, name)!r}: give a path")
            if isinstance(getattr(args, name, None), str):
                pathtext.check_utf8(getattr(args, name), shown)
        if any(not p.strip() for p in getattr(args, "paths", None) or []):
            raise SpeciesfamError("an empty image path was given (''): give a file or folder")
        for path in getattr(args, "paths", None) or []:  # a file of such a name is a row that says so
            if os.path.isdir(path):
                pathtext.check_utf8(path, "the folder")
        if isinstance(getattr(args, "bundle", None), str):  # a bundle is a local folder: a file URI is its path
            args.bundle = args.bundle if storage.is_remote(args.bundle) else storage.local_path(args.bundle)
        if args.command in STAGES:
            return _run_stage(args)
        from .stage_log import bundle_logs, ended_with

        with bundle_logs(args.bundle if args.command in LEFT_OUT else None, args.command, _typed(args)):
            rc = COMMANDS[args.command](args)
            if rc == 1 and args.command in LEFT_OUT:  # the log's last line: not 'ok'
                ended_with(args.command, f"exit 1: {LEFT_OUT[args.command]}")
            return rc
    except SearchFailedError as err:
        if not cluster_watch.GONE.is_set():  # its trials failed as the cluster went away: that line said it
            print(f"{who}: failed: {err}", file=sys.stderr)
        return 1
    except SpeciesfamError as err:
        print(f"{who}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # what reads the console closed it (`| head`) as a result was printed: as Unix tools
        console.discard(sys.stdout)
        return 141  # 128 + SIGPIPE; it said 'error: BrokenPipeError ... check the path' (round 46)
    except OSError as err:  # the machine's or the storage's answer (a path under a file, no bucket, no access)
        import logging

        logging.getLogger("speciesfam").info("%s: %s", who, err, exc_info=True)  # the traceback: the log only
        # Ray's own connection errors ('Could not find any running Ray instance', 'ray client connection timeout')
        # are about the cluster's address, not storage (round 44)
        hint = ("check the cluster's address (--address or RAY_ADDRESS) and that its head is up" if isinstance(
            err, ConnectionError) and "ray" in str(err).lower() else "check the path, its permissions and free "
                "space; for s3:// or gs://, the bucket, the credentials and the endpoint")
        print(f"{who}: error: {type(err).__name__}: {pathtext.said(err)} ({hint})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupts.STOPPING.set()  # Ray's notes while it shuts down stay off the console too
        import logging

        logging.getLogger("speciesfam").info("%s: interrupted", who, exc_info=True)  # where: the log only
        if cluster_watch.GONE.is_set():  # the cluster went away (its line said so), no Ctrl-C
            return 1
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if cluster_watch.GONE.is_set():  # Ray's errors about the gone cluster: the log's; its line said it
            import logging

            logging.getLogger("speciesfam").info("%s: after the cluster went away", who, exc_info=True)
            return 1
        if not _raised_by_an_interrupt(err):
            raise  # a bug: its traceback
        import logging

        logging.getLogger("speciesfam").info("%s: interrupted", who, exc_info=True)  # the traceback: the log only
        interrupts.STOPPING.set()
        print(f"{who}: interrupted", file=sys.stderr)
        return 130


def _raised_by_an_interrupt(err: BaseException) -> bool:
    """Whether ``err`` came out of handling a Ctrl-C: a KeyboardInterrupt inside a library's lock or queue can
    surface as another exception (Ray Data's iterator: 'RuntimeError: release unlocked lock', a 60-line
    traceback once in 8 interrupts of clean; hostile tester)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__ or err.__context__
    return False


if __name__ == "__main__":
    sys.exit(entry())
