"""Paths are URIs: local paths, NFS, ``s3://`` and ``gs://`` all go through pyarrow filesystems.

Writes are atomic: the data goes to a temporary name beside the target, then is renamed over it, so a
crash never leaves a half-written manifest or report behind.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from .pathtext import BROKEN_LINK, said

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

        scheme = uri.split("://", 1)[0]
        raise SourceError(f"{uri}: " + (foreign_file_uri(uri) if scheme.lower() == "file" else
                                        f"{scheme}:// is not a storage speciesfam reads (local paths, file://, "
                                        "s3://, gs://)")) from err


def foreign_file_uri(uri: str) -> str:
    """Why a file:// URI with a host (not this machine's file:///x) is not read: another machine's, or a '~'."""
    if uri.split("://", 1)[1].startswith("~"):  # file://~/x: '~' read as the host
        home = os.path.expanduser("~")
        return (f"a file:// URI with '~' as its host: '~' in a URI is not your home folder; give the full path "
                f"({home}/... or file://{home}/...)")
    return ("a file:// URI of another machine (file://HOST/...); give the path as this machine sees it (e.g. where "
            "that share is mounted)")


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
            raise NotRegularFileError(not_regular(mode))
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


def raise_if_full(uri: str, err: BaseException) -> None:
    """Raise ``OSError(ENOSPC)`` naming ``uri`` when its local disk is (nearly) full: a library that failed
    on a full disk may say something else (Tune's results read an empty pickled error: 'EOFError: Ran out
    of input', a traceback); else return, for the caller to re-raise ``err``."""
    if is_remote(uri):
        return
    path = filesystem(uri)[1]
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return
    if free < 1 << 20:
        raise OSError(errno.ENOSPC, f"no space left on the disk of {uri} ({free // 1024} KB free)") from err


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically (temp name + rename; object stores write whole objects). A write
    that fails (a full disk) leaves ``uri`` as it was and no temp file (they stayed in the run folder). A local
    ``uri`` that is a link is replaced by the file, as ``mv`` does, never written through (a run folder's
    report.html or trials.md linked elsewhere overwrote the link's target: hostile tester round 69)."""
    fs, path = filesystem(uri)
    if not is_remote(uri):  # its folder resolved (a run folder may be a link), its own name as given
        named = os.path.abspath(local_path(uri))
        path = os.path.join(filesystem(os.path.dirname(named))[1], os.path.basename(named))
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except (OSError, ValueError):  # never made (a read-only folder), or gone
            pass
        raise


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_table(df: "pd.DataFrame", uri: str) -> None:
    """Write a DataFrame as Parquet or CSV (by suffix), atomically."""
    buf = io.BytesIO()
    if uri.lower().endswith(".csv"):
        import csv

        # a lone '\r' in a text cell (a family written 'Felidae\r') is no line end to the csv module, so it was
        # left unquoted and every reader split the row in two: quote every text cell of such a table
        cr = any(df[c].map(lambda v: isinstance(v, str) and "\r" in v).any() for c in df.columns
                 if not pd_numeric(df[c]))
        df.to_csv(buf, index=False, quoting=csv.QUOTE_NONNUMERIC if cr else csv.QUOTE_MINIMAL)
    else:
        df.to_parquet(buf, index=False)
    write_bytes(uri, buf.getvalue())


def pd_numeric(column: "pd.Series") -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


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
        from .stages import writer

        again = writer(uri) or stage_hint  # a run's own table: the stage that writes it (clean's: not catalog)
        fix = f"run `{again}` again to write it anew" if again else \
            f"give the {kind} file speciesfam wrote, or another path"  # a run's own file takes no other path
        raise SourceError(f"{uri} cannot be read as a {kind} table ({type(err).__name__}: {said(err, 200)}); "
                          f"{fix}") from err


def not_regular(mode: int) -> str:
    """What a file's mode says it is, when it is not a regular file (a FIFO, socket, device or folder)."""
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a folder" if stat.S_ISDIR(mode) else
            "not a file")
    return f"not a regular file ({kind})"


def list_files(uri: str) -> list[str]:
    """All regular files under a folder URI, recursively, each real file once (see ``listing.walk``), sorted."""
    from .listing import walk

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
