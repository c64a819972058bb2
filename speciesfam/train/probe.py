"""The probe trial: train ``models.probe.build_probe``'s head on the clean stage's cached embeddings.

A probe search runs hundreds of trials of a few seconds each, so a trial's fixed costs decide its speed
(measured in benchmarks/RESULTS.md, "Search speed"):

- Tune reuses trial processes (``reuse_actors=True``): TensorFlow is imported once per process, not per trial;
- the driver reads the embeddings once and hands them to every trial through Ray's object store
  (``tune.with_parameters``: zero-copy numpy arrays, no Parquet read per trial);
- one epoch, validation included, is one call of a TensorFlow graph (a ``tf.while_loop`` over mini-batches,
  no Python per step); the graph takes weights and optimizer state (variables of unspecified shape, updated
  in place by fused optimizer kernels) and hyperparameters as arguments, so it is traced once per (number of
  layers, optimizer, precision) per process and every later trial of that family reuses it;
- every epoch is reported; a checkpoint (weights only) is written only when val macro-F1 improves;
- on CPUs with bf16 instructions the matrix products read bfloat16 (``TuneConfig.precision="auto"``): 1.2-1.4x
  faster epochs for the larger heads; weights, optimizer, softmax and loss stay float32.

The graph is exactly ``build_probe``'s: Dense(relu) -> Dropout per layer, then softmax; weight init, Adam,
AdamW and SGD (momentum 0.9, Nesterov) follow Keras 3's definitions, and the checkpoint is Keras's own
``save_weights`` of ``build_probe(num_classes, dim, hp)`` (tests load it and compare predictions). In float32
it trains to Keras ``fit``'s weights; in bfloat16 to nearly the same predictions (tests check both).

Checkpoint folder (the contract with export): ``probe.weights.h5``, ``config.json`` = {"kind": "probe",
"model": "probe", "labels", "hp" (all hyperparameters), "embedding_dim", "embedding_model", "precision" (the
type its matrix products were trained in; the weights are float32 and the bundle predicts in float32)} and
``metrics.json`` (that epoch's metrics with ``per_class_f1``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from typing import Any, Iterator

import numpy as np

from .. import stages, storage
from ..layout import METRIC
from ..models import HEAD_DEFAULTS
from .loop import class_weight_vector, hyperparameters

WEIGHTS = "probe.weights.h5"
# What a probe trial reads (``probe_hp``): its head's and training's settings; a CNN's are refused in a probe space.
READS = (*HEAD_DEFAULTS, "batch_size", "lr", "optimizer", "weight_decay", "label_smoothing", "class_weighting",
         "patience")
# Per process, across the trials Tune runs in it: graphs by (layers, optimizer, precision) and Keras models (used only
# to write weights files) by shape. A reused process starts its next trial with both already built.
_GRAPHS: dict[tuple[int, str, str], Any] = {}
_MODELS: dict[tuple[int, int, int, int], Any] = {}
_THREADS_SET = False


def probe_arrays(workdir: str, labels: list[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str | None]:
    """(float32 embeddings, int32 label ids) per split, from RUN/embeddings.parquet and the cleaned manifest, and
    the embedding model they are of (the bundle's card names it; None: no model recorded).

    Raises:
        StageOrderError: the embeddings are not all of the model the last clean used, or lack a usable image (a
            clean with another model interrupted after it wrote them: the probe trained on that model's vectors,
            scored as the clean's, and only export noticed; round 72), naming the clean that writes them again.
    """
    from .. import layout
    from ..data.catalog import load_manifest
    from ..errors import StageOrderError
    from ..lines import counted, some
    from ..stage_outputs import check_embedder_unchanged

    clean = stages.load(workdir, "clean")
    check_embedder_unchanged(workdir, clean)  # its weights or code changed since: the vectors are of the old ones
    uri, again = layout.path(workdir, layout.EMBEDDINGS), stages.command("clean", workdir)
    emb = storage.read_table(uri, stage_hint=again)
    manifest = load_manifest(layout.path(workdir, layout.CLEAN_MANIFEST), stage=again)
    usable = manifest[manifest["status"] == layout.OK]
    model = ((clean or {}).get("config") or {}).get("model_id")
    others = sorted(set(emb["model_id"].astype(str)) - {model}) if model and "model_id" in emb else []
    rows = usable.merge(emb[["sha256", "embedding"]].drop_duplicates("sha256"), on="sha256")
    if others or len(rows) < len(usable):
        why = f"holds embeddings of {some(others)}, but the last clean used {model}" if others else \
            f"lacks the embeddings of {counted(len(usable) - len(rows), 'usable image')} the last clean kept"
        raise StageOrderError(f"{uri} {why} (a clean interrupted after it wrote them?): run `{again}` again")
    index = {lab: i for i, lab in enumerate(labels)}
    out = {}
    for split in ("train", "val"):
        part = rows[rows["split"] == split]
        x = np.stack(part["embedding"].to_numpy()).astype(np.float32) if len(part) else np.zeros((0, 1), np.float32)
        out[split] = (x, part["label"].map(index).to_numpy(np.int32))
    if not model and "model_id" in emb and len(emb):  # a clean record without its model: the file's
        model = str(emb["model_id"].iloc[0])
    return out, model


def probe_hp(config: dict[str, Any]) -> dict[str, Any]:
    """Every setting a probe trial reads (``READS``): the trial's values over the training and head defaults; the
    CNNs' defaults (augment, freeze_epochs, ...) are left out: the bundle's card would list them as used."""
    every = {**HEAD_DEFAULTS, **hyperparameters({"hp": config})}
    return {k: every[k] for k in READS}


def init_params(dim: int, num_classes: int, layers: int, units: int, seed: int) -> list[np.ndarray]:
    """Keras's Dense init (Glorot-uniform kernels, zero biases) for every layer, in ``get_weights`` order."""
    rng = np.random.default_rng(seed)
    sizes = [dim] + [units] * layers + [num_classes]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params += [rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32), np.zeros(fan_out, np.float32)]
    return params


def resolve_precision(precision: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` where this CPU has bf16 instructions (avx512_bf16, amx_bf16) and TensorFlow
    runs oneDNN, else ``"float32"``. Measured (benchmarks/RESULTS.md, "Search speed"): bfloat16 matrix
    products run 1.5-1.7x float32's on such a CPU, and slower than float32 without them or without oneDNN."""
    if precision != "auto":
        return precision
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() in ("0", "false"):
        return "float32"
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: no way to ask cheaply, so the safe choice
        return "float32"
    return "bfloat16" if re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) else "float32"


def _forward(tf, params, x, layers: int, dropout=None, seed=None, dtype: str = "float32"):
    """Float32 logits of the head; with ``dropout`` (a rate tensor) and ``seed``, training-mode dropout.
    ``dtype``: the type the matrix products read (bfloat16: oneDNN still accumulates in float32; the
    variables, their gradients, the softmax and the loss stay float32)."""
    h = tf.cast(x, dtype)
    for i in range(layers):
        h = tf.nn.relu(tf.matmul(h, tf.cast(params[2 * i], dtype)) + tf.cast(params[2 * i + 1], dtype))
        if dropout is not None:  # in float32, so both precisions draw the same masks from the same seed
            h = tf.cast(tf.nn.experimental.stateless_dropout(tf.cast(h, tf.float32), dropout,
                                                             seed=tf.random.experimental.stateless_fold_in(seed, i)),
                        dtype)
    return tf.cast(tf.matmul(h, tf.cast(params[-2], dtype)), tf.float32) + params[-1]


def _epoch_graph(tf, layers: int, optimizer: str, dtype: str):
    """One epoch (shuffled mini-batches, updates, then validation) as one graph, traced once per process.

    Weights and optimizer slots are variables of unspecified shape, updated in place by TensorFlow's fused
    optimizer kernels (one pass over a weight per step instead of ~10 element-wise ops; the same arithmetic as
    Keras 3's Adam and SGD), so every trial of a (layers, optimizer, precision) family reuses the one trace."""
    key = (layers, optimizer, dtype)
    if key in _GRAPHS:
        return _GRAPHS[key]
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer={optimizer!r} is not supported; choose adam, adamw or sgd")

    @tf.function(reduce_retracing=True)
    def epoch(params, m, v, step, x, y, cw, xv, lr, wd, smoothing, dropout, batch, seed):
        num_classes = tf.shape(params[-1])[0]
        n = tf.shape(x)[0]
        order = tf.argsort(tf.random.stateless_uniform([n], seed))
        total = tf.constant(0.0)
        for s in tf.range((n + batch - 1) // batch):
            idx = order[s * batch:tf.minimum((s + 1) * batch, n)]
            yb = tf.gather(y, idx)
            with tf.GradientTape() as tape:
                step_seed = tf.random.experimental.stateless_fold_in(seed, s + 1)  # per step; seed itself shuffles
                logits = _forward(tf, params, tf.gather(x, idx), layers, dropout, step_seed, dtype)
                target = tf.one_hot(yb, num_classes) * (1.0 - smoothing) + smoothing / tf.cast(num_classes, tf.float32)
                per_example = -tf.reduce_sum(target * tf.nn.log_softmax(logits), axis=-1) * tf.gather(cw, yb)
                loss = tf.reduce_mean(per_example)  # Keras's "sum over batch size" reduction
            grads = tape.gradient(loss, params)
            t = step.assign_add(1.0)
            for p, g, mi, vi in zip(params, grads, m, v):
                if optimizer == "sgd":  # Keras SGD(momentum=0.9, nesterov=True)
                    tf.raw_ops.ResourceApplyKerasMomentum(var=p.handle, accum=mi.handle, lr=lr, grad=g, momentum=0.9,
                                                          use_nesterov=True)
                    continue
                if optimizer == "adamw":  # Keras AdamW decays before the Adam step
                    p.assign_sub(p * wd * lr)
                # Keras Adam (beta 0.9 / 0.999, epsilon 1e-7, epsilon outside the square root)
                tf.raw_ops.ResourceApplyAdam(var=p.handle, m=mi.handle, v=vi.handle, beta1_power=0.9 ** t,
                                             beta2_power=0.999 ** t, lr=lr, beta1=0.9, beta2=0.999, epsilon=1e-7,
                                             grad=g)
            total += loss
        steps = tf.cast((n + batch - 1) // batch, tf.float32)
        return total / steps, tf.nn.softmax(_forward(tf, params, xv, layers, dtype=dtype))

    _GRAPHS[key] = epoch
    return epoch


def train_epochs(data: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int, hp: dict[str, Any],
                 max_epochs: int, seed: int = 0, precision: str = "float32",
                 resume: tuple[int, list[np.ndarray]] | None = None
                 ) -> Iterator[tuple[int, float, np.ndarray, list]]:
    """Train the head; yields ``(epoch, train_loss, val_probs, weights)`` after every epoch. ``precision``:
    the matrix products' type, ``"float32"`` or ``"bfloat16"`` (``resolve_precision``). ``resume``: (epoch,
    weights) of a checkpoint: training goes on from the next epoch with those weights (the optimizer's moments
    start again: checkpoints hold weights only).

    ``weights`` are TensorFlow variables in ``build_probe(...).get_weights()`` order, updated in place by the
    next epoch: read them before asking for it. Raises ``FloatingPointError`` when the training loss stops
    being finite.
    """
    from .._lazy import tensorflow

    tf = tensorflow()
    hp = probe_hp(hp)
    (xt, yt), (xv, _) = data["train"], data["val"]
    if not len(yt):
        raise ValueError("the probe has no training rows: does the cleaned manifest have a 'train' split with "
                         "embeddings?")
    layers, units = int(hp["head_layers"]), int(hp["head_units"])
    graph = _epoch_graph(tf, layers, str(hp["optimizer"]), precision)
    done, start = resume or (0, init_params(xt.shape[1], num_classes, layers, units, seed))

    def variables(arrays, trainable=False):  # any shape: one trace serves every trial's head size
        return [tf.Variable(a, shape=tf.TensorShape(None), trainable=trainable) for a in arrays]

    params = variables(start, trainable=True)  # watched by the graph's GradientTape
    m, v = variables(map(np.zeros_like, start)), variables(map(np.zeros_like, start))
    step = tf.Variable(0.0, trainable=False)
    x, y = tf.constant(xt), tf.constant(yt)
    cw = tf.constant(class_weight_vector(yt, num_classes, hp["class_weighting"]))
    xv_t = tf.constant(xv.reshape(len(xv), xt.shape[1]))
    const = [tf.constant(float(hp[k]), tf.float32) for k in ("lr", "weight_decay", "label_smoothing", "dropout")]
    batch = tf.constant(int(hp["batch_size"]), tf.int32)
    for epoch in range(done + 1, max_epochs + 1):
        loss, probs = graph(params, m, v, step, x, y, cw, xv_t, *const, batch, tf.constant([seed, epoch], tf.int32))
        loss = float(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"probe training loss became {loss} in epoch {epoch} (lr={hp['lr']}); "
                                     "the trial is marked failed")
        yield epoch, loss, probs.numpy(), params


def _shaped_model(num_classes: int, dim: int, hp: dict[str, Any]):
    """build_probe's model of this head's shape, built once per process: weights do not depend on dropout, so one
    model per shape serves every trial's checkpoints."""
    from ..models.probe import build_probe

    key = (num_classes, dim, int(hp["head_layers"]), int(hp["head_units"]))
    if key not in _MODELS:
        _MODELS[key] = build_probe(num_classes, dim, hp)
    return _MODELS[key]


def write_checkpoint(directory: str, weights: list, hp: dict[str, Any], fixed: dict[str, Any],
                     metrics: dict[str, Any]) -> None:
    """The probe checkpoint folder: probe.weights.h5 (Keras weights of build_probe), config.json, metrics.json.
    ``hp``: the trial's complete settings (``probe_hp``); config.json keeps those it used."""
    weights = [np.asarray(w) for w in weights]
    labels, dim = list(fixed["labels"]), int(weights[0].shape[0])
    model = _shaped_model(len(labels), dim, hp)
    model.set_weights(weights)
    model.save_weights(os.path.join(directory, WEIGHTS))
    used = {k: v for k, v in hp.items() if k != "weight_decay" or hp["optimizer"] == "adamw"}  # AdamW's only
    config = {"kind": "probe", "model": "probe", "labels": labels, "hp": used, "embedding_dim": dim,
              "embedding_model": fixed.get("embedding_model"), "precision": fixed.get("precision", "float32")}
    for name, data in (("config.json", config), ("metrics.json", metrics)):
        with open(os.path.join(directory, name), "w") as f:
            json.dump(data, f, indent=1, default=str)


def read_checkpoint(directory: str, hp: dict[str, Any], num_classes: int, dim: int
                    ) -> tuple[int, float, list[np.ndarray]]:
    """A probe checkpoint's (epoch, val macro-F1, weights): where a trial restored by Tune (``--resume``) goes on."""
    with open(os.path.join(directory, "metrics.json")) as f:
        metrics = json.load(f)
    model = _shaped_model(num_classes, dim, hp)
    model.load_weights(os.path.join(directory, WEIGHTS))
    return int(metrics["epoch"]), float(metrics[METRIC]), [np.asarray(w) for w in model.get_weights()]


def _limit_threads(tf) -> None:
    """TensorFlow's op threads = this trial's CPUs (default: every core, which oversubscribes concurrent trials)."""
    global _THREADS_SET
    if _THREADS_SET:
        return
    import ray

    cpus = max(1, int(round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))))
    try:  # possible only before TensorFlow's runtime starts, i.e. in the process's first trial
        # both pools: with the default inter-op pool a 1-CPU trial used ~1.5 CPUs for the same epoch time
        # (benchmarks/RESULTS.md, "Search speed"), slowing the trial that shares the core
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:
        pass
    _THREADS_SET = True


def probe_trial(config: dict[str, Any], fixed: dict[str, Any], data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Tune function trainable: report val metrics every epoch, a weights checkpoint on every new best.

    ``fixed``: ``labels``, ``max_epochs``, ``seed``, ``embedding_model``, ``precision``; ``data``: ``probe_arrays``'s output
    (from the object store). Reports ``kind``/``model`` ("probe"), ``final_epoch`` (True on the last epoch the
    trial runs by its own rules: ``max_epochs`` or its patience; the searcher treats a trial that ended without
    it as cut, ``tune.optuna_best``) and, for the trial-start benchmark,
    ``started_at``, ``first_epoch_at`` and ``reported_at`` (Unix seconds), ``pid`` (process reuse) and ``process_cpu_s`` (CPU
    seconds this process has used so far, all threads: what a search costs, independent of other load).
    """
    from ray import tune

    from .._lazy import tensorflow
    from ..tune.space import check_drawn
    from .metrics import classification_metrics, per_class_f1

    started_at = time.time()
    check_drawn(config)
    _limit_threads(tensorflow())
    hp = probe_hp(config)  # every setting, recorded in the checkpoint
    labels = list(fixed["labels"])
    fixed = {**fixed, "precision": resolve_precision(fixed.get("precision", "auto"))}  # recorded in checkpoints
    yv = data["val"][1]
    best, resume = -1.0, None
    checkpoint = tune.get_checkpoint()  # a trial restored by --resume: on from its last checkpoint (its best epoch)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            epoch, best, weights = read_checkpoint(directory, hp, len(labels), data["train"][0].shape[1])
        resume = (epoch, weights)
    since_best, first_epoch_at = 0, time.time()
    epoch_start = first_epoch_at
    for epoch, loss, probs, weights in train_epochs(data, len(labels), hp, int(fixed["max_epochs"]),
                                                   int(fixed.get("seed", 0)), fixed["precision"], resume):
        metrics = classification_metrics(probs, yv, len(labels)) if len(yv) else {
            METRIC: 0.0, "val_accuracy": 0.0, "val_top5": 0.0}
        metrics.update(epoch=epoch, train_loss=loss, epoch_s=time.time() - epoch_start, kind="probe", model="probe",
                       started_at=started_at, first_epoch_at=first_epoch_at, pid=os.getpid(),
                       process_cpu_s=time.process_time(), reported_at=time.time())
        improved = metrics[METRIC] > best + 1e-6
        best, since_best = max(best, metrics[METRIC]), 0 if improved else since_best + 1
        metrics["final_epoch"] = since_best >= int(hp["patience"]) or epoch >= int(fixed["max_epochs"])
        if improved:
            with tempfile.TemporaryDirectory() as tmp:
                per_class = per_class_f1(probs, yv, labels) if len(yv) else {}
                write_checkpoint(tmp, weights, hp, fixed, {**metrics, "per_class_f1": per_class})
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        else:
            tune.report(metrics)
        if metrics["final_epoch"]:  # early stopping (as in CNN trials), or max_epochs
            break
        epoch_start = time.time()
