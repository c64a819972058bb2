"""The decoded-image cache: built once per size from the one decode path, reused, and read by training with
the same values (and so the same model) as decoding every JPEG."""

import os

import numpy as np
import pytest
from conftest import pickle_by_value

from speciesfam.data.catalog import build_manifest


@pytest.fixture(scope="module")
def catalogued(collection, tmp_path_factory):
    root, _ = collection
    workdir = tmp_path_factory.mktemp("cache")
    m = build_manifest(str(root))
    m.to_parquet(workdir / "manifest.parquet")
    return workdir, m


def test_cache_holds_each_usable_image_once_decoded_like_training_did_and_is_reused(catalogued, ray_session,
                                                                                     capsys):
    from speciesfam import storage
    from speciesfam.data import image_cache
    from speciesfam.data.images import decode_rgb

    workdir, m = catalogued
    ok = m[m["status"] == "ok"]
    uri = image_cache.build(str(workdir), m, 32)
    n = ok["sha256"].nunique()  # the build is said (at 224 px on 12k images it takes minutes), the reuse is not
    assert capsys.readouterr().out.splitlines() == [
        f"tune: decoding {n} images once into the image cache (32 px), read by every trial"]
    images, rows = image_cache.load(uri)
    assert images.dtype == np.uint8 and images.shape == (ok["sha256"].nunique(), 32, 32, 3)
    for path, sha in zip(ok["path"], ok["sha256"]):
        np.testing.assert_array_equal(images[rows[sha]], decode_rgb(storage.read_bytes(path), size=32))
    stamp = os.stat(os.path.join(uri, image_cache.IMAGES)).st_mtime_ns
    assert image_cache.build(str(workdir), m, 32) == uri  # covered: nothing decoded or written again
    assert os.stat(os.path.join(uri, image_cache.IMAGES)).st_mtime_ns == stamp
    smaller = image_cache.build(str(workdir), m[m["label"] != "Felidae"], 32)  # a subset is covered too
    assert smaller == uri and os.stat(os.path.join(uri, image_cache.IMAGES)).st_mtime_ns == stamp
    assert capsys.readouterr().out == ""
    other = image_cache.build(str(workdir), m, 48)  # another size: its own cache
    assert other != uri and image_cache.load(other)[0].shape[1:] == (48, 48, 3)


def test_cached_batches_equal_decoded_batches(catalogued, ray_session):
    from speciesfam.data import image_cache
    from speciesfam.data.tfdata import cached_dataset, dataset, split_arrays

    workdir, m = catalogued
    labels = sorted(m.loc[m["status"] == "ok", "label"].unique())
    images, rows = image_cache.load(image_cache.build(str(workdir), m, 32))
    paths, y = split_arrays(m, "train", labels)
    keys, y2 = split_arrays(m, "train", labels, rows)
    np.testing.assert_array_equal(y, y2)
    for kwargs in ({}, {"shuffle": True, "seed": 3, "shard": (2, 1)}):
        decoded = list(dataset(paths, y, 32, 8, **kwargs).as_numpy_iterator())
        cached = list(cached_dataset(images, keys, y, 8, **kwargs).as_numpy_iterator())
        assert len(decoded) == len(cached) > 0
        for (xa, ya), (xb, yb) in zip(decoded, cached):
            assert xb.dtype == np.float32
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


@pytest.mark.slow  # two Ray Train runs (~80 s here); the default suite trains from the cache in the demo's search
def test_training_from_the_cache_matches_decoding_and_reports_its_start_up(catalogued, tmp_path, ray_session):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from speciesfam.data import image_cache
    from speciesfam.train.loop import train_loop_per_worker
    from speciesfam.tune.search import WORKER_ENV

    workdir, m = catalogued
    labels = sorted(m.loc[m["status"] == "ok", "label"].unique())
    config = {"manifest": str(workdir / "manifest.parquet"), "labels": labels, "model": "scratch_sequential",
              "image_size": 32, "weights": None, "max_epochs": 1, "seed": 0, "kind": "scratch",
              "hp": {"batch_size": 8, "filters": 4, "depth": 1, "head_units": 8, "shuffle": False}}
    runs = {}
    for name, extra in (("decoded", {}), ("cached", {"image_cache": image_cache.build(str(workdir), m, 32)})):
        runs[name] = TensorflowTrainer(
            train_loop_per_worker, train_loop_config={**config, **extra},
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
            run_config=RunConfig(name=name, storage_path=str(tmp_path),
                                 worker_runtime_env={"env_vars": WORKER_ENV})).fit().metrics
    assert runs["cached"]["train_loss"] == pytest.approx(runs["decoded"]["train_loss"], rel=1e-5)
    assert runs["cached"]["val_macro_f1"] == pytest.approx(runs["decoded"]["val_macro_f1"], abs=1e-9)
    assert runs["cached"]["kind"] == "scratch" and runs["cached"]["model"] == "scratch_sequential"
    for part in ("imports", "strategy", "dataset", "model", "first_step"):
        assert runs["cached"][f"startup_{part}_s"] >= 0


pickle_by_value(__name__)
