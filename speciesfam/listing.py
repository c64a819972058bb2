"""Listing a folder so that every entry is accounted for: each real file once (links to folders followed once,
loops cut), and each entry that cannot be read as a file (a broken link, a FIFO, a folder that cannot be listed,
a name that is not UTF-8) kept with its reason instead of dropped. catalog and predict list folders with it.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass

import pyarrow.fs as pafs

from .pathtext import BROKEN_LINK, is_utf8, not_utf8, shown
from .storage import filesystem, is_remote, not_regular


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


def walk(uri: str, file_links: bool = False, families: bool = False) -> tuple[list[Entry], int]:
    """Every file under folder ``uri``, each real file once; returns (entries, aliases).

    Local folders: symlinked folders are followed, but only after every real folder was walked and only
    once per real folder, so a loop (``Beta/loop -> ..``) or a second link to the same place lists nothing
    twice and a file is named by its real location when it has one inside the tree. ``aliases`` counts the
    links to files or folders already listed. ``file_links``: list every link to a file as well, under its
    own name, after the real files (catalog does: a link in another family's folder gives an image a second
    label, which must show as a conflict, as a copy of its bytes would). ``families`` (catalog): a link to a
    folder already listed under another family folder (``Lynx -> Felidae``, or two family folders linking to one
    folder outside) lists that folder's files again under the link's own path, for the same reason (its family
    vanished with only a count; hostile tester round 66). Object stores have no links.

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
    return _walk_local(path, file_links, families)


def top_folders(uri: str) -> list[str]:
    """The names of the folders directly in folder ``uri`` (not links to folders), sorted; an object store's
    first-level prefixes. Unlistable: none (the walk says why)."""
    fs, path = filesystem(uri)
    try:
        if is_remote(uri):
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
            return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _family(rel: str) -> str:
    """The family folder a path relative to the walked folder lies in ('' for the folder itself)."""
    return rel.split("/")[0]


def _walk_local(root: str, list_file_links: bool, families: bool) -> tuple[list[Entry], int]:
    entries: list[Entry] = []
    seen_dirs: dict[str, str] = {}  # real folder -> the rel it was listed under
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
        if not is_utf8(path):  # a name Parquet cannot store: keep a readable form, say why it is unusable
            path, rel, problem = shown(path), shown(rel), problem or not_utf8(path)
        entries.append(Entry(path, rel, problem))

    while folders or dir_links:
        if not folders:
            link, rel = dir_links.popleft()
            listed = seen_dirs.get(os.path.realpath(link))
            if listed is None:
                folders.append((link, rel))
            elif families and _family(listed) and _family(listed) != _family(rel):
                entries += [Entry(link + e.rel[len(listed):], rel + e.rel[len(listed):])
                            for e in entries if e.rel.startswith(listed + "/") and not e.problem]
            else:
                aliases += 1
            continue
        folder, rel = folders.popleft()
        real_folder = os.path.realpath(folder)
        if real_folder in seen_dirs:
            aliases += 1
            continue
        seen_dirs[real_folder] = rel
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
                        add(e.path, child_rel, os.path.realpath(e.path), not_regular(mode))
                elif e.is_dir(follow_symlinks=False):
                    folders.append((e.path, child_rel))
                elif e.is_file(follow_symlinks=False):
                    add(e.path, child_rel, os.path.join(real_folder, e.name))
                else:
                    add(e.path, child_rel, os.path.join(real_folder, e.name), not_regular(e.stat().st_mode))
            except OSError as err:  # vanished or unreadable while walking
                add(e.path, child_rel, None, f"cannot stat: {err.strerror or err}")
    for link, rel in file_links:
        add(link, rel, None if list_file_links else os.path.realpath(link))
    return entries, aliases


def within_source(uri: str, source: str) -> bool:
    """True when ``uri`` is in image folder ``source`` as catalog reads it: in the folder itself, or in a folder
    outside it that the walk reaches through a link (``imgs/Gamma -> /data/ext/Gamma``: an --out or --workdir
    there passed the checks, and the next catalog took the run's plots for images: hostile tester round 42)."""
    from .storage import local_path, within

    if within(uri, source):
        return True
    if is_remote(source) or is_remote(uri):
        return False
    root = os.path.realpath(local_path(source))
    todo, seen, linked = deque([root]), {root}, []
    while todo:  # folders only, each real one once (a loop is cut as the walk cuts it)
        try:
            with os.scandir(todo.popleft()) as it:
                dirs = [e for e in it if e.is_dir(follow_symlinks=True)]
        except OSError:
            continue
        for e in dirs:
            real = os.path.realpath(e.path)
            if real not in seen:
                seen.add(real)
                todo.append(real)
                if e.is_symlink() and os.path.commonpath([real, root]) != root:
                    linked.append(real)
    return any(within(uri, folder) for folder in linked)
