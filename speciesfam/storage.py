"""Paths are URIs: local paths, NFS, ``s3://`` and ``gs://`` all go through pyarrow filesystems.

Writes are atomic: the data goes to a temporary name beside the target, then is renamed over it, so a
crash never leaves a half-written manifest or report behind.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import tempfile
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

if TYPE_CHECKING:
    import pandas as pd


# A file URI of this machine (RFC 8089, any case): file:///x, file://localhost/x and file:/x; its path follows.
_FILE_URI = re.compile(r"file:(?://(?:localhost)?(?=/)|(?=/(?!/)))", re.IGNORECASE)


def is_remote(uri: str) -> bool:
    """True for ``scheme://`` URIs other than this machine's ``file:`` URIs."""
    return "://" in uri and not _FILE_URI.match(uri)


def file_uri_path(uri: str) -> str | None:
    """The path of a file URI of this machine, its %-escapes decoded (``Path.as_uri()`` writes a space as %20);
    None for anything else."""
    from urllib.parse import unquote

    head = _FILE_URI.match(uri)
    return unquote(uri[head.end():]) if head else None


def local_path(uri: str) -> str:
    """The path of a local path (as written, '%' and all; ``~`` expanded) or file URI."""
    path = file_uri_path(uri)
    return path if path is not None else os.path.expanduser(uri)


def within(uri: str, folder: str) -> bool:
    """True when ``uri`` is ``folder`` or inside it: local paths (and file URIs) once links are resolved,
    remote URIs by their text."""
    if is_remote(uri) != is_remote(folder):
        return False
    if is_remote(uri):
        a, b = uri.rstrip("/"), folder.rstrip("/")
        return a == b or a.startswith(b + "/")
    a, b = os.path.realpath(local_path(uri)), os.path.realpath(local_path(folder))
    return os.path.commonpath([a, b]) == b


# How long each request of a gs:// read retries (a `?retry_limit_seconds=N` URI sets its own). An unreachable
# object's read makes two requests, each retried this long: its row fails after about twice this.
GCS_RETRY_S = 15


def said(err: BaseException, limit: int = 300) -> str:
    """An error's message as one short line for a row's reason or a one-line error: its first line (its type's
    name if empty), without a GCS status's error_info dump, its head and its tail (where clients put the cause)
    when longer than ``limit``. A gs:// row's reason was 1,000 characters."""
    import re

    text = (str(err).strip().splitlines() or [""])[0].strip() or type(err).__name__
    text = re.sub(r"\s*error_info=\{.*\}\s*(\)?)$", r"\1", text)
    half = (limit - 5) // 2
    return text if len(text) <= limit else f"{text[:half]} ... {text[-half:]}"


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return (pyarrow filesystem, path inside it) for a local path or URI."""
    if not is_remote(uri):
        local = Path(local_path(uri))
        try:
            resolved = local.resolve()
        except RuntimeError:  # a link loop: the link itself (reading it then fails as an OSError)
            resolved = Path(os.path.abspath(local))
        return pafs.LocalFileSystem(), str(resolved)
    if uri.split("://", 1)[0] in ("gs", "gcs") and "retry_limit_seconds=" not in uri:
        # GCS's client retries for 15 minutes by default: one unreachable row stalled a whole catalog
        uri += ("&" if "?" in uri else "?") + f"retry_limit_seconds={GCS_RETRY_S}"
    try:
        return pafs.FileSystem.from_uri(uri)
    except ValueError as err:  # pyarrow's ArrowInvalid: a scheme it has no filesystem for (https://, ftp://)
        from .errors import SourceError

        raise SourceError(f"{uri}: {uri.split('://', 1)[0]}:// is not a storage speciesfam reads (local paths, "
                          "file://, s3://, gs://)") from err


def to_uri(fs: pafs.FileSystem | None, path: str) -> str:
    """A URI for ``path`` inside filesystem ``fs`` (Ray reports paths without their scheme: ``bucket/key``)."""
    if fs is None or "://" in path or fs.type_name == "local":
        return path
    scheme = {"s3": "s3", "gcs": "gs"}.get(fs.type_name, fs.type_name)
    return f"{scheme}://{path}"


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/' (``os.path.join`` would break ``s3://`` URIs on Windows-like rules)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def parent(uri: str) -> str:
    """The folder holding ``uri``: the URI's parent, or an absolute local path (relative paths resolved)."""
    if is_remote(uri):
        return uri.rsplit("/", 1)[0]
    return os.path.dirname(filesystem(uri)[1])


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    """True for a local folder or a bucket prefix holding objects (``s3://bucket/images``); False for a file,
    nothing there, or a scheme speciesfam does not read (whoever reads that path says so)."""
    from .errors import SourceError

    if not is_remote(uri):  # os, not pyarrow: a name that is not UTF-8 is still a path here
        return os.path.isdir(local_path(uri))
    try:
        fs, path = filesystem(uri)
    except SourceError:
        return False
    return fs.get_file_info(path).type == pafs.FileType.Directory


BROKEN_LINK = "broken symbolic link (target missing, or a link loop)"


class NotRegularFileError(OSError):
    """A local path that is a FIFO, socket, device or folder where a file was expected (the message says which)."""


def open_input(uri: str):
    """A pyarrow input stream of the file at ``uri``. A local path that is not a regular file is refused with
    OSError naming what it is (opening a FIFO would block until something wrote to it: a hung catalog or
    predict: ``NotRegularFileError``), a broken symbolic link with FileNotFoundError(``BROKEN_LINK``)."""
    fs, path = filesystem(uri)
    if fs.type_name == "local":
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.islink(local_path(uri)):
                raise FileNotFoundError(BROKEN_LINK) from None
            raise
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(_not_regular(mode))
    return fs.open_input_stream(path)


def read_bytes(uri: str) -> bytes:
    with open_input(uri) as f:
        return f.read()


def check_creatable(uri: str) -> None:
    """Raise the OSError that making local folder ``uri``, or writing in it, would raise (a path under a file,
    no write access, a read-only mount, /proc), leaving nothing behind: a command refuses an unusable run folder
    before its work, and a refused one writes none."""
    if is_remote(uri):
        return
    path = filesystem(uri)[1]
    above = path
    while not os.path.lexists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    if os.path.isdir(above):  # the folder itself when it exists: its files are written there
        try:  # tried, not os.access: root passes that check on read-only mounts and in /proc
            os.rmdir(tempfile.mkdtemp(prefix=".speciesfam-check-", dir=above))
        except OSError as err:
            raise type(err)(err.errno, f"cannot create a folder in {above} ({err.strerror})", uri) from None
        return
    raise NotADirectoryError(errno.ENOTDIR, f"{above} is not a folder", uri)


def require_creatable(uri: str, flag: str, purpose: str, given: str | None = None) -> None:
    """``check_creatable`` as the command's one-line refusal naming its flag and the value ``given`` (default
    ``uri``): ``--out X: /a is not a folder; give a folder for the bundle``."""
    from .errors import SpeciesfamError

    try:
        check_creatable(uri)
    except OSError as err:
        raise SpeciesfamError(f"{flag} {given or uri}: {err.strerror}; give a folder for {purpose}") from None


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
    if uri.lower().endswith(".csv"):
        df.to_csv(buf, index=False)
    else:
        df.to_parquet(buf, index=False)
    write_bytes(uri, buf.getvalue())


def read_table(uri: str, stage_hint: str = "") -> "pd.DataFrame":
    """Read a Parquet or CSV table; a missing file names the stage that writes it."""
    import pandas as pd

    if not exists(uri):
        if stage_hint:  # a stage's output the user has not made yet: one line on the console, not a traceback
            from .errors import StageOrderError

            raise StageOrderError(f"{uri} does not exist. Run `{stage_hint}` first.")
        raise FileNotFoundError(f"{uri} does not exist.")
    kind = "CSV" if uri.lower().endswith(".csv") else "Parquet"
    try:
        data = read_bytes(uri)
        if kind == "Parquet":
            return pd.read_parquet(io.BytesIO(data))
        from .layout import TEXT_COLUMNS

        # Only an empty cell is missing (no "NA"/"null" guessing); names and ids stay text as written.
        text = [c for c in pd.read_csv(io.BytesIO(data), nrows=0).columns if c in TEXT_COLUMNS]
        return pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""], dtype=dict.fromkeys(text, str))
    except Exception as err:  # a folder, a damaged or foreign file: one line naming it, not pyarrow's traceback
        from .errors import SourceError

        raise SourceError(f"{uri} cannot be read as a {kind} table ({type(err).__name__}: {said(err, 200)}); "
                          f"give the {kind} file speciesfam wrote, or another path") from err


@dataclass(frozen=True)
class Entry:
    """One file found by ``walk``.

    Attributes:
        path: local absolute path or URI (through the links it was reached by, as the user sees it).
        rel: the path relative to the walked folder, '/'-separated.
        problem: empty for a regular file; otherwise why it cannot be read as one (broken link, a FIFO, a
            folder that cannot be listed, a name that is not UTF-8).
    """

    path: str
    rel: str
    problem: str = ""


def walk(uri: str, file_links: bool = False) -> tuple[list[Entry], int]:
    """Every file under folder ``uri``, each real file once; returns (entries, aliases).

    Local folders: symlinked folders are followed, but only after every real folder was walked and only
    once per real folder, so a loop (``Beta/loop -> ..``) or a second link to the same place lists nothing
    twice and a file is named by its real location when it has one inside the tree. ``aliases`` counts the
    links to files or folders already listed. ``file_links``: list every link to a file as well, under its
    own name, after the real files (catalog does: a link in another family's folder gives an image a second
    label, which must show as a conflict, as a copy of its bytes would). Object stores have no links.

    Raises:
        NotADirectoryError: ``uri`` is not a folder.
    """
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise NotADirectoryError(f"{uri} is not a folder")
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File)
        return [Entry(f"{scheme}://{f}", f[len(path):].lstrip("/")) for f in files], 0
    return _walk_local(path, file_links)


def _walk_local(root: str, list_file_links: bool) -> tuple[list[Entry], int]:
    entries: list[Entry] = []
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    aliases = 0
    folders: deque[tuple[str, str]] = deque([(root, "")])  # (path, rel): real folders, breadth first
    dir_links: deque[tuple[str, str]] = deque()  # followed once no real folder is left
    file_links: list[tuple[str, str]] = []  # placed last: the real file, when in the tree, names itself

    def add(path: str, rel: str, real: str | None, problem: str = "") -> None:
        nonlocal aliases
        if real is not None:
            if real in seen_files:
                aliases += 1
                return
            seen_files.add(real)
        if not _utf8(path):  # a name Parquet cannot store: keep a readable form, say why it is unusable
            path = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            problem = problem or "file name is not valid UTF-8"
        entries.append(Entry(path, rel, problem))

    while folders or dir_links:
        if not folders:
            link, rel = dir_links.popleft()
            if os.path.realpath(link) in seen_dirs:
                aliases += 1
            else:
                folders.append((link, rel))
            continue
        folder, rel = folders.popleft()
        real_folder = os.path.realpath(folder)
        if real_folder in seen_dirs:
            aliases += 1
            continue
        seen_dirs.add(real_folder)
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as err:
            add(folder, rel, None, f"cannot list folder: {err.strerror or err}")
            continue
        for e in children:
            child_rel = f"{rel}/{e.name}" if rel else e.name
            try:
                if e.is_symlink():
                    try:
                        mode = os.stat(e.path).st_mode
                    except OSError:
                        add(e.path, child_rel, None, BROKEN_LINK)
                        continue
                    if stat.S_ISDIR(mode):
                        dir_links.append((e.path, child_rel))
                    elif stat.S_ISREG(mode):
                        file_links.append((e.path, child_rel))
                    else:
                        add(e.path, child_rel, os.path.realpath(e.path), _not_regular(mode))
                elif e.is_dir(follow_symlinks=False):
                    folders.append((e.path, child_rel))
                elif e.is_file(follow_symlinks=False):
                    add(e.path, child_rel, os.path.join(real_folder, e.name))
                else:
                    add(e.path, child_rel, os.path.join(real_folder, e.name), _not_regular(e.stat().st_mode))
            except OSError as err:  # vanished or unreadable while walking
                add(e.path, child_rel, None, f"cannot stat: {err.strerror or err}")
    for link, rel in file_links:
        add(link, rel, None if list_file_links else os.path.realpath(link))
    return entries, aliases


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_regular(mode: int) -> str:
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a folder" if stat.S_ISDIR(mode) else
            "not a file")
    return f"not a regular file ({kind})"


def list_files(uri: str) -> list[str]:
    """All regular files under a folder URI, recursively, each real file once (see ``walk``), sorted."""
    return sorted(e.path for e in walk(uri)[0] if not e.problem)


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
        from .errors import ConfigError

        raise ConfigError(f"{uri}: this step writes to a local or NFS folder, not an object-store URI; give a "
                          "folder path")
    _, path = filesystem(uri)
    os.makedirs(path, exist_ok=True)
    return path
