"""speciesfam's probe search against Keras Tuner's BayesianOptimization: same embeddings, same split, same head
(``models.probe.build_probe``) and ranges, same trial and epoch budget, side by side in one run.

speciesfam: `TuneConfig(kind="probe")` defaults (Optuna TPE, ASHA, 2 trials at a time on 2 CPUs, early stopping
patience 5). Keras Tuner 1.4.8: `BayesianOptimization` (one trial at a time, TensorFlow using every core), a
callback computing val macro-F1 each epoch as its objective, its own best-epoch checkpoints. Both are timed cold:
speciesfam from starting Ray to the trial table; Keras Tuner as a fresh Python process (imports included), as a
user would run each. Default data: generated embeddings shaped like the issue's anchor (10 families, ~330 train /
~70 val rows of 512 floats).

    python benchmarks/vs_keras_tuner.py --trials 16 --epochs 20
    python benchmarks/vs_keras_tuner.py --trials 16 --epochs 20 --rows 12000 --families 202   # reference size
    python benchmarks/vs_keras_tuner.py --trials 16 --our-trials 48 --rows 12000 --families 202  # more trials
    python benchmarks/vs_keras_tuner.py --rows 12000 --families 202 --equal-time --seeds 0 1 2

``--equal-time`` runs Keras Tuner first and gives speciesfam its cold wall time (less Ray's start) as the search's
time budget (``TuneConfig.time_budget_s``): at the same wall time, which search finds the better head?
``--seeds``: one run per seed (a different generated collection, and that seed for both searchers).
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

from _search import probe_search

KT_SCRIPT = r'''
import json, sys, time
start = time.time()
import numpy as np
import keras_tuner as kt
from speciesfam._lazy import keras as _keras
from speciesfam.models.probe import build_probe
from speciesfam.train.loop import class_weight_vector, make_optimizer
from speciesfam.train.metrics import classification_metrics
from speciesfam.train.probe import probe_arrays

keras = _keras()
workdir, labels, trials, epochs, out = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
seed = int(sys.argv[6])
data, _ = probe_arrays(workdir, labels)
(xt, yt), (xv, yv) = data["train"], data["val"]
C = len(labels)
onehot = np.eye(C, dtype=np.float32)


class MacroF1(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs["val_macro_f1"] = classification_metrics(self.model.predict(xv, verbose=0), yv, C)["val_macro_f1"]


class Probe(kt.HyperModel):  # the same ranges as search_spaces/probe.py
    def build(self, hp):
        params = {"head_units": hp.Choice("head_units", [64, 128, 256, 512]),
                  "head_layers": hp.Choice("head_layers", [1, 2]), "dropout": hp.Float("dropout", 0.0, 0.6)}
        model = build_probe(C, xt.shape[1], params)
        opt = make_optimizer(keras, hp.Choice("optimizer", ["adam", "adamw"]),
                             hp.Float("lr", 3e-4, 1e-2, sampling="log"), hp.Float("weight_decay", 1e-5, 1e-2, sampling="log"))
        model.compile(optimizer=opt, loss=keras.losses.CategoricalCrossentropy(
            label_smoothing=hp.Float("label_smoothing", 0.0, 0.2)))
        return model

    def fit(self, hp, model, *args, **kwargs):
        cw = class_weight_vector(yt, C, hp.Choice("class_weighting", ["balanced", "none"]))
        return model.fit(xt, onehot[yt], sample_weight=cw[yt], batch_size=hp.Choice("batch_size", [64, 128, 256]),
                         epochs=epochs, verbose=0, callbacks=[MacroF1(), *kwargs.get("callbacks", [])])


tuner = kt.BayesianOptimization(Probe(), objective=kt.Objective("val_macro_f1", "max"), max_trials=trials, seed=seed,
                                directory=out, project_name="kt", overwrite=True)
search_start = time.time()
tuner.search()
best = max(t.score for t in tuner.oracle.trials.values() if t.score is not None)
print(json.dumps({"wall": time.time() - start, "search": time.time() - search_start, "best": best,
                  "trials": len(tuner.oracle.trials)}))
'''


def one_seed(args, seed: int) -> dict:
    """Both searches on the collection of ``seed``; Keras Tuner first when speciesfam gets its time."""
    import pandas as pd
    import ray

    from speciesfam.config import TuneConfig
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.raycluster import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        splits = make_embedding_run(tmp, rows=args.rows, dim=args.dim, families=args.families, noise=args.noise,
                                    seed=seed)
        labels = sorted(pd.read_parquet(os.path.join(tmp, "clean_manifest.parquet"))["label"].unique())

        def keras_tuner() -> dict:
            run = subprocess.run([sys.executable, "-c", KT_SCRIPT, tmp, json.dumps(labels), str(args.trials),
                                  str(args.epochs), os.path.join(tmp, "kt"), str(seed)], capture_output=True, text=True)
            if run.returncode:
                sys.exit(run.stderr[-3000:])
            return json.loads(run.stdout.strip().splitlines()[-1])

        theirs = keras_tuner() if args.equal_time else None
        start = time.time()
        init_ray(num_cpus=2)
        ray_start = time.time() - start
        # 10% of the time left for what follows the budget (stopping trials, the trial table)
        budget = None if theirs is None else max(0.9 * theirs["wall"] - ray_start, 5.0)
        trials = 100_000 if budget else (args.our_trials or args.trials)
        # the tool's defaults: as many 1-CPU probe trials at once as the 2 CPUs hold
        ours = probe_search(tmp, TuneConfig(kind="probe", num_samples=trials, max_epochs=args.epochs, seed=seed,
                                            time_budget_s=budget))
        ours["cold"] = time.time() - start
        ray.shutdown()
        theirs = theirs or keras_tuner()
    return {"seed": seed, "splits": splits, "ours": ours, "theirs": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--our-trials", type=int, help="speciesfam's trial count (default: --trials); the target "
                        "compares wall time at an equal or better best F1, not trial counts")
    parser.add_argument("--equal-time", action="store_true", help="speciesfam searches for Keras Tuner's wall time")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=475)
    parser.add_argument("--families", type=int, default=10)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=5.0, help="spread of each family (higher: harder)")
    args = parser.parse_args()
    runs = [one_seed(args, seed) for seed in args.seeds]
    print(f"machine: {os.cpu_count()} CPU {platform.machine()}; {runs[0]['splits']} rows x {args.dim}, "
          f"{args.families} families; Keras Tuner {args.trials} trials, speciesfam "
          f"{'as many as fit in its time' if args.equal_time else args.our_trials or args.trials} x up to "
          f"{args.epochs} epochs each")
    print("| seed | search | trials | wall s (cold) | search s | best val macro-F1 | epochs run |\n"
          "|---:|---|---:|---:|---:|---:|---:|")
    for r in runs:
        ours, theirs = r["ours"], r["theirs"]
        print(f"| {r['seed']} | speciesfam probe (TPE + ASHA, 2 at a time) | {ours['trials']} | {ours['cold']:.1f} | "
              f"{ours['wall']:.1f} | {ours['best']:.4f} | {ours['epochs']} |")
        print(f"| {r['seed']} | Keras Tuner BayesianOptimization | {theirs['trials']} | {theirs['wall']:.1f} | "
              f"{theirs['search']:.1f} | {theirs['best']:.4f} | {theirs['trials'] * args.epochs} |")
    for r in runs:
        ours, theirs = r["ours"], r["theirs"]
        print(f"seed {r['seed']}: wall-time ratio speciesfam / Keras Tuner: cold {ours['cold'] / theirs['wall']:.2f}, "
              f"search only {ours['wall'] / theirs['search']:.2f} (target <= 1.0); best F1 difference "
              f"{ours['best'] - theirs['best']:+.4f} (target >= 0)")


if __name__ == "__main__":
    main()
