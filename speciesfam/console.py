"""The console in the tool's own words: quiet frameworks by default, full logs in ``RUN/logs/``.

Every process speciesfam starts (the driver, Ray's workers and actors, Ray Train's workers) runs with
TensorFlow's C++ logs, absl, gRPC and glog quiet unless ``--verbose`` (``SPECIESFAM_VERBOSE=1``):
``setup`` sets them in this process's environment, ``worker_env`` hands them to Ray's runtime environment,
and ``log_to_driver`` keeps the workers' own output in Ray's log files instead of the console. Ray Data's
progress bar stays. A search prints one line per finished trial (``lines.trial_lines_callback``), and
``stage_log.stage_logs`` keeps the full logs under ``RUN/logs/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from typing import Any, Iterator

from .interrupts import STOPPING, interrupt_in_cleanup_logged


VERBOSE_ENV = "SPECIESFAM_VERBOSE"

# Start-up noise of the frameworks, off unless --verbose. A value the user set wins (setdefault).
QUIET_ENV = {
    # TensorFlow's C++ INFO/WARNING/ERROR lines after start-up; its start-up lines (oneDNN, CUDA probes) go
    # through absl before absl is initialised and ignore this: see quiet_stderr.
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",  # MultiWorkerMirroredStrategy's collective gRPC channels
    "GLOG_minloglevel": "2",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
    # Tune's newer console output prints its experiment box even at verbose=0; the classic reporter is silent.
    "RAY_AIR_NEW_OUTPUT": "0",
}
# Python loggers held at WARNING in this process unless verbose (their INFO records are dropped here; Ray
# Data keeps its own full log file, which stage_logs copies to RUN/logs/ray/).
NOISY_LOGGERS = ("ray", "ray.tune", "ray.train", "tensorflow", "absl", "h5py", "matplotlib",
                 "urllib3", "filelock", "PIL", "py.warnings")


def verbose() -> bool:
    """True when the user asked for the frameworks' own output (``--verbose``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def setup(verbose_flag: bool | None = None) -> None:
    """Quiet this process (and, through the environment, the processes it starts) unless verbose.

    Call it before TensorFlow or Ray is imported: the C++ log levels are read once, at import.
    """
    if verbose_flag is not None:
        os.environ[VERBOSE_ENV] = "1" if verbose_flag else "0"
    if verbose():
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    logging.captureWarnings(True)  # warnings become log records: kept in RUN/logs/, off the console
    if not getattr(sys.unraisablehook, "speciesfam", False):
        sys.unraisablehook = interrupt_in_cleanup_logged(sys.unraisablehook)
    if not any(isinstance(h, _OutsideStages) for h in logging.getLogger().handlers):
        logging.getLogger().addHandler(_OutsideStages())
    quiet_loggers()


class _OutsideStages(logging.StreamHandler):
    """The root logger's console handler outside a stage (evaluate, predict, export): WARNING and above, the
    message only, on stderr, as Python's last-resort handler prints them. Being there, it also keeps a
    library's bare ``logging.info(...)`` (open_clip's) from calling ``logging.basicConfig()``, whose
    ``LEVEL:name:message`` console handler then printed every later warning. Inside ``stage_logs`` it is
    silent: the stage's records go to ``RUN/logs/STAGE.log``."""

    def __init__(self) -> None:
        super().__init__()  # sys.stderr when each record is written (tests swap it)
        self.setLevel(logging.WARNING)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        # TensorFlow's warnings (e.g. retracing, when one process loads several models) are not the user's to act on
        if not LOGGED_STAGES and (record.levelno >= logging.ERROR or record.name.split(".")[0] not in ("tensorflow", "absl")):
            super().emit(record)


LOGGED_STAGES: list[str] = []  # the stages whose logs are being kept (stage_logs), innermost last


def quiet_loggers() -> None:
    """Framework loggers at WARNING on the console; their full output stays in Ray's session logs (Ray Data
    writes everything to its ``ray-data.log``), which ``stage_logs`` copies into ``RUN/logs/``. Ray and Ray
    Data configure their loggers when they start: call again after ``ray.init``."""
    if verbose():
        return
    for name in NOISY_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level < logging.WARNING:
            lg.setLevel(logging.WARNING)
    # A failed trial's traceback: its one line comes from lines.trial_lines_callback; the traceback is in the trial's
    # error.txt (Tune storage) and trials.csv, so Tune's copy on the console only repeats it. Ray's notice
    # that token auth is on (its default) is not something a speciesfam user acts on.
    # Tune's analysis warns of trials without results (a time budget ended them first): their line and
    # trials.csv say so ("not trained").
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.tune.analysis.experiment_analysis",
                 "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if "ray" in sys.modules:
        import ray.data  # noqa: F401 -- configures its loggers on import; quiet them after that, not before

        # Ray Data logs at DEBUG to its own file; only its console handler is raised (in a terminal its
        # progress bar is not a log record and stays; piped, its 10-second progress blocks go to the file).
        # To ERROR too: a failed pipeline's stack trace, logged by Ray Data before it raises, repeats the
        # exception that the stage reports itself (in one line when it is the user's to fix).
        for handler in logging.getLogger("ray.data").handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(max(handler.level, logging.CRITICAL))


@contextlib.contextmanager
def quiet_stderr(what: str, python_too: bool = True) -> Iterator[None]:
    """Hold back what C/C++ code writes to file descriptor 2 while ``what`` runs, unless verbose.

    TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA driver probes) through absl before absl's logging
    is initialised, ignoring ``TF_CPP_MIN_LOG_LEVEL``; Ray's core worker writes an ``E`` line for every Ray
    Data actor pool (its constructor arguments are in the object store and it may restart: ray#53727). The
    captured lines go to the log (``RUN/logs/`` during a stage); if ``what`` fails, they go to the console too.
    ``python_too=False``: Python's own ``sys.stderr`` (Ray Data's progress bar in a terminal) still reaches
    the console, and a failure leaves the captured lines in the log only (the exception says what failed).
    """
    if verbose():
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    try:
        real = not python_too and python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test's capture object: it is not fd 2 anyway
        real = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        if real:
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding,
                                   errors=python_stderr.errors)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            if real:
                sys.stderr.close()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                logging.getLogger(__name__).info("%s wrote to stderr:\n%s", what, text)
                if failed and python_too:
                    sys.stderr.write(text + "\n")


def worker_env() -> dict[str, str]:
    """Environment for every Ray worker, actor and Ray Train worker (merged into Ray's runtime env)."""
    env = {VERBOSE_ENV: "1" if verbose() else "0"}
    if not verbose():
        env.update({k: os.environ.get(k, v) for k, v in QUIET_ENV.items()})
    return env


def log_to_driver() -> bool:
    """Forward the workers' stdout/stderr to the console only when verbose; they stay in Ray's log files."""
    return verbose()


# Ray's notes to the driver about its own worker pool: Ray's tuning, nothing a user acts on ('(raylet) WARNING: 8
# PYTHON worker processes have been started on node ... 4x the maximum expected startup concurrency', on every CNN
# search with Ray Train workers here: hostile tester)
RAYLET_NOTES = ("worker processes have been started on node",)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def quiet_raylet_notes() -> None:
    """Unless verbose: the raylet's ``RAYLET_NOTES`` go to the stage log instead of the console; every other
    message of Ray's to the driver (a worker killed for memory, a node gone) still reaches it. Ray prints them
    from a thread of the driver through ``ray._private.worker.print_to_stdstream``, which this wraps."""
    if verbose():
        return
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "speciesfam", False):
        return

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        lines = data.get("lines") or []
        note = data.get("pid") == "raylet" and lines and all(any(n in ln for n in RAYLET_NOTES) for ln in lines)
        if note or (STOPPING.is_set() and lines):  # after a Ctrl-C: 'Task MapWorker(...) ... killed by ray.kill'
            # the stage's log only (the "ray" logger's own handler printed it to stderr)
            logging.getLogger("speciesfam.ray").info("(%s) %s", data.get("pid"), " ".join(lines))
            return
        if data.get("pid") == "raylet" and lines:  # 'A worker died or was killed ...': a paragraph of Ray's advice
            # with colour codes, on stdout even when piped; its first sentence on stderr, the whole in the log
            text = ANSI.sub("", " ".join(lines)).strip().removeprefix("(raylet) ")
            logging.getLogger("speciesfam.ray").info("(raylet) %s", text)
            first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
            kept = "; the run's logs/ keep it" if LOGGED_STAGES else ""  # a bundle outside a run folder: no logs
            print(f"ray: {first} (--verbose shows Ray's whole message{kept})", file=sys.stderr)
            return
        original(data, ignore_prefix)

    print_to_stdstream.speciesfam = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream
    for handler in logging.getLogger("ray").handlers:  # Ray's own console handler: quiet while the command stops
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            # ('SIGTERM handler is not set because current thread is not the main thread')
            handler.addFilter(lambda record: not STOPPING.is_set() or record.levelno >= logging.ERROR)


def tune_verbosity() -> int:
    """Tune's own status tables: off (``lines.trial_lines_callback`` speaks instead) unless verbose."""
    return 2 if verbose() else 0


_INDENT = [""]  # what ``indented`` puts before each line a stage says (the demo's steps)


def say(message: str) -> None:
    """One line for the person at the console (stdout, flushed, so it interleaves with progress bars); inside a
    stage also a record of its log, so ``RUN/logs/STAGE.log`` holds what the console said (a batch job's log
    held none of its lines)."""
    _write(_INDENT[-1] + message, sys.stdout)
    if LOGGED_STAGES:
        logging.getLogger("speciesfam.console").info("%s", message)


def say_err(message: str) -> None:
    """``say`` on stderr: a warning, or what a command left out (also a record of the stage's log)."""
    _write(_INDENT[-1] + message, sys.stderr)
    if LOGGED_STAGES:
        logging.getLogger("speciesfam.console").info("%s", message)


def _write(line: str, stream: Any) -> None:
    """A console line; where its reader has gone (`| head -1`), the work goes on and the log keeps the lines:
    a BrokenPipeError ended a search 17 s in with nothing recorded (hostile tester round 46)."""
    try:
        print(line, file=stream, flush=True)
    except BrokenPipeError:
        discard(stream)


def discard(stream: Any) -> None:
    """Send what is still written to ``stream`` (a pipe its reader closed) to /dev/null: Python's flush of it at
    exit raised BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stream with no descriptor: nothing to redirect
        pass


PROGRESS_EVERY_S = 30.0  # seconds between a long stage's progress lines


class Progress:
    """A line every ``PROGRESS_EVERY_S`` while a long stage works (``catalog: 5000/12000 files read``): a
    progress bar shows only in a terminal, and piped (batch jobs, ``ray job submit``, logs) the console said
    nothing until the stage ended. ``add(n)`` counts ``n`` more done; the last count says nothing (the
    stage's own summary line follows)."""

    def __init__(self, what: str, total: int, done_text: str):
        self.what, self.total, self.done_text, self.done = what, total, done_text, 0
        self.said = time.monotonic()

    def add(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self.said >= PROGRESS_EVERY_S and self.done < self.total:
            say(f"{self.what}: {self.done}/{self.total} {self.done_text}")
            self.said = time.monotonic()


@contextlib.contextmanager
def indented(prefix: str) -> Iterator[None]:
    """Lines said inside (a stage's own, its trials') start with ``prefix``: the demo nests each stage's lines
    under its step."""
    _INDENT.append(_INDENT[-1] + prefix)
    try:
        yield
    finally:
        _INDENT.pop()
