"""ASHA against FIFO with the same searcher (Optuna TPE, same seed) and trial count, side by side in one run,
on probe trials (reused trial processes, one graph call per epoch: a trial's fixed cost is well under an
epoch's, so stopping epochs early saves time in proportion).

For each seed (a different generated collection and TPE seed) it runs FIFO once and ASHA once per reduction
factor, and prints: wall time of the search, epochs run, best val macro-F1, seconds until any trial first
reached the target (95% of the best val macro-F1 of all that seed's runs), from the search's start and from its
first report (what is left when the start every search pays alike is taken out: the first trial processes,
TensorFlow's import, the first epoch), and the speed-ups against FIFO; then the medians over seeds. Default data: generated embeddings of the reference data's size (12,000 x 512,
202 families). Both schedulers keep the trials' own early stopping (patience 5), as a user's FIFO search does.
``--noise`` makes the collection harder (the generator's default 4.0: best val macro-F1 ~0.86; 5.0: ~0.6).
``--fractions 0.95 0.99`` also reports stricter targets from the same runs (the table uses the first), each
as seconds and as epochs run by all trials until the target was first reached (what a scheduler saves,
whatever the number of slots).

    python benchmarks/asha_vs_fifo.py --num-samples 40 --max-epochs 30 --seeds 0 1 2 --reduction-factors 2 4
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from _search import probe_search, time_to


def timeline(run: dict, target: float):
    """One row per trial in start order: seconds from the search's start to its first and last report, epochs,
    best val macro-F1, and the epoch and second at which it first reached ``target`` (empty: never)."""
    h = run["hist"]
    trials = h.groupby("trial_id").agg(first_report_s=("since_start", "min"), last_report_s=("since_start", "max"),
                                       epochs=("epoch", "max"), best=("val_macro_f1", "max"))
    hit = h[h["val_macro_f1"] >= target].groupby("trial_id")
    trials["target_epoch"], trials["target_s"] = hit["epoch"].min(), hit["since_start"].min()
    return trials.sort_values("first_report_s").round(3)


def epochs_to(run: dict, target: float) -> int | str:
    """Epochs run by all trials until any trial first reported val macro-F1 >= target ("never": not reached)."""
    t = time_to(run, target)
    return "never" if np.isnan(t) else int((run["hist"]["since_start"] <= t).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--grace-period", type=int, default=None, help="default: the tool's (TuneConfig.grace)")
    parser.add_argument("--reduction-factors", type=int, nargs="+", default=[2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--families", type=int, default=202)
    parser.add_argument("--noise", type=float, default=4.0, help="the generator's noise (higher: harder)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.95],
                        help="targets as fractions of the best val macro-F1 (the table uses the first)")
    parser.add_argument("--timeline", metavar="DIR", help="write each run's per-trial timeline (CSV) here")
    args = parser.parse_args()
    import ray

    from speciesfam.config import TuneConfig
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.raycluster import init_ray

    init_ray(num_cpus=2)
    print("| seed | scheduler | search wall s | epochs run | best val macro-F1 | target | s to target | "
          "s to target after 1st report | wall speed-up | epochs / FIFO's | time-to-target speed-up | "
          "the same after 1st report | best - FIFO's best |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    speedups: dict[int, list[float]] = {rf: [] for rf in args.reduction_factors}
    after_first: dict[int, list[float]] = {rf: [] for rf in args.reduction_factors}
    for seed in args.seeds:
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            make_embedding_run(tmp, rows=args.rows, families=args.families, noise=args.noise, seed=seed)
            for scheduler, rf in [("fifo", 2)] + [("asha", rf) for rf in args.reduction_factors]:
                cfg = TuneConfig(kind="probe", searcher="optuna", scheduler=scheduler, num_samples=args.num_samples,
                                 max_epochs=args.max_epochs, grace_period=args.grace_period, reduction_factor=rf,
                                 name=f"bench-{scheduler}-{rf}", seed=seed)  # defaults: 2 trials of 1 CPU at once
                runs["FIFO" if scheduler == "fifo" else f"ASHA rf {rf}"] = probe_search(tmp, cfg)
        best = max(r["best"] for r in runs.values())
        target = args.fractions[0] * best
        if args.timeline:
            os.makedirs(args.timeline, exist_ok=True)
            for name, r in runs.items():
                timeline(r, target).to_csv(os.path.join(args.timeline, f"seed{seed}-{name.replace(' ', '')}.csv"))
        fifo = runs["FIFO"]
        fifo_t, fifo_t1 = time_to(fifo, target), time_to(fifo, target, from_first_report=True)
        for name, r in runs.items():
            t, t1 = time_to(r, target), time_to(r, target, from_first_report=True)
            if name != "FIFO":
                speedups[int(name.split()[-1])].append(fifo_t / t)
                after_first[int(name.split()[-1])].append(fifo_t1 / t1)
            print(f"| {seed} | {name} | {r['wall']:.1f} | {r['epochs']} | {r['best']:.4f} | {target:.3f} | {t:.1f} | "
                  f"{t1:.1f} | {fifo['wall'] / r['wall']:.2f}x | {r['epochs'] / fifo['epochs']:.2f} | "
                  f"{fifo_t / t:.2f}x | {fifo_t1 / t1:.2f}x | {r['best'] - fifo['best']:+.4f} |", flush=True)
        for fraction in args.fractions:
            line = ", ".join(f"{name} {time_to(r, fraction * best):.1f} s / {epochs_to(r, fraction * best)} epochs"
                             for name, r in runs.items())
            print(f"  seed {seed}, target {fraction:.0%} of the best ({fraction * best:.3f}): {line}", flush=True)
    ray.shutdown()
    for rf, values in speedups.items():
        print(f"ASHA rf {rf}: time-to-target speed-up over {len(values)} seeds: median {np.median(values):.2f}x "
              f"(each: {', '.join(f'{v:.2f}x' for v in values)}); after the first report: median "
              f"{np.median(after_first[rf]):.2f}x; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
