"""Scale target of a probe search: 100 trials x up to 30 epochs on 12,000 x 512 embeddings (the reference data's
size: 202 families of 29-300 images, generated Gaussian families), ASHA (the tool's grace period, 3, unless --grace-period; reduction factor 2),
Optuna TPE, 2 trials at a time on 2 CPUs. Target: <= 3 minutes. Also prints the trial-start figures
(driver starts a trial -> its first epoch begins / its first report).

    python benchmarks/probe_scale.py --num-samples 100 --max-epochs 30 [--reduction-factor 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import numpy as np
from _search import probe_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--families", type=int, default=202)
    parser.add_argument("--scheduler", default="asha")
    parser.add_argument("--reduction-factor", type=int, default=2)
    parser.add_argument("--grace-period", type=int, default=None, help="default: the tool's (TuneConfig.grace)")
    parser.add_argument("--precision", default="auto", help="probe trials' matrix products: auto, float32, bfloat16")
    args = parser.parse_args()
    import ray

    from speciesfam.config import TuneConfig
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.raycluster import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        splits = make_embedding_run(tmp, rows=args.rows, dim=args.dim, families=args.families)
        init_ray(num_cpus=2)
        cfg = TuneConfig(kind="probe", num_samples=args.num_samples, max_epochs=args.max_epochs,
                         scheduler=args.scheduler, reduction_factor=args.reduction_factor,
                         grace_period=args.grace_period, seed=0,  # defaults: 2 trials of 1 CPU at once
                         precision=args.precision)
        run = probe_search(tmp, cfg)
        ray.shutdown()
        tune_dir = os.path.join(tmp, "tune")
        disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(tune_dir) for f in files)
        checkpoints = sum(name.startswith("checkpoint_") for _, dirs, _ in os.walk(tune_dir) for name in dirs)
    print(f"Tune storage after the search: {checkpoints} checkpoints kept, {disk / 2**20:.1f} MiB")
    later = run["to_first_epoch"][2:]
    from speciesfam.train.probe import resolve_precision

    print(f"machine: {os.cpu_count()} CPU {platform.machine()}; embeddings {splits} x {args.dim}, "
          f"{args.families} families; matrix products in {resolve_precision(args.precision)}")
    print(f"| trials | epochs run | search wall s | best val macro-F1 | trial processes | errors |\n"
          f"|---:|---:|---:|---:|---:|---:|\n| {run['trials']} | {run['epochs']} | {run['wall']:.1f} | "
          f"{run['best']:.4f} | {run['processes']} | {run['errors']} |")
    print(f"trial started -> first epoch begins, 2nd+ trials (after the first 2 processes): median "
          f"{np.median(later):.3f} s, p90 {np.percentile(later, 90):.3f} s, max {later.max():.3f} s; first two "
          f"{np.round(run['to_first_epoch'][:2], 2).tolist()} s")
    cpu = run["trial_cpu"] + run["driver_cpu"]
    print(f"CPU seconds: trial processes {run['trial_cpu']:.1f} + driver {run['driver_cpu']:.1f} = {cpu:.1f}; on 2 "
          f"otherwise idle cores that is >= {cpu / 2:.1f} s of wall time (Ray's daemons not counted)")
    hist = run["hist"].sort_values(["trial_id", "epoch"])
    busy = hist["epoch_s"].sum()  # training + validation + metrics, summed over both trial slots
    gaps = (hist.groupby("trial_id")["reported_at"].diff() - hist["epoch_s"]).dropna()  # report + checkpoint
    print(f"time in epochs (train + val + metrics): {busy:.1f} s of 2 x {run['wall']:.1f} s = "
          f"{busy / (2 * run['wall']):.0%} of the trial slots; mean epoch {hist['epoch_s'].mean():.3f} s; "
          f"between epochs (report, checkpoint): median {gaps.median() * 1e3:.1f} ms, mean {gaps.mean() * 1e3:.1f} ms")
    reports = run["to_first_report"][2:]
    print(f"trial started -> first report (epoch 1 done, a checkpoint written), 2nd+ trials: median "
          f"{np.median(reports):.3f} s, p90 {np.percentile(reports, 90):.3f} s")


if __name__ == "__main__":
    main()
