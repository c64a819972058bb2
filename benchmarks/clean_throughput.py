"""Images/s of the Ray Data clean pipeline against a plain single-process loop, side by side in one run.

Same model, same images, same batch size; both timings include loading the model, so the ratio is what a
user sees. Prints a markdown row for benchmarks/RESULTS.md.

    python benchmarks/clean_throughput.py --images 512 --model ViT-S-32 --batch-size 32
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--model", default="ViT-S-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best of each counts")
    args = parser.parse_args()

    from speciesfam._lazy import torch_modules

    torch_modules()  # torch first in this process (see speciesfam/_lazy.py)
    from speciesfam.config import CleanConfig
    from speciesfam.data.catalog import build_manifest
    from speciesfam.data.clean import embed_plain, embed_with_ray
    from speciesfam.data.synthetic import FAMILIES, make_collection
    from speciesfam.raycluster import init_ray

    per_family = args.images // 4
    with tempfile.TemporaryDirectory() as tmp:
        make_collection(tmp, counts={n: per_family for n in list(FAMILIES)[:4]}, outliers_per_family=0, grayscale=0,
                        extras=False, size=128)
        rows = build_manifest(tmp)
        rows = rows[rows["status"] == "ok"]
        cfg = CleanConfig(model=args.model, pretrained=None, batch_size=args.batch_size)
        init_ray()
        best = {"plain": float("inf"), "ray": float("inf")}
        for _ in range(args.repeats):
            for name, fn in (("plain", embed_plain), ("ray", embed_with_ray)):
                t = time.perf_counter()
                out = fn(rows, cfg)
                best[name] = min(best[name], time.perf_counter() - t)
                assert len(out) == len(rows)
    plain, ray_ = len(rows) / best["plain"], len(rows) / best["ray"]
    print(f"| clean embed, {args.model} random weights, {len(rows)} imgs 128 px, batch {args.batch_size} | "
          f"{os.cpu_count()} CPU {platform.machine()} | plain {plain:.1f} img/s | Ray Data {ray_:.1f} img/s | "
          f"ratio {ray_ / plain:.2f} |")


if __name__ == "__main__":
    main()
