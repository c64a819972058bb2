"""Batch prediction throughput, side by side in one run, for a CNN bundle:

1. ``predict_files``: one process, decode + predict a batch at a time (the console path);
2. ``predict_collection`` cold: Ray Data tasks decode, a predictor actor pool predicts, parts written as
   they arrive (includes starting the actors, which import TensorFlow and load the bundle), and its steady
   state: rows per second between the first and the last part written (actors already up);
3. ``predict_collection`` again on the same output: the resume check alone (every row already done).

    python benchmarks/predict_throughput.py --per-family 80 --image-size 64
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time

from _data import prepared_run


def cnn_bundle(workdir: str, size: int) -> str:
    """Export an untrained scratch CNN (random weights: throughput does not depend on them)."""
    import pandas as pd

    from speciesfam import layout
    from speciesfam.data.catalog import load_manifest
    from speciesfam.export import export_bundle
    from speciesfam.models import build_model
    from speciesfam.train.loop import save_checkpoint

    manifest = load_manifest(os.path.join(workdir, layout.MANIFEST))
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    hp = {"filters": 16, "depth": 3}
    ckpt = os.path.join(workdir, "ckpt")
    os.makedirs(ckpt)
    save_checkpoint(ckpt, build_model("scratch_sequential", len(labels), size, hp),
                    {"model": "scratch_sequential", "labels": labels, "image_size": size, "hp": hp}, {"epoch": 1}, {})
    row = {"trial_id": "bench", "kind": "scratch", "model": "scratch_sequential", "status": "ok", "error": "",
           layout.BEST_METRIC: 0.5, "best_epoch": 1, "epochs_run": 1, "seconds": 1.0, "best_checkpoint": ckpt,
           "config": json.dumps(hp), "trial_path": ckpt, "val_split": ""}
    pd.DataFrame([row]).to_csv(os.path.join(workdir, layout.TRIALS), index=False)
    return export_bundle(workdir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-family", type=int, default=80)
    p.add_argument("--image-size", type=int, default=64, help="the CNN's input side")
    p.add_argument("--source-size", type=int, default=256, help="side of the generated images")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()

    import ray

    from speciesfam import storage
    from speciesfam.predict import predict_collection, predict_files
    from speciesfam.raycluster import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        workdir = prepared_run(tmp, args.per_family, size=args.source_size)
        bundle = cnn_bundle(workdir, args.image_size)
        files = storage.list_files(os.path.join(workdir, "images"))
        init_ray()
        t = time.perf_counter()
        predict_files(bundle, files, batch_size=args.batch_size)
        plain = time.perf_counter() - t
        out = os.path.join(tmp, "predictions.parquet")
        stamps = Stamped()
        t = time.perf_counter()
        with contextlib.redirect_stdout(stamps):
            predict_collection(bundle, out, source=os.path.join(workdir, "images"), batch_size=args.batch_size,
                               part_rows=args.batch_size)
        cold = time.perf_counter() - t
        parts = [(ts, int(line.split()[1].split("/")[0])) for ts, line in stamps.lines if " rows written" in line]
        steady = (parts[-1][1] - parts[0][1]) / (parts[-1][0] - parts[0][0])
        t = time.perf_counter()
        predict_collection(bundle, out, source=os.path.join(workdir, "images"))
        resume = time.perf_counter() - t
        ray.shutdown()
    n = len(files)
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs; {n} images {args.source_size}px -> CNN {args.image_size}px")
    print("| path | s | img/s |\n|---|---:|---:|")
    for name, s in (("predict_files, one process", plain), ("predict_collection, Ray Data, cold", cold),
                    ("predict_collection, resume with nothing left", resume)):
        print(f"| {name} | {s:.1f} | {n / s:.0f} |")
    print(f"| predict_collection, steady state (first to last part) | | {steady:.0f} |")
    print(f"Ray Data / one process throughput: cold {plain / cold:.2f}x, steady state {steady * plain / n:.2f}x")


class Stamped(io.StringIO):
    """stdout that remembers when each line was printed (the batch path prints one line per part written)."""

    def __init__(self):
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.lines.append((time.perf_counter(), line))
        return len(text)


if __name__ == "__main__":
    main()
