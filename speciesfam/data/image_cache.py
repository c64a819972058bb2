"""Decoded-image cache: every usable image decoded and resized once per image size, then read by every trial.

Without it each CNN trial decodes and resizes every JPEG again in every epoch. The cache of a run lives in
RUN/image_cache/<size>px/ (shared storage on a cluster, like the run folder): ``images.npy``, a uint8 array
of shape (N, size, size, 3) made by the one decode path (``data.images.decode_rgb``), and ``index.parquet``,
the sha256 of each row and the decode path's version (written last: a cache without its index, or made by
another version of the decode path, is rebuilt). Images are
keyed by content, so duplicates share a row and a re-run catalog reuses what is still there. The tune driver
builds it before the first trial, decoding in Ray tasks spread over the cluster; trials open it read-only
(memory-mapped on local disk and NFS; object-store caches are read whole into memory).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from .. import layout, stages, storage

if TYPE_CHECKING:
    import pandas as pd

IMAGES, INDEX = "images.npy", "index.parquet"
CHUNK = 64  # images per decode task: large enough to amortise a task, small enough to spread over workers
TRAINED = ("train", "val")  # the splits trials read (train_epochs, best epoch): cached; test is evaluate's, from files


def cache_uri(workdir: str, size: int) -> str:
    return layout.path(workdir, layout.IMAGE_CACHE, f"{size}px")


def _decode_chunk(paths: list[str], hashes: list[str], size: int) -> np.ndarray:
    from .images import DecodeError, read_rgb

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, (path, sha256) in enumerate(zip(paths, hashes)):
        try:  # the cache is keyed by catalog's sha256: a file replaced since must not pass for the catalogued one
            out[i] = read_rgb(path, size=size, sha256=sha256)
        except DecodeError as err:
            raise DecodeError(f"{path}: {err}; it was readable when catalogued") from err
    return out


def _get(ref, workdir: str) -> np.ndarray:
    """A decode task's images; its file's error in one line (a file gone or replaced since catalog) with the
    commands that take the collection as it is now, not Ray's traceback."""
    import ray

    from ..errors import SpeciesfamError
    from .images import DecodeError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, DecodeError):
            raise SpeciesfamError(f"the image cache: {err.cause}: {stages.rerun(workdir, 'catalog', 'clean')}") \
                from None
        raise


def _check_unchanged(workdir: str, rows: "pd.DataFrame") -> None:
    """Before a built cache is reused: no local file was replaced since catalog (a stat each; hashed when its
    size or modification time moved). A cache read no file, so a replaced image trained as its old pixels,
    where a cache being built refuses it (hostile tester)."""
    from ..errors import SpeciesfamError
    from .embedding import catalogued_at, changed_since_catalog

    changed = changed_since_catalog(rows, catalogued_at(workdir))
    if changed:
        path, why = next(iter(changed.items()))
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise SpeciesfamError(f"the image cache: {path}{more}: {why}; it was readable when catalogued: "
                              f"{stages.rerun(workdir, 'catalog', 'clean')}")


def build(workdir: str, manifest: "pd.DataFrame", size: int) -> str:
    """Make sure the cache of ``size`` holds every usable train and val image of ``manifest`` (what trials read;
    a test image, scored by evaluate from its file, was decoded for nothing, and its change since catalog stopped
    the search: docs auditor); returns the cache's URI.

    Reuses a complete cache that already covers them (no decoding at all); otherwise decodes them all in Ray
    tasks and writes the cache atomically (array first, index last).
    """
    import pandas as pd
    import ray

    from ..console import Progress, say
    from .images import DECODER

    uri = cache_uri(workdir, size)
    rows = manifest[(manifest["status"] == layout.OK) & manifest["split"].isin(TRAINED)].drop_duplicates("sha256")
    if storage.exists(storage.join(uri, INDEX)):
        index = storage.read_table(storage.join(uri, INDEX))
        if len(index) and ("decoder" not in index or not index["decoder"].eq(DECODER).all()):
            say(f"tune: the image cache ({size} px) was made by an older decode path; decoding it again")
        elif set(rows["sha256"]) <= set(index["sha256"]):
            _check_unchanged(workdir, rows)
            return uri

    decode = ray.remote(num_cpus=1)(_decode_chunk)
    paths, hashes = rows["path"].tolist(), rows["sha256"].tolist()
    say(f"tune: decoding {len(paths)} images once into the image cache ({size} px), read by every trial")
    progress = Progress("tune", len(paths), "images in the image cache")
    refs = [decode.remote(paths[i:i + CHUNK], hashes[i:i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, IMAGES)
        images = np.lib.format.open_memmap(local, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        for i, ref in enumerate(refs):  # in order, so row k is paths[k]
            chunk = _get(ref, workdir)
            images[i * CHUNK:i * CHUNK + len(chunk)] = chunk
            progress.add(len(chunk))
        images.flush()
        del images
        fs, path = storage.filesystem(storage.join(uri, IMAGES))
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if fs.type_name == "local":
            shutil.move(local, f"{path}.tmp")
            os.replace(f"{path}.tmp", path)
        else:
            with open(local, "rb") as src, fs.open_output_stream(path) as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
    storage.write_table(pd.DataFrame({"sha256": rows["sha256"].to_numpy(), "decoder": DECODER}),
                        storage.join(uri, INDEX))
    return uri


def load(uri: str) -> tuple[np.ndarray, dict[str, int]]:
    """(images, row of each sha256) of a built cache; local caches are memory-mapped read-only."""
    index = storage.read_table(storage.join(uri, INDEX), stage_hint="speciesfam tune (it builds the image cache)")
    images_uri = storage.join(uri, IMAGES)
    if storage.is_remote(images_uri):
        images = np.load(io.BytesIO(storage.read_bytes(images_uri)))
    else:
        images = np.load(storage.filesystem(images_uri)[1], mmap_mode="r")
    if len(images) != len(index):
        raise ValueError(f"{uri}: {len(images)} images but {len(index)} index rows; delete the folder to rebuild it")
    return images, {sha: i for i, sha in enumerate(index["sha256"])}
