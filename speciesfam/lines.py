"""The console's lines about the work, in the tool's words: one per trial that ended (``trial_lines_callback``,
a Tune callback) and how it ended, read back the same way by the report from Tune's ``progress.csv``
(``how_ended``); one per finished stage is ``summaries.summary_line``. ``console`` decides where they go.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

from . import layout
from .console import say
from .interrupts import interrupted, watch_interrupts


def _missing(value: Any) -> bool:
    """None or NaN: a value a result or a table cell does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def score(value: Any) -> str:
    """A macro-F1 or accuracy as the console writes it, 3 decimals (1.0 read '1' beside '0.943': round 76)."""
    return f"{value:.3f}" if isinstance(value, float) and math.isfinite(value) else number(value)


def number(value: Any, digits: int = 3) -> str:
    """A number for people: ints as ints, floats to ``digits`` decimals (``digits`` significant ones when that
    would show none, or when the number is huge), missing as an en dash."""
    if _missing(value):
        return "–"
    if not isinstance(value, float):
        return str(value)
    value += 0.0  # -0.0 reads 0.000
    if value.is_integer() and 1 <= abs(value) < 1e15:
        return str(int(value))
    # two significant digits under 0.01 at 3 decimals, none lost at fewer (9.5 s to 0 decimals read '1e+01'; 62)
    low = 10.0 ** (1 - digits) if digits > 1 else 10.0 ** -digits
    if value != 0 and not low <= abs(value) < 1e15:  # 3e-4 read 0.000; 1e30, 31 digits
        return f"{value:.{max(digits, 1)}g}"
    return f"{value:.{digits}f}"


def trial_line(index: int, total: int | None, trial_id: str, model: str, epochs: int | None, f1: float | None,
               ended: str) -> str:
    """One finished trial in the tool's words, e.g.
    ``trial 2/4 3f2a1b0c  scratch_small   8 epochs  best val macro-F1 0.733  stopped by ASHA``; ``f1``: the
    trial's best epoch's, as in RUN/trials.csv and the search's summary."""
    count = f"{index}/{total}" if total else str(index)
    count = f"{count:<{2 * len(str(total)) + 1 if total else 0}}"  # trial 9/16 and 10/16: ids in one column
    f1_text = "—    " if _missing(f1) else f"{f1:.3f}"  # as wide as 0.733: the endings stay in one column
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


def epoch_of(result: dict) -> Any:
    """A result's epoch (the trainers report it), else Tune's iteration count, which Tune restarts at 1 for a
    resumed CNN trial: one that ran all its epochs read as 'early stopping'."""
    return result.get("epoch", result.get("training_iteration"))


def final_flag(value: Any) -> bool | None:
    """A result's ``final_epoch`` as True/False, from a result dict or a progress.csv cell (None: absent)."""
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    if _missing(value):
        return None
    return bool(value)


def _ended_at(trial: Any) -> float:
    """When a trial last reported: Tune's saved time of it (the result's own timestamp is in whole seconds, and
    trials that ended within one second were listed in Tune's restore order)."""
    at = getattr(getattr(trial, "run_metadata", None), "last_result_time", None)
    if isinstance(at, (int, float)) and math.isfinite(at):
        return float(at)
    return float((trial.last_result or {}).get("timestamp") or 0)


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
            self.kept_said = False
            self.ended: dict[str, str] = {}
            self.best: dict[str, float] = {}
            self.lined: set[str] = set()

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            self._say_kept(trials)

        def _say_kept(self, trials: list) -> None:
            """A --resume: the trials that ended before it are kept, listed first as such (trained or not)."""
            if self.kept_said:
                return
            self.kept_said = True
            # in the order they ended (Tune restores its trials in another order on each --resume: tester)
            for trial in sorted(trials, key=_ended_at):
                if trial.status == "TERMINATED":
                    kept = self._ending(trial, cut_by) if self._trained(trial) else "not trained"
                    self._line(trials, trial, kept + " (kept from before --resume)")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.ended[trial.trial_id] = how_ended(bool(result.get("done")), epoch_of(result), max_epochs, scheduler,
                                                   final_flag(result.get("final_epoch")), cut_by)
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
            count = total if total and self.finished <= total else None
            best = self.best.get(trial.trial_id)
            if best is None:  # a trial kept from before a --resume: Tune's own record of its values
                best = (getattr(trial, "metric_analysis", None) or {}).get(metric, {}).get("max")
            from .tune.history import best_kept

            before = best_kept(getattr(trial, "path", None), metric)  # its line said its best since the resume
            if before is not None and (best is None or before > best):
                best = before
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
            self._say_kept(trials)  # a --resume with nothing left to run has no step (Tune's setup sees no trials)
            # Trials still training when the search ended (its time budget) get no on_trial_complete from Tune.
            # Their ending comes from their last result.
            by = "the interrupt" if interrupted() else cut_by
            for trial in trials:  # every trial of RUN/trials.csv gets its line, trained or not
                if trial.trial_id in self.lined:
                    continue
                self._line(trials, trial, self._ending(trial, by) if self._trained(trial)
                           else f"not trained: stopped by {by}")

        def _ending(self, trial: Any, by: str) -> str:
            """How a trial ended, read from its last result (``by``: what cut it if it was still training)."""
            last = trial.last_result or {}
            return how_ended(bool(last.get("done")), epoch_of(last), max_epochs, scheduler,
                             final_flag(last.get("final_epoch")), by)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._line(trials, trial, self._failure(trial))

        def _failure(self, trial: Any) -> str:
            """As trials.csv says it (``error_text`` of the trial's exception), else from Tune's error file: a
            Ray Train trial's traceback text ended in TensorFlow's op name ('[[IteratorGetNext]]'; tester)."""
            try:  # the driver's pickle of it (Tune's get_pickled_error reads storage, synced after this call)
                path = trial.pickled_error_file
                if path and os.path.exists(path):
                    import cloudpickle

                    with open(path, "rb") as f:
                        err = cloudpickle.load(f)
                    if isinstance(err, BaseException):
                        return f"failed: {error_text(err, 160)}"
            except Exception:  # noqa: BLE001 -- an error that does not unpickle here: its text below
                pass
            text = ""
            try:  # the exception's own last line ("RuntimeError: ..."), not Ray's wrapper
                if trial.error_file and os.path.exists(trial.error_file):  # the driver's copy, synced later
                    text = open(trial.error_file, encoding="utf-8", errors="replace").read()
                text = text or str(trial.get_error() or "")
            except Exception:  # noqa: BLE001 -- a missing error file must not break the search's console
                pass
            lines = message_lines(text)  # a traceback: its last line is the exception's own (or TensorFlow's)
            cause = tf_cause(lines)
            said = ": ".join(cause) if cause else lines[-1] if lines else "see RUN/logs/"
            return f"failed: {said[:160]}"

    return TrialLines()


def counted(n: int, one: str, many: str | None = None) -> str:
    """``1 family``, ``3 families``, ``0 epochs``: a count with its noun for the console."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def some(names: Iterable[str], n: int = 5, quote: bool = False) -> str:
    """The first ``n`` of ``names`` (in their order) joined by commas, ``and K more`` when that is not all:
    a console line names a few of many and says how many it left out. ``quote``: each as ``quoted``."""
    names = list(names)
    shown = [quoted(x) if quote else str(x) for x in names[:n]]
    return ", ".join(shown) + (f" and {len(names) - n} more" if len(names) > n else "")


def quoted(name: Any, limit: int | None = 80) -> str:
    """A name from the data (a family, a column) quoted for a console line; one longer than ``limit`` characters
    as its head and tail and its length (a 250-character family filled a screen); files keep it whole (None)."""
    import json
    import unicodedata

    text = str(name)

    def marked(text: str) -> str:  # as JSON, but only its combining marks (and what repr escapes) escaped: the
        return '"' + "".join(json.dumps(c)[1:-1] if unicodedata.combining(c) or not c.isprintable() or c in '"\\'
                             else c for c in text) + '"'  # rest of "Café Öl 熊" was \u-escaped too (round 66)

    # a decomposed 'Café' read as the composed one: its accent escaped ("Cafe\u0301")
    show = marked if any(unicodedata.combining(c) for c in text) else repr
    if limit is None or len(text) <= limit:
        return show(text)
    return f"{show(text[:limit // 2] + '…' + text[-(limit // 4):])} ({len(text)} characters)"


# A Python exception's own line inside TensorFlow's error text, after its "{{function_node ...}} " prefix if any
_PY_ERROR = r"^(?:.*\}\} )?([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$"


def error_text(err: BaseException | None, limit: int = 300) -> str:
    """``Type: message`` of the exception that failed a trial, dug out of Ray's wrappers.

    Tune reports ``ray::ImplicitFunc.train() (pid=..., ip=...)`` (a ``RayTaskError`` whose ``cause`` is the
    trial's exception); a Ray Train run inside the trial adds ``WorkerGroupError`` (``worker_failures`` by
    rank, each again a ``RayTaskError``) or ``ControllerError`` (``controller_failure``).
    """
    if err is None:
        return ""
    if isinstance(err, str):  # Tune's Result.error for a trial whose workers Ray killed for memory: its error file's text
        said = [ln for ln in message_lines(err) if not ln.startswith("Failure # ")]
        return (said[0] if said else "failed")[:limit]
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        failures = getattr(err, "worker_failures", None)
        inner = (getattr(err, "cause", None) or (failures[min(failures)] if failures else None)
                 or getattr(err, "controller_failure", None) or getattr(err, "__cause__", None))
        if not isinstance(inner, BaseException):
            break
        err = inner
    name = type(err).__name__
    if name.startswith("RayTaskError(") and name.endswith(")"):  # Ray's dual class when the cause was lost
        name = name[len("RayTaskError("):-1]
    lines = message_lines(str(err))
    cause = tf_cause(lines)
    if cause:  # TensorFlow's error from a tf.data or py_function: the Python exception inside it says what failed
        name, lines = cause[0], [cause[1]]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling "):  # Keras: the cause follows
        lines = [f"{lines[1]} (in {lines[0].removeprefix('Exception encountered when calling ').rstrip('.')})"]
    text = f"{name}: {lines[0] if lines else ''}".rstrip(": ")
    failure = getattr(err, "health_check_failure", None)  # Ray Train's: 'A worker health check failed.', then why
    if isinstance(failure, BaseException):
        text += f" ({type(failure).__name__}: {(message_lines(str(failure)) or [''])[0]})"
    if name in PROCESS_DIED:  # the process is gone: say what usually takes one
        text += "; a worker process died (killed by a signal, or for memory: see logs/ray/ in the run folder)"
    return text[:limit]


# Ray's errors when a worker process died under a trial (SIGKILL, the OOM killer); not ActorDiedError, which is
# also an actor's own constructor failing (its message says so)
PROCESS_DIED = frozenset({"WorkerHealthCheckFailedError", "WorkerCrashedError"})


def tf_cause(lines: list[str]) -> tuple[str, str] | None:
    """(type, message) of the Python exception inside a TensorFlow op's error (``lines``: ``message_lines`` of
    the error or of a traceback ending in it): a tf.data or py_function failure reads "InvalidArgumentError: Graph
    execution error" or ends in "[[IteratorGetNext]] [Op:...]", and says nothing of its cause. None otherwise."""
    import re

    start = next((i for i, ln in enumerate(lines) if ln.endswith("Graph execution error:")
                  or "{{function_node " in ln), None)
    found = None if start is None else next((m for ln in lines[start:] if not ln.endswith("Graph execution error:")
                                             and (m := re.match(_PY_ERROR, ln))), None)
    return (found[1].rsplit(".", 1)[-1], found[2]) if found else None


def message_lines(text: str) -> list[str]:
    """The non-blank lines of an error's text without terminal colour codes and without Keras's "Arguments
    received by LAYER.call():" block, which follows the cause and would otherwise end it (``• kwargs=...``)."""
    import re

    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if ln.strip()]
    cut = next((i for i, ln in enumerate(lines) if ln.startswith("Arguments received by ")), len(lines))
    return lines[:cut]


def scheduler_name(name: str) -> str:
    """How a scheduler's stop reads in a trial line (``asha`` -> ``ASHA``)."""
    return {"asha": "ASHA", "hyperband": "async HyperBand", "fifo": "FIFO"}.get(name, name)
