"""What catalog refuses before it reads a file: a run folder that would write over the user's own files (their
manifest, a project folder's report.html, links into another folder), or that lies inside the image folder (the
next catalog would take the run's own files for images)."""

from __future__ import annotations

import os

from .. import layout, storage
from ..errors import SourceError
from ..listing import within_source


def refuse_source_replaced(source: str, workdir: str) -> None:
    """A manifest the run would write over: ``--workdir DIR`` for ``DIR/manifest.parquet`` replaced the user's
    own manifest with catalog's (hostile tester), and clean or tune would replace one of their names."""
    if storage.is_remote(source) or storage.is_remote(workdir):
        return
    folder, name = os.path.split(os.path.realpath(source))
    if name in layout.RUN_ENTRIES and folder == os.path.realpath(storage.filesystem(workdir)[1]):
        raise SourceError(f"{source} is a file the run writes in --workdir {workdir} (its {name}): catalog would "
                          f"replace it; rename the manifest, or give another --workdir")


def refuse_files_of_yours(workdir: str) -> None:
    """A folder that is no run folder, holding files of the names a run writes (a project folder's own
    manifest.parquet or report.html): catalog replaced them, exit 0 (hostile tester round 33). A run folder's
    are its own to rewrite."""
    from .. import stages
    from ..lines import some

    stages.refuse_links(workdir)
    if stages.is_run_folder(workdir):
        return
    theirs = [name for name in layout.RUN_ENTRIES  # files; a folder of that name (logs/) is only written into
              if storage.exists(layout.path(workdir, name)) and not storage.is_dir(layout.path(workdir, name))]
    # ... unless the run replaces or clears what it holds: export replaces bundle/, clean deletes the PNGs in
    # gallery/, each stage rewrites its record in stages/
    theirs += [f"{name}/{found}" for name, ends in ((layout.BUNDLE, ""), (layout.GALLERY, ".png"),
                                                    (layout.STAGES, ".json"))
               for found in _held(layout.path(workdir, name), ends)[:1]]
    if theirs:
        one = len(theirs) == 1
        raise SourceError(f"--workdir {workdir} is no speciesfam run folder, yet holds {some(theirs, quote=True)}: "
                          f"a run writes {'a file of that name' if one else 'files of those names'} (or clears "
                          f"the folder {'it is' if one else 'they are'} in), so it would replace "
                          f"{'it' if one else 'them'}. Give a new or empty folder, e.g. --workdir "
                          f"{storage.join(workdir.rstrip('/'), 'run')}")


def _held(folder: str, ends: str) -> list[str]:
    """The names of the files directly in ``folder`` ending in ``ends`` (none when it is no folder)."""
    import pyarrow.fs as pafs

    if not storage.is_dir(folder):
        return []
    fs, path = storage.filesystem(folder)
    return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path))
                  if i.type == pafs.FileType.File and i.base_name.endswith(ends))


def refuse_workdir_inside(source: str, workdir: str) -> None:
    """A run folder in (or equal to) the image folder would be catalogued on the next run: its PNGs as a family,
    its other files as unreadable rows."""
    if within_source(workdir, source):
        src = source.rstrip("/") if storage.is_remote(source) else storage.filesystem(source)[1]
        raise SourceError(f"--workdir {workdir} is inside the image folder {source}: the next catalog would take "
                          "the run's own files (galleries, plots, logs) for images. Choose a workdir outside it, "
                          f"e.g. --workdir {src}-run")
