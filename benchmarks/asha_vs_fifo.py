"""ASHA against FIFO with the same searcher (Optuna TPE, same seed) and trial count, side by side in one run,
on probe trials (reused trial processes, one graph call per epoch: a trial's fixed cost is now well under an
epoch's, so stopping epochs early saves time in proportion).

Prints, for each scheduler: wall time of the search, epochs run, best val macro-F1, seconds until any trial
first reached the target (95% of FIFO's best), and the median seconds from a trial's start to its first epoch.
Default data: generated embeddings of the reference data's size (12,000 x 512, 202 families).

    python benchmarks/asha_vs_fifo.py --num-samples 40 --max-epochs 30
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from _search import probe_search, time_to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=2)
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--families", type=int, default=202)
    args = parser.parse_args()
    import ray

    from speciesfam.config import TuneConfig
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.raycluster import init_ray

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_embedding_run(tmp, rows=args.rows, families=args.families)
        init_ray(num_cpus=2)
        for scheduler in ("fifo", "asha"):
            cfg = TuneConfig(kind="probe", searcher="optuna", scheduler=scheduler, num_samples=args.num_samples,
                             max_epochs=args.max_epochs, grace_period=args.grace_period,
                             reduction_factor=args.reduction_factor, cpus_per_trial=1, max_concurrent=2,
                             name=f"bench-{scheduler}", seed=0)
            runs[scheduler] = probe_search(tmp, cfg)
        ray.shutdown()
    fifo, asha = runs["fifo"], runs["asha"]
    target = 0.95 * fifo["best"]
    print(f"| scheduler | search wall s | epochs run | best val macro-F1 | s to F1 >= {target:.3f} | "
          "median s trial start -> first epoch |\n|---|---:|---:|---:|---:|---:|")
    for name, r in (("FIFO", fifo), ("ASHA", asha)):
        r["to_target"] = time_to(r, target)
        print(f"| {name} | {r['wall']:.1f} | {r['epochs']} | {r['best']:.4f} | {r['to_target']:.1f} | "
              f"{np.median(r['to_first_epoch'][2:]):.3f} |")
    print(f"\nASHA/FIFO: wall-time speed-up {fifo['wall'] / asha['wall']:.2f}x, epochs {asha['epochs'] / fifo['epochs']:.2f}, "
          f"time-to-target speed-up {fifo['to_target'] / asha['to_target']:.2f}x, best F1 difference "
          f"{asha['best'] - fifo['best']:+.4f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
