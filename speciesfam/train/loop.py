"""``train_loop_per_worker``: multi-worker TensorFlow training of one trial, run by Ray Train on N workers.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` with 2+ workers (keras-team/keras#20585),
so this is a custom distributed loop, kept to one Keras (3) for building, training, checkpoints and export:

- the strategy first, then per-worker datasets (``distribute_datasets_from_function``: each worker reads a
  disjoint shard, batched at the per-worker size; the global batch is per-worker batch x workers);
- model and optimizer built in ``strategy.scope()``; a ``tf.function`` runs ``strategy.run(step)``, the
  step averages the class-weighted, label-smoothed loss over the *global* batch and applies gradients
  (the optimizer all-reduces them, so every worker holds the same weights);
- every worker evaluates the whole validation set with the same weights, so val macro-F1, early stopping
  and LR reduction are identical everywhere and no worker waits on a collective the others skipped;
- transfer models train in two phases: frozen backbone, then its top layers unfrozen at a lower rate with
  a fresh optimizer (new trainable variables) and a retraced step;
- rank 0 writes the checkpoint (``model.keras`` + ``config.json`` + ``state.json``); a restarted run resumes
  from the latest one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from typing import Any

import numpy as np

from ..layout import METRIC

DEFAULT_HP: dict[str, Any] = {
    "batch_size": 16, "lr": 1e-3, "optimizer": "adam", "weight_decay": 1e-4, "label_smoothing": 0.0,
    "class_weighting": "balanced", "augment": 0.0, "freeze_epochs": None, "unfreeze_layers": 20,
    "finetune_lr_factor": 0.1, "patience": 5, "lr_patience": 3, "lr_factor": 0.5,
    "shuffle": True,  # False: fixed batch order (reproducible runs; 1- vs 2-worker equivalence tests)
}


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the trial's values (unknown keys pass through to the model builder)."""
    return {**DEFAULT_HP, **config.get("hp", {})}


def make_optimizer(keras, name: str, lr: float, weight_decay: float):
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer={name!r} is not supported; choose adam, adamw or sgd")


def class_weight_vector(y: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """Balanced weights n / (k * n_c) (classes absent from training get 1.0), or ones for ``none``."""
    if mode == "none":
        return np.ones(num_classes, np.float32)
    if mode != "balanced":
        raise ValueError(f"class_weighting={mode!r} is not supported; choose 'balanced' or 'none'")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(num_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def save_checkpoint(directory: str, model, config: dict[str, Any], state: dict[str, Any],
                    metrics: dict[str, Any]) -> None:
    """Write a self-describing checkpoint: model.keras, config.json (everything needed to use the model),
    state.json (where training stands) and metrics.json (this epoch's metrics with per-family F1)."""
    import keras
    import tensorflow as tf

    model.save(os.path.join(directory, "model.keras"))
    meta = {k: config[k] for k in ("model", "labels", "image_size", "hp", "weights") if k in config}
    meta.update(input="RGB uint8 values as float32, shape (image_size, image_size, 3); the model rescales",
                versions={"keras": keras.__version__, "tensorflow": tf.__version__})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    with open(os.path.join(directory, "state.json"), "w") as f:
        json.dump(state, f, indent=1)
    with open(os.path.join(directory, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Train one trial on this Ray Train worker; every worker runs this same function.

    ``config``: ``manifest`` (URI of the cleaned manifest), ``labels``, ``model``, ``image_size``,
    ``weights``, ``max_epochs``, ``seed`` and ``hp`` (see ``DEFAULT_HP``; model hyperparameters too);
    optionally ``resume_from``, a checkpoint path to continue from.
    """
    import ray.train

    checkpoint = ray.train.get_checkpoint()  # set when Ray Train restores a run (same name and storage)
    if checkpoint is None and config.get("resume_from"):
        checkpoint = ray.train.Checkpoint(config["resume_from"])
    run_training(config, ray.train.get_context(), ray.train.report, checkpoint)


def run_training(config: dict[str, Any], ctx, report, checkpoint):
    """The training itself, given the Ray Train context, report function and checkpoint to resume from.
    Returns the trained model (tests compare workers' weights with it).

    Epoch 1's metrics carry the worker's start-up breakdown in seconds (``startup_imports_s``,
    ``startup_strategy_s``, ``startup_dataset_s``, ``startup_model_s``, ``startup_first_step_s``) and
    ``worker_started_at`` (Unix seconds; minus the trial's ``trial_started_at``: the worker group's start).
    """
    marks = [("start", time.time())]
    import ray.train

    from .._lazy import keras as _keras
    from ..data.catalog import load_manifest
    from ..data.tfdata import cached_dataset, dataset, split_arrays
    from ..models import build_model
    from ..models.transfer import unfreeze_top
    from .metrics import classification_metrics, per_class_f1

    keras = _keras()
    import tensorflow as tf

    marks.append(("imports", time.time()))
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    marks.append(("strategy", time.time()))
    hp = hyperparameters(config)
    labels, size, seed = list(config["labels"]), int(config["image_size"]), int(config.get("seed", 0))
    num_classes = len(labels)
    keras.utils.set_random_seed(seed)
    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    mixed = keras.mixed_precision.global_policy().name == "mixed_float16"

    manifest = load_manifest(config["manifest"])
    images, cache_rows = None, None
    if config.get("image_cache"):  # decoded once per image size by the driver (data/image_cache.py)
        from ..data import image_cache

        images, cache_rows = image_cache.load(config["image_cache"])
    train_keys, train_y = split_arrays(manifest, "train", labels, cache_rows)
    val_keys, val_y = split_arrays(manifest, "val", labels, cache_rows)
    per_worker = int(hp["batch_size"])
    global_batch = per_worker * world
    steps_per_epoch = max(1, math.ceil(len(train_keys) / global_batch))
    cw = tf.constant(class_weight_vector(train_y, num_classes, hp["class_weighting"]))

    hashes = None if images is not None else {  # --no-image-cache: each file checked against catalog's hash
        p: h for p, h in zip(manifest["path"], manifest["sha256"]) if isinstance(h, str) and h}

    def make_dataset(keys, y, batch, **kwargs):
        if images is not None:
            return cached_dataset(images, keys, y, batch, **kwargs)
        return dataset(keys, y, size, batch, hashes=hashes, **kwargs)

    def train_input(ctx_in):
        return make_dataset(train_keys, train_y, ctx_in.get_per_replica_batch_size(global_batch),
                            shuffle=bool(hp["shuffle"]), seed=seed, repeat=True,
                            shard=(ctx_in.num_input_pipelines, ctx_in.input_pipeline_id))

    train_iter = iter(strategy.distribute_datasets_from_function(train_input))
    val_ds = make_dataset(val_keys, val_y, 64)
    marks.append(("dataset", time.time()))

    with strategy.scope():
        model = build_model(config["model"], num_classes, size, hp, weights=config.get("weights"))
    marks.append(("model", time.time()))

    def new_optimizer(lr: float):
        with strategy.scope():
            opt = make_optimizer(keras, hp["optimizer"], lr, float(hp["weight_decay"]))
            return keras.optimizers.LossScaleOptimizer(opt) if mixed else opt

    def make_step(optimizer):
        variables = model.trainable_variables

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_example = keras.losses.categorical_crossentropy(
                    tf.one_hot(y, num_classes), probs, label_smoothing=float(hp["label_smoothing"]))
                loss = tf.nn.compute_average_loss(per_example * tf.gather(cw, y), global_batch_size=global_batch)
                grad_loss = optimizer.scale_loss(loss) if mixed else loss
            optimizer.apply_gradients(zip(tape.gradient(grad_loss, variables), variables))
            return loss

        @tf.function
        def step(iterator):
            x, y = next(iterator)
            return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y)), axis=None)

        return step

    @tf.function
    def predict(x):
        return model(x, training=False)

    is_transfer = any(layer.name == "backbone" for layer in model.layers)
    max_epochs = int(config["max_epochs"])
    freeze_epochs = hp["freeze_epochs"] if hp["freeze_epochs"] is not None else (max_epochs + 1) // 2
    state = {"epoch": 0, "best_f1": -1.0, "since_best": 0, "since_lr": 0, "lr": float(hp["lr"]), "phase": 1}

    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
            if state["phase"] == 2:
                unfreeze_top(model, int(hp["unfreeze_layers"]))
            saved = keras.saving.load_model(os.path.join(d, "model.keras"), safe_mode=True)
            model.set_weights(saved.get_weights())
            if state["epoch"] >= max_epochs or state["since_best"] >= int(hp["patience"]):
                # the trial's last epoch, saved, then an interrupt before Tune took its result: a resume trained
                # nothing and the trial ended on the epoch before, 'finished' (round 53); its result again
                with open(os.path.join(d, "metrics.json")) as f:
                    last = {k: v for k, v in json.load(f).items() if k != "per_class_f1"}
                report(last, checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)
                return model

    optimizer = new_optimizer(state["lr"])
    step = make_step(optimizer)
    while state["epoch"] < max_epochs:
        if is_transfer and state["phase"] == 1 and state["epoch"] >= freeze_epochs:
            unfreeze_top(model, int(hp["unfreeze_layers"]))
            state.update(phase=2, lr=state["lr"] * float(hp["finetune_lr_factor"]), since_lr=0)
            optimizer = new_optimizer(state["lr"])
            step = make_step(optimizer)
        started = time.perf_counter()
        # One host read per epoch (not per step), so GPUs are never stalled waiting for Python.
        losses = [step(train_iter)]
        if len(marks) == 5:  # the first step of this worker (traced and run)
            losses[0].numpy()
            marks.append(("first_step", time.time()))
        losses += [step(train_iter) for _ in range(steps_per_epoch - 1)]
        train_loss = float(tf.reduce_mean(tf.stack(losses)))
        epoch_s = time.perf_counter() - started
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} in epoch {state['epoch'] + 1} "
                                     f"(lr={state['lr']}); the trial is marked failed")
        probs = np.concatenate([predict(x).numpy() for x, _ in val_ds]) if len(val_y) else np.zeros((0, num_classes))
        metrics = classification_metrics(probs, val_y, num_classes) if len(val_y) else {
            METRIC: 0.0, "val_accuracy": 0.0, "val_top5": 0.0}
        per_class = per_class_f1(probs, val_y, labels) if len(val_y) else {}
        state["epoch"] += 1
        improved = metrics[METRIC] > state["best_f1"] + 1e-6
        state["best_f1"] = max(state["best_f1"], metrics[METRIC])
        state["since_best"] = 0 if improved else state["since_best"] + 1
        state["since_lr"] = 0 if improved else state["since_lr"] + 1
        if state["since_lr"] >= int(hp["lr_patience"]):  # ReduceLROnPlateau on val macro-F1
            state["lr"] *= float(hp["lr_factor"])
            state["since_lr"] = 0
            optimizer.learning_rate.assign(state["lr"])
        metrics.update(epoch=state["epoch"], train_loss=train_loss, lr=state["lr"], phase=state["phase"],
                       kind=config.get("kind", "transfer" if is_transfer else "scratch"), model=config["model"],
                       global_batch=global_batch, epoch_s=epoch_s,
                       train_img_per_s=steps_per_epoch * global_batch / max(epoch_s, 1e-9))
        if len(marks) == 6:  # this worker's first epoch (also after a resume): its start-up breakdown
            metrics.update({f"startup_{b}_s": t1 - t0 for (_, t0), (b, t1) in zip(marks, marks[1:])},
                           worker_started_at=marks[0][1])
            if config.get("trial_started_at"):
                metrics["trial_started_at"] = config["trial_started_at"]
            marks.append(("reported", time.time()))
        stop = state["since_best"] >= int(hp["patience"])  # early stopping: same decision on every worker
        metrics["final_epoch"] = stop or state["epoch"] >= max_epochs  # the searcher tells a cut trial from this
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_checkpoint(tmp, model, config, state, {**metrics, "per_class_f1": per_class})
            report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
        if stop:
            break
    return model
