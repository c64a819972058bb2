"""Searches running on a run folder: a lock file per search, held while it runs (on this machine).

``search_lock`` keeps a second search of the same name off a running one; ``running_searches`` tells catalog,
clean and export which searches run on their run folder now (a search goes on with the catalog and clean runs
it read at its start, whatever ends meanwhile).
"""

from __future__ import annotations

import json
import shlex

from . import storage
from .errors import ConfigError

LOCKS = "speciesfam-locks"  # in the temp folder: a lock file per search folder, held while the search runs


def search_lock(storage_path: str, name: str, workdir: str | None = None):
    """Hold the lock of search ``name`` on this machine (closing the returned file releases it) or refuse: a
    second search of the same name started while the first ran passed every check, both wrote the same Tune
    folder and one's trials vanished from trials.csv. The lock file lies in the temp folder, keyed by the
    search's folder, so a refused or failed start leaves nothing in the run folder; it names the holder and
    the run folder (``running_searches``)."""
    import os

    experiment = storage.join(storage_path, name)
    return _hold(experiment, f"pid {os.getpid()}, {experiment}\n{json.dumps({'name': name, 'workdir': _key(workdir)})}",
                 lambda holder: ConfigError(f"--name {shlex.quote(name)}: a search of that name is running on this "
                                            f"run folder now ({holder}); wait for it to end, or give another --name"))


def stage_lock(workdir: str, stage: str):
    """Hold the run folder's lock for catalog or clean (closing the returned file releases it) or refuse: two
    cleans started at once on one folder both wrote its manifest, embeddings and records (the last writer won;
    hostile tester round 36). One lock for both stages: clean reads what catalog rewrites."""
    import os

    return _hold(f"stages:{_key(workdir)}", f"{stage} (pid {os.getpid()})",
                 lambda holder: ConfigError(f"--workdir {workdir}: {holder} is running there now; wait for it to "
                                            f"end (both would write the run's files)"))


def _hold(key: str, text: str, refuse):
    """Lock file ``key`` in the temp folder, held by this process with ``text`` in it, or ``refuse(holder)``
    raised with the holder's first line."""
    import fcntl
    import hashlib
    import os
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), LOCKS)
    os.makedirs(folder, exist_ok=True)
    lock = open(os.path.join(folder, hashlib.sha256(key.encode()).hexdigest()[:20] + ".lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip().split("\n")[0] or "another process"
        lock.close()
        raise refuse(holder) from None
    lock.truncate(0)
    lock.write(text + "\n")
    lock.flush()
    return lock


def _key(workdir: str | None) -> str | None:
    import os

    return None if workdir is None else workdir if storage.is_remote(workdir) else \
        os.path.realpath(storage.filesystem(workdir)[1])


def say_running(workdir: str, stage: str) -> None:
    """A console warning when searches run on ``workdir`` as ``stage`` (catalog, clean) starts there."""
    running = running_searches(workdir)
    if running:
        from .console import say

        say(f"{stage}: warning: {'searches are' if len(running) > 1 else 'a search is'} running on {workdir} now "
            f"({', '.join(running)}); it goes on with the runs it read at its start, and export will refuse its "
            f"trials once this {stage} ends (run the search again then)")


def running_searches(workdir: str) -> list[str]:
    """The searches running on run folder ``workdir`` from this machine now, as "'NAME' (pid N)": catalog and
    clean say them (a search goes on with the runs it read at its start), export when there is no trial yet."""
    import fcntl
    import glob
    import os
    import tempfile

    found = []
    for path in sorted(glob.glob(os.path.join(tempfile.gettempdir(), LOCKS, "*.lock"))):
        try:
            with open(path) as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    continue  # free: no search holds it
                except BlockingIOError:
                    lines = lock.read().splitlines()
            held = json.loads(lines[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile, or written by an older version
            continue
        if held.get("workdir") == _key(workdir):
            found.append(f"{held.get('name')!r} ({lines[0].split(',')[0]})")
    return found
