"""Ctrl-C and SIGTERM: how a command stops, and when it does not yet.

``STOPPING`` is set once a signal ends the command (the console keeps Ray's notes on the work it cuts short
off the screen: ``console.quiet_raylet_notes``); ``watch_interrupts`` lets a search stop the way Tune saves
it (``--resume`` continues it) and notes it in ``INTERRUPTED``; ``hold_interrupts`` keeps a signal that comes
after a search's trials ended from dropping its summary and report lines; ``raise_interrupt`` is SIGTERM as
Ctrl-C while a stage runs Ray; ``interrupt_in_cleanup_logged`` keeps an interrupt raised in a cleanup callback
off the console.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import Any, Iterator


def interrupt_in_cleanup_logged(hook: Any) -> Any:
    """``sys.unraisablehook`` that logs an interrupt raised where Python cannot raise it (a weakref or ``__del__``
    callback that ran as a SIGTERM came: 'Exception ignored in: <function WeakKeyDictionary...> ... KeyboardInterrupt'
    on the console just before a search's summary, round 54); the search stops the same way, through
    ``STOPPING``. Everything else goes to ``hook`` as before."""
    def logged(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            logging.getLogger(__name__).info("an interrupt came in a cleanup callback (%r); ignored there",
                                             unraisable.object)
            return
        hook(unraisable)

    logged.speciesfam = True
    return logged


STOPPING = threading.Event()  # a Ctrl-C or SIGTERM ends the command: Ray's notes on the work it cuts short go to
# the log, not the console (hostile tester round 28: an interrupted batch predict printed Ray's task errors)


def stop_on_ctrl_c() -> None:
    """Ctrl-C as Python's own (KeyboardInterrupt), with ``STOPPING`` set first: the notes Ray prints while the
    command unwinds stay off the console. In the main thread where the handler is still Python's default."""
    STOPPING.clear()
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        def on_ctrl_c(signum: int, frame: Any) -> None:
            STOPPING.set()
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_ctrl_c)


_HOLDS: list[dict] = []  # per stage the command runs: the handlers ``hold_interrupts`` replaced, once it has


@contextlib.contextmanager
def interrupts_holdable() -> Iterator[None]:
    """A stage the command runs, to its summary and report lines: ``hold_interrupts`` inside it holds a Ctrl-C or
    SIGTERM until then, and the handlers it replaced are put back here."""
    _HOLDS.append({})
    try:
        yield
    finally:
        for sig, handler in _HOLDS.pop().items():
            signal.signal(sig, handler)


def hold_interrupts() -> None:
    """From the end of a search's trials to its summary and report lines: a Ctrl-C or SIGTERM is noted in the
    log, not raised (one just after the last trial line dropped both, and the command exited 130 with every trial
    finished: round 55); the command ends a second or two later, with them. Only inside ``interrupts_holdable``
    (a Python caller of ``run_search`` keeps its Ctrl-C) and in the main thread."""
    if not _HOLDS or _HOLDS[-1] or threading.current_thread() is not threading.main_thread():
        return

    def noted(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).info("signal %d after the search's trials ended: its summary and report are "
                                         "written first", signum)

    _HOLDS[-1].update({sig: signal.signal(sig, noted) for sig in (signal.SIGINT, signal.SIGTERM)})



INTERRUPTED = threading.Event()  # set when SIGINT or SIGTERM stopped the running search (``watch_interrupts``)


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM stopped the last search (a function: Tune pickles callbacks, not locks)."""
    return INTERRUPTED.is_set()


def raise_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: Python's own unwinding (finally blocks, ``ray.shutdown`` at exit) instead of Ray's
    C++ handler, which aborted the driver with a stack dump."""
    STOPPING.set()
    raise KeyboardInterrupt


SAME_SIGNAL_S = 1.0  # a second SIGINT/SIGTERM this soon after the first is the same interrupt delivered twice


def watch_interrupts() -> None:
    """At a search's start, after Tune installed its stop handler (SIGINT, SIGUSR1): note an interrupt in
    ``INTERRUPTED`` before Tune's handler runs, and let SIGTERM stop the search the same way (Tune saves its
    state, ``--resume`` continues it; a SIGTERMed CNN search could not be resumed). A second signal, a second
    or more after the first (``SAME_SIGNAL_S``: sooner, it is the first delivered twice), ends it at once."""
    INTERRUPTED.clear()
    STOPPING.clear()
    tune_stop = signal.getsignal(getattr(signal, "SIGUSR1", signal.SIGINT))
    if threading.current_thread() is not threading.main_thread() or not callable(tune_stop):
        return

    def on_signal(signum: int, frame: Any) -> None:
        INTERRUPTED.set()
        STOPPING.set()
        first = time.monotonic()
        tune_stop(signum, frame)  # puts SIGINT back to what it was before the search
        after = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: raise_interrupt}

        def again(signum: int, frame: Any) -> None:
            # `timeout` signals the command and then its process group, the command again: one interrupt came
            # twice, and the second ended the search before its trials were written (round 52)
            if time.monotonic() - first < SAME_SIGNAL_S:
                return
            for sig, handler in after.items():
                signal.signal(sig, handler)
            handler = after[signal.Signals(signum)]
            if callable(handler):
                handler(signum, frame)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, again)
        signal.signal(signal.SIGTERM, again)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
