"""tf.data input for training: shard per worker, shuffle, batch, prefetch; images either decoded through the one
decode path and resized (``dataset``), or gathered per batch from the decoded-image cache (``cached_dataset``,
``data/image_cache.py``: no JPEG decoding in training at all).

Augmentation lives in the model (layers active only in training), so this pipeline is the same for
training, evaluation and prediction apart from shuffling and sharding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .images import DecodeError, read_rgb

if TYPE_CHECKING:
    import pandas as pd


def split_arrays(manifest: "pd.DataFrame", split: str, labels: list[str],
                 cache_rows: dict[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(paths, integer labels) of the usable rows of ``split``, in manifest order; with ``cache_rows``
    (sha256 -> row of the image cache), the cache rows instead of the paths."""
    rows = manifest[(manifest["status"] == "ok") & (manifest["split"] == split)]
    index = {lab: i for i, lab in enumerate(labels)}
    first = rows["sha256"].map(cache_rows).to_numpy(dtype=np.int64) if cache_rows is not None else \
        rows["path"].to_numpy(dtype=str)
    return first, rows["label"].map(index).to_numpy(dtype=np.int32)


def load_image(path: bytes | str, size: int, sha256: str | None = None) -> np.ndarray:
    """float32 (size, size, 3) in 0..255 for one path (bytes when called from tf.numpy_function); with
    ``sha256``, only the bytes catalog hashed. A file that cannot be read, or changed, fails the trial naming it
    (TensorFlow's error carries this message, not the path)."""
    path = path.decode() if isinstance(path, bytes) else path
    try:
        return read_rgb(path, size=size, sha256=sha256).astype(np.float32)
    except DecodeError as err:
        said = str(err) if path in str(err) else f"{path}: {err}"
        raise type(err)(f"{said}; re-run `speciesfam catalog` if the collection changed") from err


def dataset(paths: np.ndarray, labels: np.ndarray, image_size: int, batch_size: int, *, shuffle: bool = False,
            seed: int = 0, repeat: bool = False, shard: tuple[int, int] | None = None,
            hashes: dict[str, str] | None = None):
    """A batched tf.data.Dataset of (images, labels).

    Args:
        hashes: path -> the sha256 catalog recorded: a file replaced since is an error, not trained on (the
            image cache checks the same when it decodes).
        shard: (num_shards, index): this worker's share, taken before shuffling so shards are disjoint.
        repeat: repeat forever (training counts steps per epoch itself, so every worker runs the same
            number of steps and collectives never wait on a worker that ran out of data).
    """
    from .._lazy import tensorflow

    tf = tensorflow()
    ds = _ordered(tf, paths, labels, shuffle=shuffle, seed=seed, repeat=repeat, shard=shard)

    def decode(path, label):
        img = tf.numpy_function(lambda p: load_image(p, image_size, (hashes or {}).get(p.decode())), [path],
                                tf.float32)
        img.set_shape((image_size, image_size, 3))
        return img, label

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _ordered(tf, keys: np.ndarray, labels: np.ndarray, *, shuffle: bool, seed: int, repeat: bool,
             shard: tuple[int, int] | None):
    """(key, label) pairs: this worker's shard (taken before shuffling, so shards are disjoint), shuffled, repeated."""
    ds = tf.data.Dataset.from_tensor_slices((keys, labels))
    if shard:
        ds = ds.shard(*shard)
    if shuffle:
        ds = ds.shuffle(len(keys), seed=seed, reshuffle_each_iteration=True)
    return ds.repeat() if repeat else ds


def cached_dataset(images: np.ndarray, rows: np.ndarray, labels: np.ndarray, batch_size: int, *,
                   shuffle: bool = False, seed: int = 0, repeat: bool = False, shard: tuple[int, int] | None = None):
    """``dataset``'s batches, gathered from the image cache (``images``: uint8 (N, size, size, 3), e.g. a
    memory map; ``rows``: cache rows) instead of decoded: the same float32 values, one array gather per batch."""
    from .._lazy import tensorflow

    tf = tensorflow()
    size = images.shape[1]
    ds = _ordered(tf, rows, labels, shuffle=shuffle, seed=seed, repeat=repeat, shard=shard).batch(batch_size)

    def gather(batch_rows, batch_labels):
        # numpy gather from the memory map (one copy); the cast to float32 runs in TensorFlow.
        img = tf.numpy_function(lambda r: images[r], [batch_rows], tf.uint8)
        img.set_shape((None, size, size, 3))
        return tf.cast(img, tf.float32), batch_labels

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
