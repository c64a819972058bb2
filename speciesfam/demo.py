"""The whole pipeline on the bundled demo data: catalog -> clean -> tune -> export -> predict.

Offline-safe: CLIP runs with random weights (``pretrained=None``) and the search trains small CNNs from
scratch, so nothing is downloaded. ~3-5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import time
from importlib import resources

from . import storage
from .config import CleanConfig, TuneConfig


def demo_images() -> str:
    """Path of the bundled demo collection (a folder per family)."""
    return str(resources.files("speciesfam") / "demo_data" / "images")


def run_demo(workdir: str = "runs/demo", num_samples: int = 4, max_epochs: int = 20) -> dict:
    """Run every stage into ``workdir`` and print where each artifact is. Returns the artifact paths and the
    predictions."""
    from .data.catalog import run_catalog
    from .data.clean import run_clean
    from .export import export_bundle, predict
    from .tune.search import run_search

    workdir = storage.local_dir(workdir)
    t0 = time.time()
    print(f"[1/5] catalog {demo_images()}")
    manifest = run_catalog(demo_images(), workdir)
    print("[2/5] clean: open_clip ViT-S-32 embeddings (random weights: offline) with Ray Data; outliers (robust "
          "z-score), label issues (cleanlab), near-duplicates")
    # Random weights make all embeddings alike (cosine > 0.95 for a tenth of the pairs): only near-exact copies
    # are near-duplicates for them. Pretrained models use the default threshold.
    cleaned = run_clean(workdir, CleanConfig(model="ViT-S-32", pretrained=None, min_per_family=6,
                                             near_duplicate_threshold=0.999))
    print(f"[3/5] tune: {num_samples} trials, Optuna TPE + ASHA, each on 2 Ray Train workers (MultiWorkerMirroredStrategy)")
    cfg = TuneConfig(kind="scratch", num_samples=num_samples, max_epochs=max_epochs, workers_per_trial=2,
                     grace_period=min(5, max_epochs),  # BN statistics need a few epochs before val F1 means much
                     cpus_per_worker=0.5, cpus_per_trial=0.5, image_size=48, weights=None, smoke_test=True, name="demo")
    run_search(workdir, cfg)
    print("[4/5] export the best checkpoint")
    bundle = export_bundle(workdir)
    test = cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "test")].groupby("label").head(1)
    print("[5/5] predict on one test image per family")
    preds = predict(bundle, test["path"].tolist(), top_k=3)
    truth = dict(zip(test["path"], test["label"]))
    for p in preds:
        fam, prob = p["top"][0]
        print(f"  {p['path'].rsplit('/', 2)[-2]}/{p['path'].rsplit('/', 1)[-1]}: {fam} ({prob:.2f})"
              f"{'  correct' if fam == truth[p['path']] else ''}")
    artifacts = {name: storage.join(workdir, name) for name in (
        "manifest.parquet", "catalog.md", "unreadable.csv", "embeddings.parquet", "clean_manifest.parquet",
        "removed.csv", "label_issues.csv", "near_duplicates.csv", "gallery", "clean.md", "class_counts.png", "tune", "trials.csv", "trials.md", "search_progress.png")}
    artifacts["bundle"] = bundle
    removed = int((cleaned["status"] == "removed").sum())
    print(f"\nDone in {time.time() - t0:.0f} s. {len(manifest)} images catalogued, {removed} outliers removed.")
    for name, path in artifacts.items():
        print(f"  {name:24s} {path}")
    print(f"Exported bundle: {bundle}")
    return {"artifacts": artifacts, "predictions": preds}
