"""Paths are URIs: local paths, NFS, ``s3://`` and ``gs://`` all go through pyarrow filesystems.

Writes are atomic: the data goes to a temporary name beside the target, then is renamed over it, so a
crash never leaves a half-written manifest or report behind.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

if TYPE_CHECKING:
    import pandas as pd


def is_remote(uri: str) -> bool:
    """True for ``scheme://`` URIs other than ``file://``."""
    return "://" in uri and not uri.startswith("file://")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return (pyarrow filesystem, path inside it) for a local path or URI."""
    if not is_remote(uri):
        local = uri[len("file://"):] if uri.startswith("file://") else uri
        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve())
    return pafs.FileSystem.from_uri(uri)


def to_uri(fs: pafs.FileSystem | None, path: str) -> str:
    """A URI for ``path`` inside filesystem ``fs`` (Ray reports paths without their scheme: ``bucket/key``)."""
    if fs is None or "://" in path or fs.type_name == "local":
        return path
    scheme = {"s3": "s3", "gcs": "gs"}.get(fs.type_name, fs.type_name)
    return f"{scheme}://{path}"


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/' (``os.path.join`` would break ``s3://`` URIs on Windows-like rules)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically (temp name + rename; object stores write whole objects)."""
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_table(df: "pd.DataFrame", uri: str) -> None:
    """Write a DataFrame as Parquet or CSV (by suffix), atomically."""
    buf = io.BytesIO()
    if uri.endswith(".csv"):
        df.to_csv(buf, index=False)
    else:
        df.to_parquet(buf, index=False)
    write_bytes(uri, buf.getvalue())


def read_table(uri: str, stage_hint: str = "") -> "pd.DataFrame":
    """Read a Parquet or CSV table; a missing file names the stage that writes it."""
    import pandas as pd

    if not exists(uri):
        hint = f" Run `{stage_hint}` first." if stage_hint else ""
        raise FileNotFoundError(f"{uri} does not exist.{hint}")
    data = io.BytesIO(read_bytes(uri))
    return pd.read_csv(data) if uri.endswith(".csv") else pd.read_parquet(data)


def list_files(uri: str) -> list[str]:
    """All files under a folder URI, recursively, sorted; URIs keep their scheme."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        raise NotADirectoryError(f"{uri} is not a folder")
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File)
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        files = [f"{scheme}://{f}" for f in files]
    return files


def download_dir(uri: str, dest: str) -> str:
    """Copy folder ``uri`` (with its subfolders) to local folder ``dest``; returns ``dest``."""
    base = uri.rstrip("/")
    for f in list_files(base):
        target = Path(dest, f[len(base):].lstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_bytes(f))
    return dest


def local_dir(uri: str) -> str:
    """A local folder path for ``uri``; remote URIs are refused with the reason."""
    if is_remote(uri):
        raise ValueError(f"{uri}: this step needs a local or NFS folder, not an object-store URI")
    _, path = filesystem(uri)
    os.makedirs(path, exist_ok=True)
    return path
