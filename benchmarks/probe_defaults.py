"""A probe search with the tool's default concurrency against the old defaults (one trial of 0.5 CPU at a time),
side by side in one run on the same generated embeddings and TPE seed: what `speciesfam tune probe` without
resource flags costs a user on a 2-CPU machine (the other search benchmarks always set 2 trials of 1 CPU).

    python benchmarks/probe_defaults.py --num-samples 40 --max-epochs 30
"""

from __future__ import annotations

import argparse
import os
import tempfile

from _search import probe_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--families", type=int, default=202)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import ray

    from speciesfam.config import TuneConfig
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.raycluster import init_ray
    from speciesfam.tune.checks import trial_slots

    init_ray(num_cpus=2)
    settings = {"old defaults (1 trial of 0.5 CPU at a time)": {"cpus_per_trial": 0.5, "max_concurrent": 1},
                "new defaults": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_embedding_run(tmp, rows=args.rows, families=args.families, seed=args.seed)
        for name, fields in settings.items():
            cfg = TuneConfig(kind="probe", num_samples=args.num_samples, max_epochs=args.max_epochs, seed=args.seed,
                             name=name.split()[0], **fields)
            run = probe_search(tmp, cfg)
            rows.append((name, cfg.trial_cpus, cfg.max_concurrent or trial_slots(cfg), run))
    ray.shutdown()
    old = rows[0][3]["wall"]
    print(f"{os.cpu_count()} CPUs; {args.num_samples} trials x up to {args.max_epochs} epochs, {args.rows} x 512, "
          f"{args.families} families, seed {args.seed}\n"
          "| settings | CPUs per trial | trials at once | search wall s | epochs run | best val macro-F1 | "
          "speed-up |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, cpus, slots, run in rows:
        print(f"| {name} | {cpus:g} | {slots} | {run['wall']:.1f} | {run['epochs']} | {run['best']:.4f} | "
              f"{old / run['wall']:.2f}x |")


if __name__ == "__main__":
    main()
