"""How a path, a file name and an error reading a file are said in rows' reasons, reports and one-line errors:
the likely cause of a path that names no file, a name whose bytes are not UTF-8 (shown, refused on the command
line), a read error in catalog's words, an exception as one short line. Every stage says them alike."""

from __future__ import annotations

import errno
import functools
import os
import unicodedata

BROKEN_LINK = "broken symbolic link (target missing, or a link loop)"


def path_hint(path: str) -> str:
    """The likely cause of a listed path that names no file, in parentheses, or '': Windows' '\\' between
    folders (a file name here), a '~' no shell expanded, or spaces around the file's or a folder's name."""
    if "\\" in path:
        return " (the path holds '\\': write it with '/' between folders, as this machine sees it)"
    if "~" in path.split("/")[1:]:  # a leading one is expanded (storage.local_path)
        return " (a '~' in a manifest is not your home folder: give the full path)"
    name = os.path.basename(path)
    if name != name.strip():  # a spreadsheet's stray space; a file name may hold one, so it is not taken away
        return " (its name starts or ends with a space: is that in the file's name?)"
    spaced = next((part for part in path.split("/")[:-1] if part != part.strip()), None)
    if spaced is not None:  # ' imgs/A/x.png': a stray space before a relative path lands on its first folder
        return f" (the folder name {spaced!r} in its path starts or ends with a space: is that in the folder's name?)"
    return _near_name(path)


def _near_name(path: str) -> str:
    """The first name of ``path`` that is not there, when its folder holds it in another Unicode form (a folder
    copied from an old Mac names 'café' with a combining accent) or case ('IMG_1.JPG'): said, or '' (a plain 'file
    not found': rounds 68, 69)."""
    from .lines import quoted
    from .storage import is_remote

    if is_remote(path) or not path:
        return ""
    parts = path.split("/")
    for k in range(1, len(parts) + 1):
        if not parts[k - 1] or os.path.lexists("/".join(parts[:k])):
            continue
        name = parts[k - 1]
        near = [n for n in _folder_index("/".join(parts[:k - 1]) or ("/" if path.startswith("/") else "."))
                .get(_fold(name), ()) if n != name]
        if not near:
            return ""
        how = ("the same name in another Unicode form: write it as the file system has it"
               if unicodedata.normalize("NFC", near[0]) == unicodedata.normalize("NFC", name)
               else "a name that differs in case")
        return (f" (the folder holds {quoted(near[0], None)}, {how})" if k == len(parts) else
                f" (its folder {quoted(name, None)} is not there; {quoted(near[0], None)} is, {how})")
    return ""


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


@functools.lru_cache(maxsize=64)  # a manifest's missing rows are many in few folders: each folder indexed once
def _folder_index(folder: str) -> dict[str, tuple[str, ...]]:
    """A folder's entries by ``_fold`` of their names (a name per missing row compared with every entry made a
    catalog of 20,000 such rows take 49 s: round 69)."""
    index: dict[str, list[str]] = {}
    try:
        for entry in os.listdir(folder):
            index.setdefault(_fold(entry), []).append(entry)
    except OSError:
        pass
    return {key: tuple(names) for key, names in index.items()}


NOT_UTF8 = ("file name is not valid UTF-8 (a byte of another encoding): rename it to UTF-8, e.g. "
            "`convmv -f latin1 -t utf8 --notest FILE`")


def not_utf8(path: str) -> str:
    """A row's reason for a file whose path is not valid UTF-8: ``NOT_UTF8`` where its own name is at fault, else
    the folder that is named (a file in such a family folder was told to rename itself: round 44)."""
    parts = path.split("/")
    bad = next((i for i, part in enumerate(parts[:-1]) if not is_utf8(part)), None)
    if bad is None:
        return NOT_UTF8
    return (f"folder name {shown(parts[bad])} is not valid UTF-8 (a byte of another encoding): rename the folder "
            f"to UTF-8, e.g. `convmv -f latin1 -t utf8 --notest -r FOLDER`")


def shown_escaped(reason: object) -> bool:
    """Whether a row's path is ``shown`` already, its bytes that are not UTF-8 as escapes ('caf\\xe9.jpg'), by its
    reason (``not_utf8``'s): a table shows it as it is (escaping it again doubled the backslash: rounds 67, 68)."""
    return isinstance(reason, str) and "is not valid UTF-8 (a byte of another encoding)" in reason


def is_utf8(text: str) -> bool:
    """Whether a name is valid UTF-8 (Python keeps a byte of another encoding as a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """A name as rows, reports and errors show it: a byte that is not UTF-8 written as ``\\xe9``."""
    return name if is_utf8(name) else name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_utf8(path: str, flag: str) -> None:
    """Refuse a path given on the command line (as ``flag``) that is not valid UTF-8: every file and log of the
    run would fail on it, with a traceback (hostile tester round 42)."""
    from .errors import ConfigError

    if not is_utf8(path):
        raise ConfigError(f"{flag} {shown(path)} is not valid UTF-8 (a byte of another encoding in its name): rename "
                          "it to UTF-8, e.g. `convmv -f latin1 -t utf8 --notest -r PATH`, or give another path")


def read_error(err: BaseException, path: str) -> str:
    """A row's reason for a file that could not be read, in catalog's words for a missing file (with
    ``path_hint``) or a broken link; the error otherwise."""
    if isinstance(err, UnicodeEncodeError):  # a name with a byte of another encoding (as catalog's walk says it)
        return not_utf8(path)
    from .storage import is_remote

    if isinstance(err, FileNotFoundError):  # catalog's words ('cannot read file: [Errno 2] ...': round 49)
        return BROKEN_LINK if not is_remote(path) and os.path.islink(path) else f"file not found{path_hint(path)}"
    if getattr(err, "errno", None) == errno.ELOOP and not is_remote(path):  # a link loop: catalog's words (round 66)
        return BROKEN_LINK
    text = said(err)
    name = getattr(err, "filename", None)
    if isinstance(name, str) and not is_utf8(name):  # its repr printed the byte as '\udce9' (round 46)
        text = f"[Errno {err.errno}] {err.strerror}: '{shown(name)}'"  # type: ignore[attr-defined]
    return f"cannot read file: {text}"


def said(err: BaseException, limit: int = 300) -> str:
    """An error's message as one short line for a row's reason or a one-line error: its first line (its type's
    name if empty), without a GCS status's error_info dump, its head and its tail (where clients put the cause)
    when longer than ``limit``. A gs:// row's reason was 1,000 characters."""
    import re

    text = (str(err).strip().splitlines() or [""])[0].strip() or type(err).__name__
    text = re.sub(r"\s*error_info=\{.*\}\s*(\)?)$", r"\1", text)
    half = (limit - 5) // 2
    return text if len(text) <= limit else f"{text[:half]} ... {text[-half:]}"
