"""Images/s of the Ray Data clean pipeline against a plain single-process loop, side by side in one run.

Same model, same images, same batch size, alternating runs. Three measures:

- end to end, cold: the plain loop as a user's script would run it (a fresh Python process: imports, model
  load, loop) against the Ray Data pipeline on a running Ray (as `speciesfam clean` on a cluster: its actors
  start, import torch and load the model inside the timing);
- steady state: images/s after the first batch, for both;
- the plain loop warm (in this process, torch and the model class already imported): the earlier baseline.

    python benchmarks/clean_throughput.py --images 512 --model ViT-S-32 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def timed(batches) -> dict:
    """Wall time of an iterator of batches, its first batch, and images/s after the first batch."""
    start, first, first_n, n = time.perf_counter(), None, 0, 0
    for batch in batches:
        n += len(batch)
        if first is None:
            first, first_n = time.perf_counter() - start, n
    total = time.perf_counter() - start
    return {"total": total, "first": first, "n": n, "steady": (n - first_n) / max(total - first, 1e-9)}


def plain_worker(rows_path: str, model: str, batch_size: int) -> None:
    """Run in a fresh process: the plain loop with its imports; prints the timing as JSON."""
    import pandas as pd

    from speciesfam.config import CleanConfig
    from speciesfam.data.embedding import iter_plain

    rows = pd.read_parquet(rows_path)
    print(json.dumps(timed(iter_plain(rows, CleanConfig(model=model, pretrained=None, batch_size=batch_size)))))


def plain_cold(rows_path: str, args) -> dict:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, __file__, "--plain-worker", rows_path, "--model", args.model,
                          "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["total"] = time.perf_counter() - start  # interpreter start and imports included
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--model", default="ViT-S-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best of each counts")
    parser.add_argument("--plain-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        return plain_worker(args.plain_worker, args.model, args.batch_size)

    from speciesfam._lazy import torch_modules

    torch_modules()  # torch first in this process (see speciesfam/_lazy.py)
    from speciesfam.config import CleanConfig
    from speciesfam.data.catalog import build_manifest
    from speciesfam.data.embedding import embedding_dataset, iter_plain
    from speciesfam.data.synthetic import FAMILIES, make_collection
    from speciesfam.raycluster import init_ray

    per_family = args.images // 4
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_collection(f"{tmp}/images", counts={n: per_family for n in list(FAMILIES)[:4]},
                        outliers_per_family=0, grayscale=0, extras=False, size=128)
        rows = build_manifest(f"{tmp}/images")
        rows = rows[rows["status"] == "ok"].reset_index(drop=True)
        rows.to_parquet(f"{tmp}/rows.parquet")
        cfg = CleanConfig(model=args.model, pretrained=None, batch_size=args.batch_size)
        init_ray()
        runs = {"plain_cold": lambda: plain_cold(f"{tmp}/rows.parquet", args),
                "ray": lambda: timed(embedding_dataset(rows, cfg).iter_batches(batch_format="pandas",
                                                                               batch_size=None)),
                "plain_warm": lambda: timed(iter_plain(rows, cfg))}
        for _ in range(args.repeats):
            for name, run in runs.items():
                result = run()
                assert result["n"] == len(rows), (name, result)
                print(name, {k: round(v, 2) for k, v in result.items()}, flush=True)
                if name not in best or result["total"] < best[name]["total"]:
                    best[name] = result
    n = len(rows)
    rate = {k: n / v["total"] for k, v in best.items()}
    print(f"| {n} | {os.cpu_count()} CPU {platform.machine()} | {args.model} batch {args.batch_size} | "
          f"plain cold {rate['plain_cold']:.1f} | Ray Data {rate['ray']:.1f} | "
          f"ratio cold {rate['ray'] / rate['plain_cold']:.2f} | "
          f"steady plain {best['plain_warm']['steady']:.1f} vs Ray {best['ray']['steady']:.1f} "
          f"(ratio {best['ray']['steady'] / best['plain_warm']['steady']:.2f}) | "
          f"plain warm {rate['plain_warm']:.1f} (ratio {rate['ray'] / rate['plain_warm']:.2f}) | "
          f"Ray first batch {best['ray']['first']:.1f} s |")


if __name__ == "__main__":
    main()
