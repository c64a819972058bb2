"""The console in the tool's own words: quiet frameworks by default, full logs in ``RUN/logs/``.

Every process speciesfam starts (the driver, Ray's workers and actors, Ray Train's workers) runs with
TensorFlow's C++ logs, absl, gRPC and glog quiet unless ``--verbose`` (``SPECIESFAM_VERBOSE=1``):
``setup`` sets them in this process's environment, ``worker_env`` hands them to Ray's runtime environment,
and ``log_to_driver`` keeps the workers' own output in Ray's log files instead of the console. Ray Data's
progress bar stays. A search prints one line per finished trial (``TrialLines``), and ``stage_logs``
keeps the logs under ``RUN/logs/``: this process's log records and, at the end, a copy of the Ray logs
written during the stage (the workers' stdout/stderr in full, Ray Data's own log).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Iterator

from . import layout, storage

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
    quiet_loggers()


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
    # A failed trial's traceback: its one line comes from TrialLines; the traceback is in the trial's
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
def quiet_stderr(what: str) -> Iterator[None]:
    """Hold back what C/C++ code writes to file descriptor 2 while ``what`` runs, unless verbose.

    TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA driver probes) through absl before absl's logging
    is initialised, ignoring ``TF_CPP_MIN_LOG_LEVEL``. The captured lines go to the log (``RUN/logs/``
    during a stage); if ``what`` fails, they go to the console too, with the error.
    """
    if verbose():
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                logging.getLogger(__name__).info("%s wrote to stderr:\n%s", what, text)
                if failed:
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


def tune_verbosity() -> int:
    """Tune's own status tables: off (``TrialLines`` speaks instead) unless verbose."""
    return 2 if verbose() else 0


_INDENT = [""]  # what ``indented`` puts before each line a stage says (the demo's steps)


def say(message: str) -> None:
    """One line for the person at the console (stdout, flushed, so it interleaves with progress bars)."""
    print(_INDENT[-1] + message, flush=True)


@contextlib.contextmanager
def indented(prefix: str) -> Iterator[None]:
    """Lines said inside (a stage's own, its trials') start with ``prefix``: the demo nests each stage's lines
    under its step."""
    _INDENT.append(_INDENT[-1] + prefix)
    try:
        yield
    finally:
        _INDENT.pop()


class _LazyFileHandler(logging.FileHandler):
    """A file handler that makes its folder when the first record arrives."""

    def _open(self):
        os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
        return super()._open()


@contextlib.contextmanager
def stage_logs(workdir: str, stage: str) -> Iterator[str | None]:
    """Keep the full logs of one stage under ``RUN/logs/``; yields the log file's path (None if remote).

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
    path = os.path.join(logs, f"{stage}.log")
    handler = _LazyFileHandler(path, mode="a", encoding="utf-8", delay=True)  # no folder for a refused command
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Ray's loggers do not propagate to the root logger: attach to them too.
    targets = [logging.getLogger(), *(logging.getLogger(n) for n in ("ray", "ray.data", "ray.tune", "ray.train"))]
    for lg in targets:
        lg.addHandler(handler)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(min(root_level, logging.INFO))
    started = time.time()
    try:
        yield path
    finally:
        if os.path.isdir(os.path.dirname(logs)):  # every stage that ran has its log (not a refused command)
            logging.getLogger("speciesfam").info("%s ended after %.1f s: %s", stage, time.time() - started,
                                                 " ".join(sys.argv))
        for lg in targets:
            lg.removeHandler(handler)
        logging.getLogger().setLevel(root_level)
        handler.close()
        if os.path.isdir(os.path.dirname(logs)):  # a command refused before any work made no run folder
            _copy_ray_logs(os.path.join(logs, "ray"), since=started - 1)


def _copy_ray_logs(dest: str, since: float) -> None:
    """Copy this Ray session's worker logs (``worker-*``, ``*.out``, ``*.err``) modified after ``since``."""
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
        logging.getLogger(__name__).warning("could not copy Ray's logs from the session folder: %s", err)


def trial_line(index: int, total: int | None, trial_id: str, model: str, epochs: int | None, f1: float | None,
               ended: str) -> str:
    """One finished trial in the tool's words, e.g.
    ``trial 2/4 3f2a1b0c  scratch_small   8 epochs  best val macro-F1 0.733  stopped by ASHA``; ``f1``: the
    trial's best epoch's, as in RUN/trials.csv and the search's summary."""
    count = f"{index}/{total}" if total else str(index)
    f1_text = "—" if f1 is None or (isinstance(f1, float) and math.isnan(f1)) else f"{f1:.3f}"
    epochs = 0 if epochs is None else int(epochs)  # None: the trial reported nothing
    epochs_text = f"{epochs} epoch{'' if epochs == 1 else 's'}"
    return f"  trial {count} {trial_id}  {model:<18s} {epochs_text:>9s}  best val macro-F1 {f1_text}  {ended}"


def stopped_by_scheduler(done: bool, iterations: int | None, max_epochs: int | None) -> bool:
    """Whether the scheduler cut a trial short, from its last *reported* result.

    Tune marks a scheduler's (or stopper's) stop with ``done=True`` on the last reported result, while a
    trial that returns on its own (``max_epochs`` reached, or its own patience) gets ``done`` on a result
    that is never reported. ASHA also "stops" a trial that reached ``max_t`` = ``max_epochs``: that one
    finished.
    """
    if not done:
        return False
    return iterations is None or max_epochs is None or int(iterations) < int(max_epochs)


SEARCH_END = "the search's end"  # what ended a trial still training when no time budget or interrupt did


def search_cut_by(time_budget_s: float | None) -> str:
    """What ends a search's trials still training: its time budget, or simply its end."""
    return f"the time budget ({time_budget_s:g} s)" if time_budget_s else SEARCH_END


def how_ended(done: bool, iterations: int | None, max_epochs: int | None, scheduler: str,
              final: bool | None = None, cut_by: str = SEARCH_END) -> str:
    """``stopped by ASHA``, ``early stopping`` (the trial's own patience), ``finished`` (all epochs) or
    ``stopped by <cut_by>`` (e.g. the time budget ended the search while it trained).

    ``final``: the trial's own word on its last result (``final_epoch``: its last epoch by its own rules);
    results without it (older runs, a user's trainable) fall back to Tune's ``done`` flag and epoch counts."""
    if final is None:
        if stopped_by_scheduler(done, iterations, max_epochs):
            return f"stopped by {scheduler}"
        final = True  # returned on its own
    elif not final:
        return f"stopped by {scheduler if done else cut_by}"
    if iterations is not None and max_epochs is not None and int(iterations) < int(max_epochs):
        return "early stopping"
    return "finished"


def final_flag(value: Any) -> bool | None:
    """A result's ``final_epoch`` as True/False, from a result dict or a progress.csv cell (None: absent)."""
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


INTERRUPTED = threading.Event()  # set when SIGINT or SIGTERM stopped the running search (``watch_interrupts``)


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM stopped the last search (a function: Tune pickles callbacks, not locks)."""
    return INTERRUPTED.is_set()


def raise_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: Python's own unwinding (finally blocks, ``ray.shutdown`` at exit) instead of Ray's
    C++ handler, which aborted the driver with a stack dump."""
    raise KeyboardInterrupt


def watch_interrupts() -> None:
    """At a search's start, after Tune installed its stop handler (SIGINT, SIGUSR1): note an interrupt in
    ``INTERRUPTED`` before Tune's handler runs, and let SIGTERM stop the search the same way (Tune saves its
    state, ``--resume`` continues it; a SIGTERMed CNN search could not be resumed). A second signal ends the
    process at once."""
    INTERRUPTED.clear()
    tune_stop = signal.getsignal(getattr(signal, "SIGUSR1", signal.SIGINT))
    if threading.current_thread() is not threading.main_thread() or not callable(tune_stop):
        return

    def on_signal(signum: int, frame: Any) -> None:
        INTERRUPTED.set()
        signal.signal(signal.SIGTERM, raise_interrupt)
        tune_stop(signum, frame)  # puts SIGINT back to what it was before the search

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def trial_lines_callback(total: int | None, scheduler: str, max_epochs: int | None = None,
                         metric: str = layout.METRIC, cut_by: str = SEARCH_END, model: str | None = None):
    """A Tune callback printing one line per trial that ended (built here so Ray is imported lazily):
    trial, model, epochs, its best epoch's val macro-F1 to 3 digits, and how it ended (``how_ended``; ``cut_by``
    names what ends a search with trials still training, e.g. ``the time budget``; ``model``: the name of a trial
    whose results and settings have none, as trials.csv says it, e.g. ``probe``)."""
    from ray import tune

    class TrialLines(tune.Callback):
        def setup(self, **info: Any) -> None:
            watch_interrupts()

        def __init__(self) -> None:
            self.finished = 0
            self.ended: dict[str, str] = {}
            self.best: dict[str, float] = {}
            self.lined: set[str] = set()

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            # Logged with the result (Tune's progress.csv), so the report tells the endings apart too.
            result.setdefault("scheduler", scheduler)
            if max_epochs is not None:
                result.setdefault("max_epochs", max_epochs)
            self.ended[trial.trial_id] = how_ended(bool(result.get("done")), result.get("training_iteration"),
                                                   max_epochs, scheduler, final_flag(result.get("final_epoch")),
                                                   cut_by)
            value = result.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.best[trial.trial_id] = max(value, self.best.get(trial.trial_id, -math.inf))

        def _line(self, trials: list, trial: Any, ended: str) -> None:
            if trial.trial_id in self.lined:
                return
            self.lined.add(trial.trial_id)
            self.finished += 1
            last = trial.last_result or {}
            epochs = last.get("epoch", last.get("training_iteration"))
            model_name = str(last.get("model") or (trial.config or {}).get("model") or model or trial.trainable_name)
            count = total if total and len(trials) <= total else None  # a grid makes num_samples x grid
            best = self.best.get(trial.trial_id)
            if best is None:  # a trial kept from before a --resume: Tune's own record of its values
                best = (getattr(trial, "metric_analysis", None) or {}).get(metric, {}).get("max")
            say(trial_line(self.finished, count, trial.trial_id, model_name, epochs, best, ended))

        def _trained(self, trial: Any) -> bool:
            # A trial Tune stops before its first epoch (the time budget) completes with a result of Tune's own
            # (done, iteration 0) and no metric: it counts as reported, so Tune's flag cannot tell.
            return trial.trial_id in self.ended or metric in (trial.last_result or {})

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self._trained(trial):
                self._line(trials, trial, self.ended.get(trial.trial_id, "finished"))
            else:  # no result at all: the search ended first, or the trainable returned without one
                cut = "the interrupt" if interrupted() else cut_by if cut_by != SEARCH_END else None
                self._line(trials, trial, f"not trained: stopped by {cut}" if cut else "not trained")

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            # Trials still training when the search ended (its time budget) get no on_trial_complete from Tune.
            # Their ending comes from their last result (also for trials kept from before a --resume).
            by = "the interrupt" if interrupted() else cut_by
            for trial in trials:  # every trial of RUN/trials.csv gets its line, trained or not
                if trial.trial_id in self.lined:
                    continue
                last = trial.last_result or {}
                self._line(trials, trial, how_ended(bool(last.get("done")), last.get("training_iteration"), max_epochs,
                                                    scheduler, final_flag(last.get("final_epoch")), by)
                           if self._trained(trial) else f"not trained: stopped by {by}")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            text = ""
            try:  # the exception's own last line ("RuntimeError: ..."), not Ray's wrapper
                if trial.error_file and os.path.exists(trial.error_file):  # the driver's copy, synced later
                    text = open(trial.error_file, encoding="utf-8", errors="replace").read()
                text = text or str(trial.get_error() or "")
            except Exception:  # noqa: BLE001 -- a missing error file must not break the search's console
                pass
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            self._line(trials, trial, f"failed: {lines[-1].strip()[:120] if lines else 'see RUN/logs/'}")

    return TrialLines()


def scheduler_name(name: str) -> str:
    """How a scheduler's stop reads in a trial line (``asha`` -> ``ASHA``)."""
    return {"asha": "ASHA", "hyperband": "async HyperBand", "fifo": "FIFO"}.get(name, name)
