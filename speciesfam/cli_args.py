"""The ``speciesfam`` command line: its subcommands and their flags (``build_parser``), and ``parse``, which
reads a line as the command runs it. The flags of ``catalog``, ``clean``, ``tune`` and ``demo`` come from the config
dataclasses (``speciesfam.flags``): defaults and help live there only. ``tune_config`` and ``clean_config`` make a
stage's config of its flags (a resume's left-out flags from the search's record)."""

from __future__ import annotations

import argparse
import os

from .config import KINDS, CatalogConfig, CleanConfig, DemoConfig, TuneConfig
from .errors import ConfigError
from .flags import OneLineParser, add_config_flags, config_fields, config_from_args, converter, flag_of


# predict's and evaluate's: the bundle shipped to a machine where clean's local weights files are elsewhere
WEIGHTS_DIR = ("a probe bundle's embedder weights are read from this folder (a copy of the `local-dir:` model "
               "folder, or of the folder holding the --pretrained file; each checked against its sha256), not "
               "from where clean read them")

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="speciesfam", description="Clean an image collection of living things "
                                "and find its best classifier with a distributed Ray Tune search.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fetch", help="download a reference dataset and lay it out for `catalog`")
    f.add_argument("dataset", choices=["rare-species"], help="rare-species: EOL Rare Species (imageomics/rare-species)")
    f.add_argument("--out", required=True, help="local folder for the download and its manifest.csv")
    f.add_argument("--from", dest="source", default=None,
                   help="a local copy of the hub repo (air-gapped machines): skip the download")
    f.add_argument("--label", default="family", help="rank used as the label: phylum class order family genus species "
                   "(default: family)")
    f.add_argument("--layout", choices=["manifest", "folders"], default="manifest",
                   help="manifest.csv pointing at the download, or also hard-linked OUT/LABEL/<SLUG>/ folders (the "
                        "label's safe name: letters, digits and a hash)")
    f.add_argument("--revision", default=None, help="hub revision (default: newest)")

    c = sub.add_parser("catalog", help="scan images into RUN/manifest.parquet (validate, dedupe, split)")
    c.add_argument("source", help="folder with one subfolder per family, or a .csv/.parquet manifest (path,label[,group])")
    c.add_argument("--workdir", required=True, help="run folder (local path, NFS, s3:// or gs://)")
    add_config_flags(c, CatalogConfig)

    cl = sub.add_parser("clean", help="CLIP embeddings with Ray Data, per-family outliers -> RUN/clean_manifest.parquet")
    cl.add_argument("--workdir", required=True, help="run folder written by `speciesfam catalog`")
    cl.add_argument("--smoke-test", action="store_true", help="CleanConfig.smoke(): a small CLIP (ViT-S-32) with "
                    "random weights, nothing downloaded (offline machines, laptops); other flags still apply")
    cl.add_argument("--address", default=None, help="Ray cluster address (default RAY_ADDRESS or a local Ray)")
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
    pr.add_argument("--path-column", default="path", help="the --manifest's column of image paths (default: path)")
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
    pr.add_argument("--weights-dir", default=None, help=WEIGHTS_DIR)

    ev = sub.add_parser("evaluate", help="macro-F1, per-class report and confusion plots of a bundle on a split")
    ev.add_argument("bundle", help="bundle folder (`speciesfam export`)")
    ev.add_argument("--manifest", required=True, help="RUN/clean_manifest.parquet (or RUN/manifest.parquet), or a "
                    "new labelled set: CSV or Parquet with path and label columns (and split, to score one)")
    ev.add_argument("--path-column", default="path", help="a labelled set's column of image paths (default: path)")
    ev.add_argument("--label-column", default="label", help="a labelled set's column of families, read as written "
                    "(default: label)")
    ev.add_argument("--split", default=None, help="the rows to score (default: test; a labelled set without a "
                    "split column is scored whole)")
    ev.add_argument("--weights-dir", default=None, help=WEIGHTS_DIR)
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
    for command in sub.choices.values():  # `speciesfam tune probe --help` and the job scripts' help did not say it
        command.epilog = "--verbose: show TensorFlow/Ray/Tune output on the console (it is always kept in RUN/logs/)"
    p.commands = sub.choices  # type: ignore[attr-defined]  # a stray word is said by its command's parser
    return p


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


def tune_config(args: argparse.Namespace) -> TuneConfig:
    """TuneConfig from flags over ``TuneConfig()``, or over ``TuneConfig.smoke()`` with --smoke-test."""
    base = TuneConfig.smoke() if getattr(args, "smoke_test", False) else TuneConfig()
    if getattr(args, "resume", False):
        base = _as_recorded(args, base)
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


def _as_recorded(args: argparse.Namespace, base: TuneConfig) -> TuneConfig:
    """A resume's settings: each flag left out takes the value the search started with (a plain `--resume` was
    refused until every one was typed again: hostile tester round 46); a flag given is checked against it."""
    import dataclasses

    from . import storage
    from . import lines
    from .tune.record import RESOURCE_SETTINGS, SEARCH_SETTINGS, read_record

    storage_path = getattr(args, "storage_path", None) or storage.join(args.workdir, "tune")
    if not storage.is_remote(storage_path):
        storage_path = storage.filesystem(storage_path)[1]
    name = getattr(args, "name", None) or args.kind
    record = read_record(storage.join(storage_path, name)) or {}
    settings, resources = record.get("settings") or {}, record.get("resources") or {}
    if settings.get("smoke_test") and not hasattr(args, "smoke_test"):
        base = TuneConfig.smoke()
    kept = {k: v for k, v in settings.items() if k in SEARCH_SETTINGS and k != "kind" and not hasattr(args, k)}
    kept |= {k: v for k, v in resources.items() if k in RESOURCE_SETTINGS and not hasattr(args, k)}
    fields = {f.name: f for f in config_fields(TuneConfig)}
    other = [f"{flag_of(fields[k])} {getattr(args, k)} (it started with {'the default' if v is None else v})"
             for k, v in resources.items() if k in RESOURCE_SETTINGS and hasattr(args, k) and getattr(args, k) != v]
    if other:
        from . import console

        console.say(f"tune: resuming {lines.quoted(name)} with {'; '.join(other)}: its new trials get these, the "
                    "trials it restores keep what they started with")
    return dataclasses.replace(base, **kept) if kept else base


def clean_config(args: argparse.Namespace) -> CleanConfig:
    """CleanConfig from flags over ``CleanConfig()``, or over ``CleanConfig.smoke()`` with --smoke-test."""
    cfg = config_from_args(CleanConfig, args, CleanConfig.smoke() if getattr(args, "smoke_test", False) else None)
    if hasattr(args, "pretrained") and cfg.model.startswith(("local-dir:", "hf-hub:")):  # given, and not read
        given = "none" if args.pretrained is None else args.pretrained or repr("")
        raise ConfigError(f"--pretrained {given} is not read with --model {cfg.model} (open_clip loads that model's "
                          "own weights); leave --pretrained out")
    return cfg.absolute()


def use_address(address: str | None) -> None:
    """Clean's --address (its Ray starts only when something is embedded): checked now, then the RAY_ADDRESS
    that stage joins (the tune jobs took --address, clean only RAY_ADDRESS: round 53)."""
    if address:
        from .raycluster import check_reachable

        check_reachable(address, "--address")
        os.environ["RAY_ADDRESS"] = address
