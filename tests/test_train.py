"""Multi-worker training under Ray Train: 2 workers agree with each other and with 1 worker; resume works; the
image cache trains the same model as decoding every JPEG."""

import numpy as np
import pytest
from conftest import pickle_by_value

from speciesfam.data.catalog import build_manifest


@pytest.fixture(scope="module")
def small_manifest(collection, tmp_path_factory):
    """32 training rows (2 global batches of 16) and 8 validation rows, in a fixed order."""
    root, _ = collection
    m = build_manifest(str(root))
    ok = m.index[m["status"] == "ok"]
    m.loc[ok[:32], "split"] = "train"
    m.loc[ok[32:40], "split"] = "val"
    m.loc[ok[40:], "status"] = "removed"
    path = tmp_path_factory.mktemp("train") / "manifest.parquet"
    m.to_parquet(path)
    labels = sorted(m.loc[ok[:40], "label"].unique())
    return str(path), labels


def _config(manifest, labels, **extra):
    hp = {"batch_size": 16, "filters": 4, "depth": 2, "head_units": 8, "dropout": 0.0, "augment": 0.0,
          "shuffle": False, "lr": 0.01}
    cfg = {"manifest": manifest, "labels": labels, "model": "scratch_sequential", "image_size": 32,
           "weights": None, "max_epochs": 2, "seed": 0}
    hp.update(extra.pop("hp", {}))
    return {**cfg, "hp": hp, **extra}


def _train_and_dump(config):
    """Runs the real training on this worker, then saves this worker's final weights for the test."""
    import os

    import ray.train

    from speciesfam.train.loop import run_training

    ctx = ray.train.get_context()
    model = run_training(config, ctx, ray.train.report, None)
    np.savez(os.path.join(config["dump"], f"rank{ctx.get_world_rank()}.npz"), *model.get_weights())


def _fit(fn, config, workers, storage, name):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from speciesfam.tune.search import WORKER_ENV

    return TensorflowTrainer(fn, train_loop_config=config,
                             scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 0.5}),
                             run_config=RunConfig(name=name, storage_path=str(storage),
                                                  worker_runtime_env={"env_vars": WORKER_ENV})).fit()


def _weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow  # ~60-100 s: a 1-worker, a 2-worker and a resumed 2-worker Ray Train run (MultiWorkerMirroredStrategy)
def test_two_workers_match_each_other_and_one_worker_and_resume_from_their_checkpoint(small_manifest, tmp_path,
                                                                                      ray_session):
    import json
    import os

    import keras
    import pandas as pd

    from speciesfam.data import image_cache
    from speciesfam.train.loop import train_loop_per_worker

    manifest, labels = small_manifest
    # per-worker batch 8 x 2 workers = the same global batch of 16 as 1 worker x 16; unshuffled shards
    # (rows 0,2,4.. and 1,3,5..) make the two global batches hold exactly the 1-worker batches' images.
    # The 1-worker run reads the image cache, the others decode every JPEG: the same model, so training from the
    # cache is training on the same images (test_image_cache.py checks its batches bit for bit; two more runs
    # here, cache against decoding, cost ~65 s of CI).
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    cache = image_cache.build(os.path.dirname(manifest), pd.read_parquet(manifest), 32)
    r1 = _fit(_train_and_dump, _config(manifest, labels, dump=str(one), image_cache=cache), 1, tmp_path, "one")
    for part in ("imports", "strategy", "dataset", "model", "first_step"):  # its start-up, in epoch 1's report
        assert r1.metrics_dataframe[f"startup_{part}_s"].iloc[0] >= 0
    r2 = _fit(_train_and_dump, _config(manifest, labels, dump=str(two), hp={"batch_size": 8}), 2, tmp_path, "two")
    w0, w1, single = _weights(two / "rank0.npz"), _weights(two / "rank1.npz"), _weights(one / "rank0.npz")
    for a, b, c in zip(w0, w1, single):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # workers hold the same weights
        np.testing.assert_allclose(a, c, rtol=1e-3, atol=1e-4)  # and match one worker on the same batches
    assert r2.metrics["global_batch"] == r1.metrics["global_batch"] == 16
    assert r2.metrics["val_macro_f1"] == pytest.approx(r1.metrics["val_macro_f1"], abs=1e-9)
    assert r2.metrics["val_accuracy"] == pytest.approx(r1.metrics["val_accuracy"], abs=1e-9)

    # the 2-worker run's checkpoint round-trips, and a run resumed from it goes on from its epoch
    ckpt = r2.checkpoint.path
    state, meta = json.load(open(f"{ckpt}/state.json")), json.load(open(f"{ckpt}/config.json"))
    assert state["epoch"] in (1, 2) and meta["labels"] == labels and meta["image_size"] == 32
    saved = json.load(open(f"{ckpt}/metrics.json"))
    assert set(saved["per_class_f1"]) == set(labels)
    keras.saving.load_model(f"{ckpt}/model.keras", safe_mode=True)
    resumed = _fit(train_loop_per_worker, _config(manifest, labels, max_epochs=4, resume_from=ckpt,
                                                  hp={"batch_size": 8}), 2, tmp_path, "resumed")
    assert resumed.metrics_dataframe["epoch"].tolist() == list(range(state["epoch"] + 1, 5))  # did not start over


pickle_by_value(__name__)  # Ray workers cannot import test modules: ship this module's functions by value


@pytest.mark.slow  # ~20 s: one Ray Train run whose loss becomes NaN in its first epoch
def test_a_loss_that_becomes_nan_fails_the_run_saying_so(small_manifest, tmp_path, ray_session):
    """A learning rate no search space may hold (spaces refuse lr above 10) reaches the loop only from a caller
    of its own; the loop's guard still fails the run at the epoch the loss stopped being a number, naming it."""
    from ray.train import WorkerGroupError

    from speciesfam.train.loop import train_loop_per_worker

    manifest, labels = small_manifest
    config = _config(manifest, labels, max_epochs=1, hp={"lr": float("inf"), "optimizer": "sgd"})
    with pytest.raises(WorkerGroupError) as caught:
        _fit(train_loop_per_worker, config, 1, tmp_path, "nan")
    assert "training loss became nan in epoch 1 (lr=inf); the trial is marked failed" in str(caught.value)


def test_a_trial_resumed_from_its_last_epochs_checkpoint_reports_that_epoch_again(small_manifest, tmp_path):
    """An interrupt after a CNN trial saved its last epoch and before Tune took that epoch's result: the resume
    restored the checkpoint, trained nothing and reported nothing, and the trial ended 'finished' on the epoch
    before (hostile tester round 53: 3 epochs of 4, its better last epoch lost). The resume reports it again,
    with its checkpoint, and trains no further."""
    import shutil
    from types import SimpleNamespace

    from speciesfam.train.loop import run_training

    manifest, labels = small_manifest
    reports = []

    def report(metrics, checkpoint=None):  # what Ray Train's report keeps: the metrics and the checkpoint's files
        kept = shutil.copytree(checkpoint.path, tmp_path / f"ckpt{len(reports)}") if checkpoint else None
        reports.append((metrics, kept))

    ctx = SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1)
    run_training(_config(manifest, labels), ctx, report, None)
    assert [m["epoch"] for m, _ in reports] == [1, 2] and reports[-1][0]["final_epoch"]
    import ray.train

    last, checkpoint = reports[-1]
    run_training(_config(manifest, labels), ctx, report, ray.train.Checkpoint.from_directory(str(checkpoint)))
    assert len(reports) == 3 and reports[2][1] is not None
    again = reports[2][0]
    assert (again["epoch"], again["final_epoch"], again["val_macro_f1"]) == (2, True, last["val_macro_f1"])
