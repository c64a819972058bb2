"""``speciesfam`` command: one subcommand per stage; each calls the library and nothing more.

The flags of ``catalog``, ``clean``, ``tune`` and ``demo`` are generated from the config dataclasses
(``speciesfam.config``, via ``speciesfam.flags``): defaults and help live there only. Heavy frameworks are
imported inside the subcommand that needs them, so ``speciesfam --help`` is instant.

Exit codes: 0 done; 1 the work ran but produced nothing usable (e.g. every trial failed); 2 a user error
(bad flag or value, missing input, stage run out of order), printed as one line. Anything else is a bug and
shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .config import CatalogConfig, CleanConfig, DemoConfig, TuneConfig, KINDS
from .errors import ConfigError, SearchFailedError, SpeciesfamError
from .flags import OneLineParser, add_config_flags, config_fields, config_from_args, converter, flag_of


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="speciesfam", description="Clean an image collection of living things "
                                "and find its best classifier with a distributed Ray Tune search.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fetch", help="download a reference dataset and lay it out for `catalog`")
    f.add_argument("dataset", choices=["rare-species"], help="rare-species: EOL Rare Species (imageomics/rare-species)")
    f.add_argument("--out", required=True, help="local folder for the download and its manifest.csv")
    f.add_argument("--from", dest="source", default=None,
                   help="a local copy of the hub repo (air-gapped machines): skip the download")
    f.add_argument("--label", default="family", help="rank used as the label: phylum class order family genus species")
    f.add_argument("--layout", choices=["manifest", "folders"], default="manifest",
                   help="manifest.csv pointing at the download, or also hard-linked OUT/LABEL/<VALUE>/ folders")
    f.add_argument("--revision", default=None, help="hub revision (default: newest)")

    c = sub.add_parser("catalog", help="scan images into RUN/manifest.parquet (validate, dedupe, split)")
    c.add_argument("source", help="folder with one subfolder per family, or a .csv/.parquet manifest (path,label[,group])")
    c.add_argument("--workdir", required=True, help="run folder (local path, NFS, s3:// or gs://)")
    add_config_flags(c, CatalogConfig)

    cl = sub.add_parser("clean", help="CLIP embeddings with Ray Data, per-family outliers -> RUN/clean_manifest.parquet")
    cl.add_argument("--workdir", required=True, help="run folder written by `speciesfam catalog`")
    cl.add_argument("--smoke-test", action="store_true", help="CleanConfig.smoke(): a small CLIP (ViT-S-32) with "
                    "random weights, nothing downloaded (offline machines, laptops); other flags still apply")
    add_config_flags(cl, CleanConfig)

    t = sub.add_parser("tune", help="Ray Tune search; each trial trains on N Ray Train workers")
    t.add_argument("kind", choices=KINDS, help="CNNs from scratch, ImageNet backbones, or a fast head on cached "
                   "CLIP embeddings")
    t.add_argument("--workdir", required=True, help="run folder written by `speciesfam catalog` (and `clean`)")
    t.add_argument("--address", default=None, help="Ray cluster address (default RAY_ADDRESS or a local Ray)")
    add_config_flags(t, TuneConfig)

    e = sub.add_parser("export", help="best trial (CNN or probe) -> RUN/bundle (model, labels, embedder, card)")
    e.add_argument("--workdir", required=True, help="run folder with a search (`speciesfam tune`)")
    e.add_argument("--trial", default=None, help="trial id to export instead of the best")
    e.add_argument("--out", default=None, help="bundle folder (default RUN/bundle)")

    pr = sub.add_parser("predict", help="top-k families for a few files, or a folder/manifest with Ray Data")
    pr.add_argument("bundle", help="bundle folder (`speciesfam export`)")
    pr.add_argument("paths", nargs="*", help="image files (printed), or one folder (-> predictions.parquet)")
    pr.add_argument("--manifest", default=None, help="CSV/Parquet with a 'path' column (-> predictions.parquet)")
    pr.add_argument("--out", default=None, help="predictions Parquet for a folder or manifest (default "
                    "./predictions.parquet); an existing one is resumed: rows already in it are skipped")
    pr.add_argument("--top-k", type=int, default=3, help="families per image (default: 3)")
    pr.add_argument("--format", choices=["table", "json", "csv"], default=None, help="console output of image "
                    "files (default: table); a folder or --manifest writes Parquet (--out)")
    pr.add_argument("--batch-size", type=int, default=32, help="images per predictor call (default: 32)")
    pr.add_argument("--num-actors", type=converter("num_actors", int, True), default=None,
                    help="predictor actors (default, or none: one per GPU, else "
                    "one per node)")
    pr.add_argument("--cpu", action="store_true", help="CPU actors even when the cluster has GPUs")
    pr.add_argument("--address", default=None, help="Ray cluster address (default RAY_ADDRESS or a local Ray)")

    ev = sub.add_parser("evaluate", help="macro-F1, per-class report and confusion plots of a bundle on a split")
    ev.add_argument("bundle", help="bundle folder (`speciesfam export`)")
    ev.add_argument("--manifest", required=True, help="RUN/clean_manifest.parquet (or RUN/manifest.parquet), or a "
                    "new labelled set: CSV or Parquet with path and label columns (and split, to score one)")
    ev.add_argument("--split", default=None, help="the rows to score (default: test; a labelled set without a "
                    "split column is scored whole)")
    ev.add_argument("--out", default=None, help="report folder (default: beside the bundle, eval_SPLIT for its own run's manifest, else "
                    "eval_NAME-HASH, one per labelled set, split and bundle)")

    d = sub.add_parser("demo", help="every stage on the bundled demo data (offline, 3-8 minutes on 2 CPUs)")
    add_config_flags(d, DemoConfig)

    # Report and console (RUN/report.html; --verbose: the frameworks' own output, see speciesfam.console).
    r = sub.add_parser("report", help="rebuild RUN/report.html (every stage also refreshes it)")
    r.add_argument("--workdir", required=True, help="run folder")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow/Ray/Tune output on the console (it is "
                   "always kept in RUN/logs/); also accepted after the subcommand")
    from importlib.metadata import version

    p.add_argument("--version", action="version", version=f"speciesfam {version('speciesfam')}")
    p.commands = sub.choices  # type: ignore[attr-defined]  # a stray word is said by its command's parser
    return p


def tune_config(args: argparse.Namespace) -> TuneConfig:
    """TuneConfig from flags over ``TuneConfig()``, or over ``TuneConfig.smoke()`` with --smoke-test."""
    base = TuneConfig.smoke() if getattr(args, "smoke_test", False) else TuneConfig()
    cfg = config_from_args(TuneConfig, args, base, kind=args.kind)
    unused = cfg.unused(set(vars(args)))  # the flags given (argparse leaves the others out); not fields: skipped
    if unused:  # accepted (a script may pass the same flags to every kind), but not silently
        from . import console

        fields = {f.name: f for f in config_fields(TuneConfig)}
        groups = {what: [flag_of(fields[n], getattr(cfg, n)) for n in unused if unused[n] == what]
                  for what in unused.values()}
        console.say(f"tune {cfg.kind}: " + "; ".join(
            f"{', '.join(names)} {'does' if len(names) == 1 else 'do'} not "
            f"apply to {what}" for what, names in groups.items()) + "; ignored")
    return cfg


def clean_config(args: argparse.Namespace) -> CleanConfig:
    """CleanConfig from flags over ``CleanConfig()``, or over ``CleanConfig.smoke()`` with --smoke-test."""
    cfg = config_from_args(CleanConfig, args, CleanConfig.smoke() if getattr(args, "smoke_test", False) else None)
    if hasattr(args, "pretrained") and cfg.model.startswith(("local-dir:", "hf-hub:")):  # given, and not read
        raise ConfigError(f"--pretrained {'none' if args.pretrained is None else args.pretrained or repr('')} is not read with --model {cfg.model} (open_clip "
                          "loads that model's own weights); leave --pretrained out")
    return cfg.absolute()


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


def _predict(args: argparse.Namespace) -> int:
    """``predict``: files -> console (this process); a folder or --manifest -> predictions.parquet (Ray Data).
    Exit status 1 when any input could not be predicted."""
    from . import storage
    from .predict import check_counts

    check_counts(args.batch_size, args.num_actors)  # also with image files, which do not use them

    def is_folder(path: str) -> bool:  # s3://bucket/folder too; an unreachable bucket is a file that fails its row
        try:
            return storage.is_dir(path)
        except OSError:
            return False

    folders = [p for p in args.paths if is_folder(p)]
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
                                   num_actors=args.num_actors, use_gpu=not args.cpu)
        return 1 if failed(table).any() else 0
    if not args.paths:
        raise SpeciesfamError("give image files, a folder or --manifest M")
    from .predict import predict_files, print_results

    results = predict_files(args.bundle, args.paths, top_k=args.top_k)  # it checked the bundle: labels as loaded
    with open(os.path.join(args.bundle, "config.json"), encoding="utf-8") as f:
        print_results(results, args.format or "table", json.load(f)["labels"])
    return 1 if any("error" in r for r in results) else 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, say_result

    left_out = say_result(evaluate(args.bundle, args.manifest, args.split, args.out))
    run = os.path.dirname(os.path.abspath(args.bundle))  # a bundle inside a run folder: refresh its report
    if args.out is None and os.path.isdir(os.path.join(run, "stages")):
        from .report import write_report

        print(f"report: {write_report(run)}")
    return 1 if left_out else 0


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
    path = write_report(args.workdir)
    print(f"report: {path}" if path else f"speciesfam report: could not write {args.workdir}/report.html (see the "
          "warning above)")
    return 0 if path else 1


COMMANDS = {"fetch": _fetch, "catalog": _catalog, "clean": _clean, "tune": _tune, "export": _export,
            "predict": _predict, "evaluate": _evaluate, "demo": _demo, "report": _report}
STAGES = ("catalog", "clean", "tune", "export")  # keep full logs in RUN/logs/, end with a summary and the report


def _typed(args: argparse.Namespace) -> list[str]:
    """The command as typed, for the last line of its log."""
    return [OneLineParser.shown_as or "speciesfam", *getattr(args, "argv", sys.argv[1:])]


def _run_stage(args: argparse.Namespace) -> int:
    """A stage with its logs kept under RUN/logs/; it ends with a one-line summary and the report's path."""
    import contextlib
    import io

    from . import console, stage_log, stages, storage
    from .lines import summary_line
    from .locks import stage_lock
    from .report import write_report

    # a file, or a path under one ('afile/', 'afile/run'): said before its logs folder is named
    storage.require_creatable(args.workdir, "--workdir",
                              "the run (it is created)" if args.command == "catalog" else "the run")
    failed = None
    typed = _typed(args)
    held = stage_lock(args.workdir, args.command) if args.command in ("catalog", "clean") else None
    with stage_log.stage_logs(args.workdir, args.command, typed), contextlib.closing(held or io.StringIO()):
        try:
            rc = COMMANDS[args.command](args)
        except SearchFailedError as err:  # it ran and trained nothing: its summary and report still stand
            failed = err
        finally:  # renders what exists, also after a failure; not in a folder that is no run folder (refused:
            # an image folder given as --workdir, a stage before catalog) nor in one not made yet
            report = write_report(args.workdir) if stages.is_run_folder(args.workdir) else None
        console.say(summary_line(args.workdir, args.command))  # in the stage's log too
        console.say(f"report: {report}")
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
    ignored. The work is done and written by then; a Ctrl-C in Ray's own shutdown at exit printed 'Exception
    ignored in atexit callback ... KeyboardInterrupt' after the summary. (``main`` leaves Ray running: a caller
    in Python, a notebook or the tests, shares it.)"""
    import signal

    code = main(argv)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        ray.shutdown()
    return code


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line's namespace. ``predict BUNDLE`` takes its image paths also after a flag
    (``predict B --top-k 1 a.jpg b.jpg``): argparse ends a positional list at the first flag and called the
    paths after it unrecognized."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    command = parser.commands[args.command]  # its errors end 'see speciesfam COMMAND --help'
    if rest and args.command == "predict":  # after `--` every word is a path, even one starting with '-'
        before, after = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
        flags = [a for a in before if a.startswith("-")]
        if flags:
            command.error(f"unrecognized arguments: {' '.join(flags)} (a file whose name starts with '-' goes after "
                          f"'--': speciesfam predict BUNDLE -- {flags[0]})")
        args.paths = [*args.paths, *before, *after]
    elif rest:
        command.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def take_verbose(argv: list[str]) -> list[str]:
    """``argv`` without ``--verbose`` (accepted anywhere on the line, before or after the subcommand), with the
    console set up for it; call it before TensorFlow or Ray is imported: they read their log levels once."""
    from . import console

    console.setup(True if "--verbose" in argv else None)
    return [a for a in argv if a != "--verbose"]


def run(args: argparse.Namespace) -> int:
    """One parsed command, as ``speciesfam COMMAND`` runs it (a stage keeps its logs and ends with its summary
    and the report; errors in one line); returns the exit status. The job scripts run their stages through it."""
    from . import console

    who = OneLineParser.shown_as or f"speciesfam {args.command}"  # a job script's lines name the script
    console.stop_on_ctrl_c()
    try:
        # '' would be the current folder, or '/manifest.parquet'
        for name, shown in (("workdir", "--workdir"), ("out", "--out"), ("manifest", "--manifest"),
                            ("source", "SOURCE"), ("bundle", "BUNDLE")):
            if isinstance(getattr(args, name, None), str) and not getattr(args, name).strip():
                raise SpeciesfamError(f"{shown} {getattr(args, name)!r}: give a path")
        if any(not p.strip() for p in getattr(args, "paths", None) or []):
            raise SpeciesfamError("an empty image path was given (''): give a file or folder")
        if isinstance(getattr(args, "bundle", None), str):  # a bundle is a local folder: a file URI is its path
            from . import storage

            args.bundle = args.bundle if storage.is_remote(args.bundle) else storage.local_path(args.bundle)
        if args.command in STAGES:
            return _run_stage(args)
        from .stage_log import bundle_logs

        with bundle_logs(getattr(args, "bundle", None) if args.command in ("predict", "evaluate") else None,
                         args.command, _typed(args)):
            return COMMANDS[args.command](args)
    except SearchFailedError as err:
        print(f"{who}: failed: {err}", file=sys.stderr)
        return 1
    except SpeciesfamError as err:
        print(f"{who}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine's or the storage's answer (a path under a file, no bucket, no access)
        import logging

        from . import storage

        logging.getLogger("speciesfam").info("%s: %s", who, err, exc_info=True)  # the traceback: the log only
        print(f"{who}: error: {type(err).__name__}: {storage.said(err)} (check the path, its permissions and free "
              f"space; for s3:// or gs://, the bucket, the credentials and the endpoint)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        console.STOPPING.set()  # Ray's notes while it shuts down stay off the console too
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not _raised_by_an_interrupt(err):
            raise  # a bug: its traceback
        import logging

        logging.getLogger("speciesfam").info("%s: interrupted", who, exc_info=True)  # the traceback: the log only
        console.STOPPING.set()
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
