"""tf.data input for training: decode through the one decode path, resize, shard per worker, batch, prefetch.

Augmentation lives in the model (layers active only in training), so this pipeline is the same for
training, evaluation and prediction apart from shuffling and sharding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import storage
from .images import decode_rgb

if TYPE_CHECKING:
    import pandas as pd


def split_arrays(manifest: "pd.DataFrame", split: str, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(paths, integer labels) of the usable rows of ``split``, in manifest order."""
    rows = manifest[(manifest["status"] == "ok") & (manifest["split"] == split)]
    index = {lab: i for i, lab in enumerate(labels)}
    return rows["path"].to_numpy(dtype=str), rows["label"].map(index).to_numpy(dtype=np.int32)


def load_image(path: bytes | str, size: int) -> np.ndarray:
    """float32 (size, size, 3) in 0..255 for one path (bytes when called from tf.numpy_function)."""
    path = path.decode() if isinstance(path, bytes) else path
    return decode_rgb(storage.read_bytes(path), size=size).astype(np.float32)


def dataset(paths: np.ndarray, labels: np.ndarray, image_size: int, batch_size: int, *, shuffle: bool = False,
            seed: int = 0, repeat: bool = False, shard: tuple[int, int] | None = None):
    """A batched tf.data.Dataset of (images, labels).

    Args:
        shard: (num_shards, index): this worker's share, taken before shuffling so shards are disjoint.
        repeat: repeat forever (training counts steps per epoch itself, so every worker runs the same
            number of steps and collectives never wait on a worker that ran out of data).
    """
    from .._lazy import tensorflow

    tf = tensorflow()
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shard:
        ds = ds.shard(*shard)
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def decode(path, label):
        img = tf.numpy_function(lambda p: load_image(p, image_size), [path], tf.float32)
        img.set_shape((image_size, image_size, 3))
        return img, label

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
