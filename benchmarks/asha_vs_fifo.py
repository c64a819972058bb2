"""ASHA against FIFO with the same searcher (Optuna TPE, same seed) and trial count, side by side in one run,
on embedding-probe trials (so it runs on a 2-CPU machine).

Prints, for each scheduler: wall time of the search, best val macro-F1, seconds until any trial first reached
the target F1 (95% of FIFO's best), and seconds from a trial's start to its first reported epoch.

    python benchmarks/asha_vs_fifo.py --num-samples 16 --max-epochs 60
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _data import prepared_run


def run(workdir: str, scheduler: str, args) -> dict:
    import pandas as pd

    from speciesfam.config import TuneConfig
    from speciesfam.tune.search import run_search

    cfg = TuneConfig(kind="probe", searcher="optuna", scheduler=scheduler, num_samples=args.num_samples,
                     max_epochs=args.max_epochs, grace_period=args.grace_period, reduction_factor=3,
                     cpus_per_trial=1, max_concurrent=2, name=f"bench-{scheduler}", seed=0)
    start = time.time()
    results = run_search(workdir, cfg)
    wall = time.time() - start
    hist = pd.concat([r.metrics_dataframe.assign(trial=r.path) for r in results if r.metrics_dataframe is not None])
    first_epoch = hist.sort_values("timestamp").groupby("trial")["time_total_s"].first()
    return {"wall": wall, "hist": hist, "best": float(hist["val_macro_f1"].max()), "start": start,
            "epochs": int(len(hist)), "first_epoch_s": float(first_epoch.median())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--grace-period", type=int, default=3)
    parser.add_argument("--per-family", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = prepared_run(tmp, args.per_family, clean=True)
        fifo, asha = run(workdir, "fifo", args), run(workdir, "asha", args)
    target = 0.95 * fifo["best"]
    for r in (fifo, asha):
        hit = r["hist"][r["hist"]["val_macro_f1"] >= target]
        r["to_target"] = float(hit["timestamp"].min() - r["start"]) if len(hit) else float("nan")
    print(f"| scheduler | search wall s | epochs run | best val macro-F1 | s to F1 >= {target:.3f} | "
          "median s to first epoch |\n|---|---:|---:|---:|---:|---:|")
    for name, r in (("FIFO", fifo), ("ASHA", asha)):
        print(f"| {name} | {r['wall']:.1f} | {r['epochs']} | {r['best']:.4f} | {r['to_target']:.1f} | "
              f"{r['first_epoch_s']:.2f} |")
    print(f"\nASHA/FIFO: wall-time speed-up {fifo['wall'] / asha['wall']:.2f}x, epochs {asha['epochs'] / fifo['epochs']:.2f}, "
          f"time-to-target speed-up {fifo['to_target'] / asha['to_target']:.2f}x, best F1 difference "
          f"{asha['best'] - fifo['best']:+.4f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
