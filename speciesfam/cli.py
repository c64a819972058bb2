"""``speciesfam`` command: one subcommand per stage; each calls the library and nothing more.

Heavy frameworks are imported inside the subcommand that needs them, so ``speciesfam --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys


def _none(value: str) -> str | None:
    return None if value.lower() in ("none", "null", "") else value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speciesfam", description="Clean an image collection of living things "
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
    c.add_argument("--val-fraction", type=float, default=0.15)
    c.add_argument("--test-fraction", type=float, default=0.15)
    c.add_argument("--min-images", type=int, default=6, help="smaller families are excluded (reported)")
    c.add_argument("--group-split", action="store_true", help="keep each 'group' (e.g. species) in one split")
    c.add_argument("--seed", type=int, default=0)

    cl = sub.add_parser("clean", help="CLIP embeddings with Ray Data, per-family outliers -> RUN/clean_manifest.parquet")
    cl.add_argument("--workdir", required=True)
    cl.add_argument("--model", default="ViT-B-32", help="open_clip architecture or hf-hub:ORG/NAME (default ViT-B-32)")
    cl.add_argument("--pretrained", type=_none, default="laion2b_s34b_b79k",
                    help="open_clip tag, local weights file, or 'none' for random weights (offline)")
    cl.add_argument("--embedder", default=None, help="your own embedder as module:factory")
    cl.add_argument("--detector", default="isolation_forest", help="isolation_forest | lof | centroid")
    cl.add_argument("--contamination", type=float, default=0.05, help="share of each family to remove")
    cl.add_argument("--min-per-family", type=int, default=6)
    cl.add_argument("--zero-shot", action="store_true",
                    help="also remove images CLIP zero-shot calls a map, drawing, text, label or diagram")
    cl.add_argument("--zero-shot-threshold", type=float, default=0.5)
    cl.add_argument("--batch-size", type=int, default=32)
    cl.add_argument("--num-actors", type=int, default=None, help="embedding actors (default: one per GPU)")

    t = sub.add_parser("tune", help="Ray Tune search; each trial trains on N Ray Train workers")
    t.add_argument("kind", choices=["scratch", "transfer", "probe"],
                   help="CNNs from scratch, ImageNet backbones, or a fast head on cached CLIP embeddings")
    t.add_argument("--workdir", required=True)
    t.add_argument("--space", default=None, help="module with get_search_space(smoke) (default search_spaces.KIND)")
    t.add_argument("--searcher", default="optuna", help="optuna (TPE) | hebo | bayesopt | random | grid")
    t.add_argument("--scheduler", default="asha", help="asha | hyperband | fifo")
    t.add_argument("--num-samples", type=int, default=None, help="trials (default 8; 2 with --smoke-test)")
    t.add_argument("--max-epochs", type=int, default=None, help="default 10 (3 with --smoke-test)")
    t.add_argument("--grace-period", type=int, default=1)
    t.add_argument("--workers-per-trial", type=int, default=2)
    t.add_argument("--cpus-per-worker", type=float, default=None, help="default 1 (0.5 with --smoke-test)")
    t.add_argument("--gpus-per-worker", type=float, default=0.0)
    t.add_argument("--cpus-per-trial", type=float, default=0.5,
                   help="CPUs of the trial process itself (it drives Ray Train, or trains a probe)")
    t.add_argument("--max-concurrent", type=int, default=1)
    t.add_argument("--time-budget", type=float, default=None, help="seconds for the whole search")
    t.add_argument("--max-failures", type=int, default=1, help="retries of a trial that crashed (or lost its node)")
    t.add_argument("--image-size", type=int, default=None, help="default 64 (48 with --smoke-test)")
    t.add_argument("--weights", type=_none, default="default",
                   help="transfer: imagenet | FILE | none (default imagenet; none with --smoke-test: offline)")
    t.add_argument("--storage-path", default=None, help="Tune storage (default RUN/tune; shared storage on clusters)")
    t.add_argument("--name", default=None, help="experiment name (default: KIND)")
    t.add_argument("--wandb", choices=["disabled", "offline", "online"], default="disabled")
    t.add_argument("--resume", action="store_true", help="continue the experiment of the same name")
    t.add_argument("--smoke-test", action="store_true",
                   help="the space's tiny variant, 2 trials x 3 epochs, laptop-sized defaults (minutes on 2 CPUs)")
    t.add_argument("--address", default=None, help="Ray cluster address (default RAY_ADDRESS or a local Ray)")

    e = sub.add_parser("export", help="best trial (CNN or probe) -> RUN/bundle (model, labels, embedder, card)")
    e.add_argument("--workdir", required=True)
    e.add_argument("--trial", default=None, help="trial id to export instead of the best")
    e.add_argument("--out", default=None, help="bundle folder (default RUN/bundle)")

    pr = sub.add_parser("predict", help="top-k families for a few files, or a folder/manifest with Ray Data")
    pr.add_argument("bundle")
    pr.add_argument("paths", nargs="*", help="image files (printed), or one folder (-> predictions.parquet)")
    pr.add_argument("--manifest", default=None, help="CSV/Parquet with a 'path' column (-> predictions.parquet)")
    pr.add_argument("--out", default=None, help="predictions Parquet for a folder or manifest (default "
                    "./predictions.parquet); an existing one is resumed: rows already in it are skipped")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--format", choices=["table", "json", "csv"], default="table", help="console output of files")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--num-actors", type=int, default=None, help="predictor actors (default: one per GPU, else "
                    "one per node)")
    pr.add_argument("--cpu", action="store_true", help="CPU actors even when the cluster has GPUs")
    pr.add_argument("--address", default=None, help="Ray cluster address (default RAY_ADDRESS or a local Ray)")

    ev = sub.add_parser("evaluate", help="macro-F1, per-class report and confusion plots of a bundle on a split")
    ev.add_argument("bundle")
    ev.add_argument("--manifest", required=True, help="e.g. RUN/clean_manifest.parquet")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--out", default=None, help="report folder (default: eval_SPLIT beside the bundle)")

    d = sub.add_parser("demo", help="every stage on the bundled demo data (offline, ~5 min on 2 CPUs)")
    d.add_argument("--workdir", default="runs/demo")
    d.add_argument("--num-samples", type=int, default=4)
    d.add_argument("--max-epochs", type=int, default=20)
    return p


def tune_config(args: argparse.Namespace):
    """TuneConfig from flags; --smoke-test picks laptop-sized defaults for flags the user did not give."""
    from .config import TuneConfig

    smoke = args.smoke_test
    num_samples = args.num_samples or (2 if smoke else 8)
    max_epochs = args.max_epochs or (3 if smoke else 10)
    weights = (None if smoke else "imagenet") if args.weights == "default" else args.weights
    return TuneConfig(kind=args.kind, space=args.space, searcher=args.searcher, scheduler=args.scheduler,
                      num_samples=num_samples, max_epochs=max_epochs, grace_period=args.grace_period,
                      workers_per_trial=args.workers_per_trial,
                      cpus_per_worker=args.cpus_per_worker or (0.5 if smoke else 1.0),
                      gpus_per_worker=args.gpus_per_worker, cpus_per_trial=args.cpus_per_trial,
                      max_concurrent=args.max_concurrent, time_budget_s=args.time_budget,
                      max_failures=args.max_failures, image_size=args.image_size or (48 if smoke else 64),
                      weights=weights, storage_path=args.storage_path, name=args.name, wandb=args.wandb,
                      resume=args.resume, smoke_test=smoke)


def _predict(args: argparse.Namespace) -> int:
    """``predict``: files -> console (this process); a folder or --manifest -> predictions.parquet (Ray Data).
    Exit status 1 when any input could not be predicted."""
    import os

    folders = [p for p in args.paths if os.path.isdir(p)]
    if args.manifest or folders or args.out:
        if len(args.paths) > 1 or (args.manifest and args.paths):
            raise ValueError("batch prediction takes one folder or --manifest M (files go without --out)")
        from .predict import predict_collection
        from .raycluster import init_ray

        if args.address:
            init_ray(args.address)
        table = predict_collection(args.bundle, args.out or "predictions.parquet", source=(folders or [None])[0],
                                   manifest=args.manifest, top_k=args.top_k, batch_size=args.batch_size,
                                   num_actors=args.num_actors, use_gpu=not args.cpu)
        return 1 if (table["error"] != "").any() else 0
    if not args.paths:
        raise ValueError("give image files, a folder or --manifest M")
    from .predict import predict_files

    results = predict_files(args.bundle, args.paths, top_k=args.top_k)
    if args.format == "json":
        print(json.dumps(results, indent=1))
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "rank", "family", "probability", "error"])
        for r in results:
            for rank, (lab, p) in enumerate(r.get("top", []), 1):
                writer.writerow([r["path"], rank, lab, f"{p:.6f}", ""])
            if "error" in r:
                writer.writerow([r["path"], "", "", "", r["error"]])
    else:
        for r in results:
            top = "  ".join(f"{lab} {p:.3f}" for lab, p in r.get("top", []))
            print(f"{r['path']}\t{top or 'ERROR: ' + r['error']}")
    return 1 if any("error" in r for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import CatalogConfig, CleanConfig, ConfigError
    from .data.fetch import FetchError
    from .errors import SpeciesfamError

    try:
        if args.command == "fetch":
            from .data.fetch import fetch_rare_species

            fetch_rare_species(args.out, args.source, label=args.label, folders=args.layout == "folders",
                               revision=args.revision)
            print(open(f"{args.out}/FETCH.md").read())
        elif args.command == "catalog":
            from .data.catalog import run_catalog

            cfg = CatalogConfig(val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                min_images=args.min_images, group_split=args.group_split, seed=args.seed)
            run_catalog(args.source, args.workdir, cfg)
            print(open(f"{args.workdir}/catalog.md").read() if "://" not in args.workdir else args.workdir)
        elif args.command == "clean":
            from .data.clean import run_clean

            run_clean(args.workdir, CleanConfig(
                model=args.model, pretrained=args.pretrained, embedder=args.embedder, detector=args.detector,
                contamination=args.contamination, min_per_family=args.min_per_family,
                zero_shot=args.zero_shot, zero_shot_threshold=args.zero_shot_threshold,
                batch_size=args.batch_size, num_actors=args.num_actors))
            print(f"clean: wrote {args.workdir}/clean_manifest.parquet, removed.csv, gallery/, clean.md")
        elif args.command == "tune":
            from .tune.search import run_search

            run_search(args.workdir, tune_config(args), address=args.address)
            print(open(f"{args.workdir}/trials.md").read() if "://" not in args.workdir else args.workdir)
        elif args.command == "export":
            from . import stages
            from .export import export_bundle

            out = export_bundle(args.workdir, args.trial, args.out)
            done = stages.load(args.workdir, "export")["summary"]
            print(f"exported trial {done['trial_id']} ({done['kind']}, {done['model']}) to {out}: {done['reason']}")
        elif args.command == "predict":
            return _predict(args)
        elif args.command == "evaluate":
            from .evaluate import evaluate

            print(json.dumps(evaluate(args.bundle, args.manifest, args.split, args.out), indent=1))
        elif args.command == "demo":
            from .demo import run_demo

            run_demo(args.workdir, num_samples=args.num_samples, max_epochs=args.max_epochs)
    except (SpeciesfamError, ConfigError, FetchError, FileNotFoundError, ValueError, KeyError, ImportError) as err:
        print(f"speciesfam {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
