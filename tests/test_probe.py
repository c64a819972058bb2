"""Probe trials: the graph trains exactly build_probe's model like Keras would, checkpoints follow the export
contract, trial processes are reused (2nd+ trials start at once), and warm starts reach the searcher."""

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import pickle_by_value

from speciesfam.config import TuneConfig
from speciesfam.errors import ConfigError


def _blobs(n, classes=4, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n).astype(np.int32)
    return (centers[y] + rng.normal(size=(n, dim)) * 0.7).astype(np.float32), y


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_the_probe_graph_trains_like_keras_fit(optimizer):
    """Full-batch epochs without dropout: the same weights as Keras's fit of build_probe from the same start
    (Keras's optimizer, loss with label smoothing and class weights), so the hand-written graph is that model."""
    from speciesfam._lazy import keras as _keras
    from speciesfam.models.probe import build_probe
    from speciesfam.train.loop import class_weight_vector, make_optimizer
    from speciesfam.train.probe import init_params, train_epochs

    keras = _keras()
    x, y = _blobs(60)
    data = {"train": (x, y), "val": _blobs(20, seed=1)}
    hp = {"head_units": 8, "head_layers": 2, "dropout": 0.0, "batch_size": 60, "optimizer": optimizer,
          "lr": 0.05, "weight_decay": 0.01, "label_smoothing": 0.1, "class_weighting": "balanced"}
    for _, _, probs, ours in train_epochs(data, 4, hp, 3, seed=7):
        pass
    model = build_probe(4, 12, hp)
    model.set_weights(init_params(12, 4, 2, 8, seed=7))
    model.compile(optimizer=make_optimizer(keras, optimizer, hp["lr"], hp["weight_decay"]),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp["label_smoothing"]))
    cw = class_weight_vector(y, 4, "balanced")
    model.fit(x, np.eye(4, dtype=np.float32)[y], sample_weight=cw[y], batch_size=60, epochs=3, shuffle=False,
              verbose=0)
    for a, b in zip(ours, model.get_weights()):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probs, model.predict(data["val"][0], verbose=0), atol=1e-5)


def test_bfloat16_products_train_nearly_the_float32_head(monkeypatch):
    """precision="bfloat16" (the default on CPUs with bf16 instructions) changes rounding, not the model: the
    same start, data and steps end with nearly the same weights and the same predictions."""
    from speciesfam.train.probe import resolve_precision, train_epochs

    data = {"train": _blobs(200, dim=32), "val": _blobs(100, dim=32, seed=1)}
    hp = {"head_units": 64, "head_layers": 2, "dropout": 0.2, "batch_size": 32, "optimizer": "adamw", "lr": 3e-3}
    runs = {}
    for precision in ("float32", "bfloat16"):
        for _, loss, probs, weights in train_epochs(data, 4, hp, 5, seed=3, precision=precision):
            runs[precision] = (loss, probs, [np.asarray(w) for w in weights])
    (loss32, p32, w32), (loss16, p16, w16) = runs["float32"], runs["bfloat16"]
    assert not np.allclose(w32[0], w16[0], atol=1e-6)  # the products really were bfloat16
    assert abs(loss16 - loss32) < 0.05 * loss32 + 0.01
    # (single weights can differ by Adam's whole step where a gradient is mostly rounding; the function may not)
    assert np.abs(p32 - p16).mean() < 0.02
    assert (p32.argmax(1) == p16.argmax(1)).mean() >= 0.95
    # "auto": bfloat16 only where the CPU has the instructions and oneDNN runs
    with open("/proc/cpuinfo") as f:
        flags = f.read().split()
    has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    assert resolve_precision("auto") == ("bfloat16" if has_bf16 else "float32")
    assert resolve_precision("float32") == "float32"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert resolve_precision("auto") == "float32"


def test_one_trace_serves_every_head_size_of_a_search():
    """A reused trial process traces the epoch graph once per (layers, optimizer, precision), not once per head size or
    batch size (a trace costs ~0.5 s, a probe epoch ~0.05-0.3 s)."""
    from speciesfam.train.probe import _GRAPHS, train_epochs

    data = {"train": _blobs(50, dim=6), "val": _blobs(10, dim=6, seed=1)}
    traces = []
    for units, batch in ((8, 16), (32, 50), (16, 8)):
        list(train_epochs(data, 4, {"head_units": units, "head_layers": 2, "batch_size": batch, "optimizer": "adamw"}, 2))
        traces.append(_GRAPHS[(2, "adamw", "float32")].experimental_get_tracing_count())
    assert traces[1:] == traces[:1] * 2  # (other tests' data in this process may have traced it before)


def test_a_nan_loss_fails_the_probe_with_a_clear_error():
    from speciesfam.train.probe import train_epochs

    data = {"train": _blobs(40), "val": _blobs(8, seed=1)}
    with pytest.raises(FloatingPointError, match="probe training loss became nan in epoch 1"):
        list(train_epochs(data, 4, {"lr": float("inf"), "optimizer": "sgd", "batch_size": 16}, 3))


class StartTimes:
    """A Tune callback: when each trial was started (scheduled onto a process), in Unix seconds."""

    def __new__(cls):
        from ray.tune import Callback

        class _Cb(Callback):
            def __init__(self):
                self.started = {}

            def on_trial_start(self, iteration, trials, trial, **info):
                import time

                self.started.setdefault(trial.trial_id, time.time())

        return _Cb()


def test_probe_search_reuses_processes_and_writes_the_checkpoint_contract(tmp_path, ray_session, monkeypatch,
                                                                           capsys):
    """6 probe trials, 2 at a time: later trials start their first epoch at once in a reused process; every
    checkpoint is a new best, holds weights that load into build_probe, and the contract's config."""
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.tune import search

    make_embedding_run(str(tmp_path), rows=1500, dim=64, families=12, noise=1.5)
    cb = StartTimes()
    from speciesfam.tune import tracking

    monkeypatch.setattr(tracking, "callbacks", lambda *a, **k: [cb])
    cfg = TuneConfig(kind="probe", num_samples=6, max_epochs=4, cpus_per_trial=1, max_concurrent=2,
                     scheduler="fifo")
    results = search.run_search(str(tmp_path), cfg)
    assert len(results) == 6 and not results.errors
    hist = pd.concat([r.metrics_dataframe for r in results])
    assert set(hist["kind"]) == {"probe"} and set(hist["model"]) == {"probe"}
    assert hist["pid"].nunique() <= 2  # 6 trials in (at most) the 2 processes Tune started
    first = hist.sort_values("first_epoch_at").groupby("trial_id").first()
    started = pd.Series(first.index.map(cb.started), index=first.index).sort_values()
    delay = (first["first_epoch_at"] - started)[started.index]  # in the order the trials started
    later = delay.iloc[2:]  # the first two trials start their processes and import TensorFlow
    print("start -> first epoch, s:", delay.round(3).tolist())
    assert later.median() < 0.5, delay
    for r in results:  # a checkpoint at every new best epoch, and only there; each trial keeps its 2 best
        df = r.metrics_dataframe
        f1 = df["val_macro_f1"]
        new_best = df["epoch"][f1 > f1.cummax().shift(fill_value=-1.0) + 1e-6]
        assert sorted(df["epoch"][df["checkpoint_dir_name"].notna()]) == sorted(new_best)
        assert sorted(m["epoch"] for _, m in r.best_checkpoints) == sorted(new_best)[-2:]
        on_disk = [d for d in os.listdir(r.path) if d.startswith("checkpoint_")]
        assert len(on_disk) == min(2, len(new_best)), on_disk
        # FIFO cuts nothing: each trial's last report, and only it, says it ran its course (what TPE is told)
        assert df["final_epoch"].tolist() == [False] * (len(df) - 1) + [True]
    best = results.get_best_result()
    ckpt = best.get_best_checkpoint(cfg_metric := "val_macro_f1", "max")
    assert sorted(os.listdir(ckpt.path)) == ["config.json", "metrics.json", "probe.weights.h5"]
    config = json.load(open(os.path.join(ckpt.path, "config.json")))
    assert config["kind"] == config["model"] == "probe" and config["embedding_dim"] == 64
    assert config["embedding_model"] == "synthetic-gaussian" and len(config["labels"]) == 12
    from speciesfam.train.probe import READS

    # what the trial used: no CNN defaults (augment, ...) on its card, and weight decay only for AdamW
    adamw = config["hp"]["optimizer"] == "adamw"
    assert sorted(config["hp"]) == sorted(k for k in READS if k != "weight_decay" or adamw)
    metrics = json.load(open(os.path.join(ckpt.path, "metrics.json")))
    assert metrics[cfg_metric] == pytest.approx(best.metrics_dataframe[cfg_metric].max())
    assert set(metrics["per_class_f1"]) == set(config["labels"])
    from speciesfam.models.probe import build_probe
    from speciesfam.train.probe import probe_arrays

    model = build_probe(len(config["labels"]), 64, config["hp"])
    model.load_weights(os.path.join(ckpt.path, "probe.weights.h5"))
    xv, yv = probe_arrays(str(tmp_path), config["labels"])[0]["val"]
    from speciesfam.train.metrics import classification_metrics

    assert classification_metrics(model.predict(xv, verbose=0), yv, 12)[cfg_metric] == pytest.approx(
        metrics[cfg_metric], abs=1e-6)
    assert (tmp_path / "trials.csv").exists()
    # a search keeps Tune's CSV/JSON logs (read above), writes no TensorBoard files, and leaves Tune's
    # defaults to other Tuners in the process
    assert not list((tmp_path / "tune").rglob("events.out.tfevents*"))
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ
    from speciesfam.tune.warmstart import WARM_KEYS, warm_start_points

    # Warm start of a CNN space from this probe search: the best trial's head/regularisation values, fitted.
    from search_spaces.scratch import get_search_space

    space = get_search_space(False)
    capsys.readouterr()
    (point,) = warm_start_points(str(tmp_path), str(tmp_path / "tune"), "probe", space)
    said = capsys.readouterr().out
    # clipped or not, it was taken (it said "no shared keys"), in 4 digits (it printed 17: round 61)
    assert f"dropout={float(format(point['dropout'], '.4g'))!r}" in said, said
    assert set(point) == {k for k, v in space.items() if hasattr(v, "sample")}
    top = json.loads(pd.read_csv(tmp_path / "trials.csv").iloc[0]["config"])  # the summary's best (ties: faster)
    for key in ("head_units", "head_layers", "dropout", "label_smoothing", "class_weighting"):
        value = top.get(key)
        if key == "dropout":  # the scratch space's dropout is uniform(0.1, 0.6): clipped into it
            assert point[key] == pytest.approx(min(max(value, 0.1), 0.6))
        elif value in getattr(space[key], "categories", [value]):
            assert point[key] == value
    assert "lr" in point and "lr" not in WARM_KEYS  # sampled from the CNN space, not the probe's

    # The same name again, or a resume with other settings, is refused from the run folder's files alone: before
    # Ray starts (or a CNN search's image cache is built), which took 13-17 s on 2 cores.
    from speciesfam import raycluster

    def no_ray(address=None):
        raise AssertionError("Ray was started for a search the run folder refuses")

    monkeypatch.setattr(raycluster, "init_ray", no_ray)
    with pytest.raises(ConfigError, match="--name probe: a search of that name already ran"):
        search.run_search(str(tmp_path), cfg)
    with pytest.raises(ConfigError, match=r"resume it with --num-samples 6 \(now 7\)"):
        search.run_search(str(tmp_path), dataclasses.replace(cfg, resume=True, num_samples=7))
    with pytest.raises(AssertionError, match="Ray was started"):  # an unchanged resume gets that far
        search.run_search(str(tmp_path), dataclasses.replace(cfg, resume=True))


def probe_like(config):
    from ray import tune

    tune.report({"val_macro_f1": config["dropout"], "epoch": 1})


class InterruptAt:
    """A Tune callback (in the driver): SIGTERM to the driver, as `kill` would, at a trial's epoch ``epoch``, once
    (``marker``: a file it leaves; a resumed search gets its callbacks back from the stored experiment)."""

    def __new__(cls, epoch, marker):
        from ray.tune import Callback

        class _Cb(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                import signal

                if not os.path.exists(marker) and result.get("epoch", 0) >= epoch:
                    open(marker, "w").close()
                    os.kill(os.getpid(), signal.SIGTERM)

        return _Cb()


@pytest.mark.slow  # ~40 s: a probe search interrupted, then resumed
def test_a_resumed_probe_trial_goes_on_from_its_checkpoint(tmp_path, ray_session, monkeypatch):
    """A probe trial restored by --resume started again at epoch 1 while Tune counted on from its checkpoint: ASHA
    (which counts Tune's iterations) cut it before its grace period, and trials.csv said 2 epochs (hostile tester).
    Now it goes on from its checkpoint's epoch and weights: every result's epoch is Tune's iteration."""
    from speciesfam import report_search
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.tune import search, tracking

    make_embedding_run(str(tmp_path), rows=600, dim=32, families=6, noise=1.0)
    cfg = TuneConfig(kind="probe", searcher="random", scheduler="fifo", num_samples=1, max_epochs=12,
                     cpus_per_trial=1, max_concurrent=1, name="resumed")
    monkeypatch.setattr(tracking, "callbacks", lambda *a, **k: [InterruptAt(4, str(tmp_path / "sent"))])
    search.run_search(str(tmp_path), cfg)
    trials = pd.read_csv(tmp_path / "trials.csv", dtype={"trial_id": str})
    assert report_search.trial_histories(trials)[0][trials["trial_id"][0]]["epoch"].max() < 12  # the interrupt came first
    search.run_search(str(tmp_path), dataclasses.replace(cfg, resume=True))
    trials = pd.read_csv(tmp_path / "trials.csv", dtype={"trial_id": str})
    # read as the report reads them (result.json: Tune's progress.csv misaligns its columns after a resume when
    # the first result since wrote no checkpoint, which made this test flaky)
    progress = report_search.trial_histories(trials)[0][trials["trial_id"][0]]
    assert (progress["epoch"] == progress["training_iteration"]).all(), progress[["epoch", "training_iteration"]]
    last = progress.iloc[-1]
    assert last["final_epoch"] and progress["epoch"].duplicated().sum() <= 4  # at most the epochs since its best
    assert trials["epochs_run"].tolist() == [int(progress["epoch"].max())] and trials["status"].tolist() == ["ok"], trials


@pytest.mark.parametrize("searcher", ["optuna", pytest.param("random", marks=pytest.mark.slow)])
def test_warm_start_point_is_the_searchers_first_trial(searcher, tmp_path, ray_session):
    from ray import tune

    from speciesfam.tune.search import make_tuner
    from speciesfam.tune.warmstart import fit_point

    space = {"dropout": tune.uniform(0.1, 0.6), "head_units": tune.choice([16, 32]), "lr": tune.loguniform(1e-4, 1e-2),
             "batch_size": 16}
    point = fit_point({"dropout": 0.05, "head_units": 32, "lr": 0.5, "optimizer": "adam"}, space)
    assert point["dropout"] == 0.1 and point["head_units"] == 32 and 1e-4 <= point["lr"] <= 1e-2
    assert set(point) == {"dropout", "head_units", "lr"}  # constants and foreign keys stay out
    assert fit_point({"head_units": 64}, space, seed=1)["head_units"] in (16, 32)  # not a choice: sampled
    cfg = TuneConfig(searcher=searcher, scheduler="fifo", num_samples=3, max_epochs=1, max_concurrent=1,
                     init_from="probe")
    results = make_tuner(tune.with_resources(probe_like, {"CPU": 0.5}), space, cfg, str(tmp_path), "warm",
                         points=[point]).fit()
    # the searcher's first suggestion is the first trial created: its folder's experiment tag starts with the
    # creation counter ("<trainable>_<trial id>_1_dropout=..."); Tune does not start or finish trials in that order
    # (and its timestamps are whole seconds)
    created = {int(Path(r.path).name.split(f"{r.metrics['trial_id']}_", 1)[1].split("_")[0]): r for r in results}
    assert len(created) == 3  # counted from 0 (random) or 1 (searchers)
    first = created[min(created)]
    assert {k: first.config[k] for k in point} == pytest.approx(point)
    # what a later --init-from warm reads back from the experiment: its best trial's settings
    from speciesfam.tune.warmstart import best_trial

    best = max(results, key=lambda r: r.metrics["val_macro_f1"])
    assert best_trial(str(tmp_path), str(tmp_path), "warm")[0]["dropout"] == pytest.approx(best.config["dropout"])


pickle_by_value(__name__)


def test_embeddings_that_are_not_the_last_cleans_are_refused_before_a_search(tmp_path):
    """A clean with another model, interrupted after it wrote embeddings.parquet (its cache keeps one model's rows),
    left the run's record naming the first model: a probe search trained on the other model's vectors, scored as
    the same split, and only export noticed, naming a search that tune then refused (round 72)."""
    from speciesfam import layout, stages
    from speciesfam.config import TuneConfig
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.errors import StageOrderError
    from speciesfam.tune.search import run_search

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=60, dim=4, families=3)
    stages.finish(run, "clean", config={"model_id": "open_clip:ViT-S-32:random-init-seed0"})
    emb = pd.read_parquet(tmp_path / "run" / layout.EMBEDDINGS)
    emb.assign(model_id="open_clip:ViT-S-32:random-init-seed0").to_parquet(tmp_path / "run" / layout.EMBEDDINGS)
    labels = sorted(set(pd.read_parquet(tmp_path / "run" / layout.CLEAN_MANIFEST)["label"]))
    from speciesfam.train.probe import probe_arrays

    assert len(probe_arrays(run, labels)[0]["train"][0])  # the clean's own: read
    for changed, said in ((emb.assign(model_id="open_clip:ViT-B-32:random-init-seed0"),
                           "holds embeddings of open_clip:ViT-B-32:random-init-seed0, but the last clean used "
                           "open_clip:ViT-S-32:random-init-seed0"),
                          (emb.assign(model_id="open_clip:ViT-S-32:random-init-seed0").iloc[3:],
                           "lacks the embeddings of 3 usable images the last clean kept")):
        changed.to_parquet(tmp_path / "run" / layout.EMBEDDINGS)
        with pytest.raises(StageOrderError, match=re.escape(said) + r" \(a clean interrupted after it wrote them\?\): "
                                                  r"run `speciesfam clean --workdir "):
            run_search(run, TuneConfig(kind="probe", num_samples=1, max_epochs=1))  # before Ray starts
