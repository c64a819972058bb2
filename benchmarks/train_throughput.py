"""Training throughput and trial start-up, side by side in one run:

1. the tf.data input pipeline's images/s, decoding JPEGs (decode + resize) and reading the decoded-image cache
   (``data/image_cache.py``), no model, against the training step's images/s on batches already in memory:
   training must not be input-bound (target: cached input >= 2x the step);
2. 1 vs 2 Ray Train workers (MultiWorkerMirroredStrategy, same global batch) images/s per epoch;
3. where a CNN trial's time goes before its first step: a scratch search of 2 trials (1 worker each), with
   and without the image cache, split into worker-group start, imports, strategy, dataset, model, first step.

    python benchmarks/train_throughput.py --per-family 40 --image-size 64
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from _data import prepared_run


def input_and_step(workdir: str, size: int, batch: int, hp: dict) -> tuple[dict[str, float], float]:
    import numpy as np
    import tensorflow as tf

    from speciesfam.data import image_cache
    from speciesfam.data.catalog import load_manifest
    from speciesfam.data.tfdata import cached_dataset, dataset, split_arrays
    from speciesfam.models import build_model
    from speciesfam.train.loop import make_optimizer

    import keras

    manifest = load_manifest(os.path.join(workdir, "manifest.parquet"))
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    paths, y = split_arrays(manifest, "train", labels)
    images, cache_rows = image_cache.load(image_cache.build(workdir, manifest, size))
    rows, _ = split_arrays(manifest, "train", labels, cache_rows)
    n_batches = 3 * len(paths) // batch
    rates = {}
    for name, ds in (("decoded", dataset(paths, y, size, batch, shuffle=True, repeat=True)),
                     ("cached", cached_dataset(images, rows, y, batch, shuffle=True, repeat=True))):
        it = iter(ds)
        next(it)  # warm-up
        t = time.perf_counter()
        batches = [next(it) for _ in range(n_batches)]
        rates[name] = n_batches * batch / (time.perf_counter() - t)
    model = build_model("scratch_sequential", len(labels), size, hp)
    opt = make_optimizer(keras, "adam", 1e-3, 0.0)

    @tf.function
    def step(x, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yb, model(x, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    step(*batches[0])  # trace
    t = time.perf_counter()
    for x, yb in batches:
        step(x, yb)
    np.asarray(step(*batches[0]))
    return rates, (n_batches + 1) * batch / (time.perf_counter() - t)


def workers_rate(workdir: str, size: int, batch: int, hp: dict, workers: int, epochs: int) -> float:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from speciesfam.data.catalog import load_manifest
    from speciesfam.train.loop import train_loop_per_worker
    from speciesfam.tune.search import WORKER_ENV

    manifest = load_manifest(os.path.join(workdir, "manifest.parquet"))
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    config = {"manifest": os.path.join(workdir, "manifest.parquet"), "labels": labels, "model": "scratch_sequential",
              "image_size": size, "weights": None, "max_epochs": epochs, "seed": 0,
              "hp": {**hp, "batch_size": batch // workers, "patience": 100}}
    result = TensorflowTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name=f"w{workers}", storage_path=os.path.join(workdir, "train"),
                             worker_runtime_env={"env_vars": WORKER_ENV})).fit()
    return float(result.metrics_dataframe["train_img_per_s"].iloc[1:].median())  # epoch 1 includes tracing


STARTUP = ("imports", "strategy", "dataset", "model", "first_step")


def trial_startup(workdir: str, size: int, cache: bool) -> dict[str, float]:
    """Median seconds of each start-up part over the trials of a 2-trial scratch search (1 worker each)."""
    import pandas as pd

    from speciesfam.config import TuneConfig
    from speciesfam.tune.search import run_search

    cfg = TuneConfig(kind="scratch", num_samples=2, max_epochs=1, workers_per_trial=1, cpus_per_worker=0.5,
                     image_size=size, smoke_test=True, image_cache=cache, name=f"startup-{cache}", scheduler="fifo",
                     weights=None)  # scratch models take no pretrained weights
    t = time.time()
    results = run_search(workdir, cfg)
    first = pd.DataFrame([r.metrics_dataframe.iloc[0] for r in results])
    parts = {"worker group": first["worker_started_at"] - first["trial_started_at"],
             **{p: first[f"startup_{p}_s"] for p in STARTUP},
             "first epoch (after first step)": first["epoch_s"]}
    out = {k: float(v.median()) for k, v in parts.items()}
    out["search wall"] = time.time() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    hp = {"filters": 16, "depth": 3, "head_units": 64}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = prepared_run(tmp, args.per_family, size=128)
        from speciesfam.raycluster import init_ray

        init_ray(num_cpus=2)
        startup = {cache: trial_startup(workdir, args.image_size, cache) for cache in (False, True)}
        one = workers_rate(workdir, args.image_size, args.batch, hp, 1, args.epochs)
        two = workers_rate(workdir, args.image_size, args.batch, hp, 2, args.epochs)
        rates, step_rate = input_and_step(workdir, args.image_size, args.batch, hp)
        import ray

        ray.shutdown()
    print(f"machine: {os.cpu_count()} CPU {platform.machine()}, images {args.image_size}px, global batch {args.batch}")
    print(f"| measure | img/s |\n|---|---:|\n| tf.data input, decoding JPEGs | {rates['decoded']:.0f} |\n"
          f"| tf.data input, image cache | {rates['cached']:.0f} |\n"
          f"| training step (1 process, batches in memory) | {step_rate:.0f} |\n"
          f"| Ray Train, 1 worker (epoch) | {one:.0f} |\n| Ray Train, 2 workers (epoch) | {two:.0f} |")
    print(f"\ninput/step ratio: decoding {rates['decoded'] / step_rate:.2f}, cache {rates['cached'] / step_rate:.2f} "
          f"(target >= 2); 2 vs 1 workers {two / one:.2f}")
    print("\n| trial start -> first step, median s | decoding JPEGs | image cache |\n|---|---:|---:|")
    for part in startup[True]:
        print(f"| {part} | {startup[False][part]:.2f} | {startup[True][part]:.2f} |")


if __name__ == "__main__":
    main()
