"""The decoded-image cache: built once per size from the one decode path, reused, and read by training with
the same values as decoding every JPEG (and so the same model: test_train.py trains from both)."""

import os
import re

import numpy as np
import pytest

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
    ok = m[(m["status"] == "ok") & (m["split"] != "test")]  # test images are evaluate's, read from their files
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


def test_a_cache_made_by_an_older_decode_path_is_decoded_again(catalogued, ray_session, capsys):
    """The cache had no version of the decode path: after the decoder changed (a float TIFF's NaN, 32-bit samples,
    key-colour PNGs) every trial still read the old pixels until the user found and deleted RUN/image_cache."""
    import pandas as pd

    from speciesfam import storage
    from speciesfam.data import image_cache
    from speciesfam.data.images import DECODER, decode_rgb

    workdir, m = catalogued
    ok = m[m["status"] == "ok"].drop_duplicates("sha256")
    uri = image_cache.cache_uri(str(workdir), 24)
    for index in (pd.DataFrame({"sha256": ok["sha256"]}), pd.DataFrame({"sha256": ok["sha256"], "decoder": 1})):
        os.makedirs(uri, exist_ok=True)  # what an older version left: other pixels for the same files
        np.save(os.path.join(uri, image_cache.IMAGES), np.zeros((len(ok), 24, 24, 3), np.uint8))
        index.to_parquet(os.path.join(uri, image_cache.INDEX))
        capsys.readouterr()
        assert image_cache.build(str(workdir), m, 24) == uri
        assert capsys.readouterr().out.splitlines()[0] == (
            "tune: the image cache (24 px) was made by an older decode path; decoding it again")
        images, rows = image_cache.load(uri)
        assert set(pd.read_parquet(os.path.join(uri, image_cache.INDEX))["decoder"]) == {DECODER}
        for path, sha, split in zip(ok["path"], ok["sha256"], ok["split"]):  # test images: not trials', not cached
            assert sha not in rows if split == "test" else \
                np.array_equal(images[rows[sha]], decode_rgb(storage.read_bytes(path), size=24))


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


def test_an_image_replaced_since_catalog_never_enters_the_cache(tmp_path, ray_session):
    """The cache is keyed by catalog's sha256 but decoded from the path: a file replaced since catalog went in
    under the old bytes' hash, and every CNN trial trained on an image catalog and clean never saw."""
    from PIL import Image

    from speciesfam.config import CatalogConfig
    from speciesfam.data import image_cache
    from speciesfam.errors import SpeciesfamError

    rng = np.random.default_rng(0)
    for family in ("A", "B"):
        (tmp_path / "img" / family).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "img" / family / f"{k}.png")
    m = build_manifest(str(tmp_path / "img"), CatalogConfig(min_images=3))
    assert (m["status"] == "ok").sum() == 6
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "img" / "B" / "1.png")
    fix = re.escape(f"re-run `speciesfam catalog SOURCE --workdir {tmp_path}`, then `speciesfam clean --workdir "
                    f"{tmp_path}`")  # no catalog record here: its source is not known
    with pytest.raises(SpeciesfamError, match=r"^the image cache: .*B/1\.png: changed since catalog \(its sha256 is "
                                              r"not the one catalog recorded.*it was readable when catalogued: " + fix
                                              + "$"):
        image_cache.build(str(tmp_path), m, 16)
    assert not (tmp_path / "image_cache").exists() or not any((tmp_path / "image_cache").rglob("index.parquet"))


def test_a_built_cache_is_not_reused_for_an_image_replaced_since_catalog(tmp_path, ray_session):
    """A cache already built read no file when reused: an image replaced since catalog trained as its old pixels
    without a word, where a cache being built refuses it (hostile tester)."""
    from PIL import Image

    from speciesfam.data import image_cache
    from speciesfam.data.catalog import run_catalog
    from speciesfam.errors import SpeciesfamError

    rng = np.random.default_rng(1)
    for family in ("A", "B"):
        (tmp_path / "img" / family).mkdir(parents=True)
        for k in range(6):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "img" / family / f"{k}.png")
    m = run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    uri = image_cache.build(str(tmp_path / "run"), m, 16)
    assert image_cache.build(str(tmp_path / "run"), m, 16) == uri  # reused while nothing changed
    test = m.loc[(m["status"] == "ok") & (m["split"] == "test"), "path"].iloc[0]
    os.remove(test)  # a test image gone: no trial reads it, nothing to refuse (it stopped the search: docs auditor)
    assert image_cache.build(str(tmp_path / "run"), m, 16) == uri
    (tmp_path / "img" / "B" / "1.png").write_bytes((tmp_path / "img" / "A" / "1.png").read_bytes())  # `cp`
    run = tmp_path / "run"  # the commands to copy, with the source and the run folder (they named neither; round 28)
    fix = re.escape(f"re-run `speciesfam catalog {tmp_path / 'img'} --workdir {run}`, then `speciesfam clean "
                    f"--workdir {run}`")
    with pytest.raises(SpeciesfamError, match=r"^the image cache: .*B/1\.png: changed since catalog \(its sha256 is "
                                              r"not the one catalog recorded.*" + fix + "$"):
        image_cache.build(str(run), m, 16)
