"""Training throughput, side by side in one run:

1. the tf.data input pipeline's images/s (decode + resize, no model) against the training step's images/s
   on batches already in memory: training must not be input-bound (ratio input/step > 1);
2. 1 vs 2 Ray Train workers (MultiWorkerMirroredStrategy, same global batch) images/s per epoch.

    python benchmarks/train_throughput.py --per-family 40 --image-size 64
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from _data import prepared_run


def input_and_step(workdir: str, size: int, batch: int, hp: dict) -> tuple[float, float]:
    import numpy as np
    import tensorflow as tf

    from speciesfam.data.catalog import load_manifest
    from speciesfam.data.tfdata import dataset, split_arrays
    from speciesfam.models import build_model
    from speciesfam.train.loop import make_optimizer

    import keras

    manifest = load_manifest(os.path.join(workdir, "manifest.parquet"))
    labels = sorted(manifest.loc[manifest["status"] == "ok", "label"].unique())
    paths, y = split_arrays(manifest, "train", labels)
    ds = dataset(paths, y, size, batch, shuffle=True, repeat=True)
    n_batches = 3 * len(paths) // batch
    it = iter(ds)
    next(it)  # warm-up
    t = time.perf_counter()
    batches = [next(it) for _ in range(n_batches)]
    input_rate = n_batches * batch / (time.perf_counter() - t)
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
    return input_rate, (n_batches + 1) * batch / (time.perf_counter() - t)


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
        one = workers_rate(workdir, args.image_size, args.batch, hp, 1, args.epochs)
        two = workers_rate(workdir, args.image_size, args.batch, hp, 2, args.epochs)
        input_rate, step_rate = input_and_step(workdir, args.image_size, args.batch, hp)
    print(f"machine: {os.cpu_count()} CPU {platform.machine()}, images {args.image_size}px, global batch {args.batch}")
    print(f"| measure | img/s |\n|---|---:|\n| tf.data input pipeline | {input_rate:.0f} |\n"
          f"| training step (1 process, batches in memory) | {step_rate:.0f} |\n"
          f"| Ray Train, 1 worker (epoch) | {one:.0f} |\n| Ray Train, 2 workers (epoch) | {two:.0f} |")
    print(f"\ninput/step ratio {input_rate / step_rate:.2f} (>1: not input-bound); 2 vs 1 workers {two / one:.2f}")


if __name__ == "__main__":
    main()
