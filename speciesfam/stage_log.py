"""A stage's full logs under ``RUN/logs/``: this process's log records (``RUN/logs/<stage>.log``) and, at the
end, a copy of the Ray logs written during the stage (the workers' stdout/stderr in full, Ray Data's own log)."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import time
from typing import Iterator

from . import layout, stages, storage
from .console import LOGGED_STAGES, say
from .interrupts import STOPPING


class _LazyFileHandler(logging.FileHandler):
    """A file handler that makes its folder when the first record arrives, and writes a record once when it
    is attached to a logger and to its parent (``ray.tune`` propagates to ``ray``, which does not propagate)."""

    _last: logging.LogRecord | None = None
    stage = "speciesfam"
    broken = False  # a write failed: the records after it are dropped, said once

    def _open(self):
        os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
        return super()._open()

    def handle(self, record: logging.LogRecord):  # type: ignore[override]
        if record is self._last or self.broken:
            return False
        self._last = record
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:  # FileHandler opens its file outside its own try: a failed open reached the caller of the log call
            super().emit(record)
        except Exception:  # noqa: BLE001 -- logging never fails the work it records
            self.handleError(record)

    def close(self) -> None:
        try:  # its last buffered records may not fit either: on a full disk the stage failed here, at its end
            super().close()
        except OSError:
            if not self.broken:
                self.handleError(None)

    def handleError(self, record: logging.LogRecord | None) -> None:
        """The log file cannot be written (a full disk): one console line, not logging's 20-line '--- Logging
        error ---' for every record after it (600 lines under one search: hostile tester)."""
        self.broken = True
        err = sys.exc_info()[1]
        say(f"{self.stage}: warning: cannot write its log {self.baseFilename} ({type(err).__name__}: {err}); "
            "its log records are dropped from here on")


@contextlib.contextmanager
def stage_logs(workdir: str, stage: str, command: list[str] | None = None) -> Iterator[str | None]:
    """Keep the full logs of one stage under ``RUN/logs/``; yields the log file's path (None if remote).
    Its last line says how the stage ended and the ``command`` run (default: this process's), quoted as typed.

    Writes ``RUN/logs/<stage>.log`` (this process's log records: speciesfam's at INFO, the frameworks' at
    WARNING unless verbose, Python warnings) and, on exit, copies the Ray logs that changed during the stage
    to ``RUN/logs/ray/`` (the workers' stdout/stderr: trial output, Ray Train, TensorFlow, embedding
    actors; Ray Data's own log). An object-store run folder keeps neither (Ray's session folder stays on
    the head node, under /tmp/ray).
    """
    if storage.is_remote(workdir):
        yield None
        return
    logs = storage.filesystem(layout.path(workdir, layout.LOGS))[1]
    made = [p for p in (os.path.dirname(logs), logs) if not os.path.lexists(p)]  # what a refused command undoes
    path = os.path.join(logs, f"{stage}.log")
    stages.refuse_links(workdir)  # a log (or a stage's files) written through a link into another folder: round 68
    # delay: no folder for a refused command; a file name that is not UTF-8 is written with its byte escaped (the
    # log was dropped from that record on: hostile tester round 42)
    handler = _LazyFileHandler(path, mode="a", encoding="utf-8", errors="backslashreplace", delay=True)
    handler.stage = stage
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Ray's loggers do not propagate to the root logger: attach to them too.
    targets = [logging.getLogger(), *(logging.getLogger(n) for n in ("ray", "ray.data", "ray.tune", "ray.train"))]
    for lg in targets:
        lg.addHandler(handler)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(min(root_level, logging.INFO))
    started = time.time()
    LOGGED_STAGES.append(stage)
    outcome = "ok"
    try:
        yield path
    except BaseException as err:  # how it ended, in the log too (the console's error line is printed after)
        outcome = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
        raise
    finally:
        if outcome == "ok" and STOPPING.is_set():  # a search a signal stopped returns; the command exits 130
            outcome = "interrupted"
        outcome = _ENDED_WITH.pop(stage, outcome) if outcome == "ok" else outcome
        LOGGED_STAGES.pop()
        ran = stages.is_run_folder(workdir)  # a refused command leaves no log in a folder that is no run folder
        if ran:  # every stage that ran has its log
            logging.getLogger("speciesfam").info("%s ended after %.1f s (%s): %s", stage, time.time() - started,
                                                 outcome, shlex.join(command or sys.argv))
        for lg in targets:
            lg.removeHandler(handler)
        logging.getLogger().setLevel(root_level)
        handler.close()
        if ran:
            _copy_ray_logs(os.path.join(logs, "ray"), since=started - 1, stage=stage)
        else:  # its records, if any, went to a folder this command made: gone with it
            if logs in made:
                shutil.rmtree(logs, ignore_errors=True)
            if len(made) == 2:  # the run folder too: left if the command wrote anything else there
                _rmdir_if_empty(made[0])


_ENDED_WITH: dict[str, str] = {}  # how a command that returned (no exception) ended, when not 'ok'


def ended_with(stage: str, outcome: str) -> None:
    """Say how ``stage``, returning normally, ended (its log's last line said 'ok' for a predict that exited 1)."""
    if stage in LOGGED_STAGES:  # no log kept (a bundle outside a run folder): nothing to say it in
        _ENDED_WITH[stage] = outcome


def _rmdir_if_empty(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:  # not empty (the command wrote there after all), or gone
        pass


def _copy_ray_logs(dest: str, since: float, stage: str) -> None:
    """Copy this Ray session's worker logs (``worker-*``, ``*.out``, ``*.err``) modified after ``since``; a failure
    is one console line of ``stage``'s (the stage's log is closed by then)."""
    ray = sys.modules.get("ray")
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None) if ray else None
    if node is None:
        return
    try:
        src = node.get_logs_dir_path()
        for root, _, files in os.walk(src):
            for name in files:
                full = os.path.join(root, name)
                wanted = name.startswith(("worker-", "ray-data")) or name.endswith((".out", ".err"))
                if wanted and os.path.getmtime(full) >= since:
                    target = os.path.join(dest, os.path.relpath(full, src))
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copyfile(full, target)
    except OSError as err:  # logs are a convenience: never fail a finished stage over them
        say(f"{stage}: could not copy Ray's logs to {dest}: {err.strerror or err}")


def bundle_logs(bundle: str | None, command: str, typed: list[str]) -> contextlib.AbstractContextManager:
    """predict and evaluate of a run folder's bundle (RUN/bundle) keep their logs in RUN/logs/ as the stages do
    (COMMAND.log; the Ray logs of a batch prediction); a bundle elsewhere keeps none (its folder is the user's).
    Their framework records were dropped."""
    if not isinstance(bundle, str) or storage.is_remote(bundle) or not os.path.isdir(bundle):
        return contextlib.nullcontext()
    run = os.path.dirname(os.path.abspath(bundle))
    return stage_logs(run, command, typed) if stages.is_run_folder(run) else contextlib.nullcontext()
