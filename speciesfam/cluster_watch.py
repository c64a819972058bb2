"""The Ray cluster a command runs on, watched while it runs.

When the cluster's head stops answering (another command's local Ray, joined with ``--address auto``, shut down
as that command ended; a head node stopped or lost; a local Ray's processes ended from outside), Ray's core worker
ends the process about a minute later (its ``gcs_rpc_server_reconnect_timeout_s``, 60 s) with exit 1 and only its
own notes, which go to the log: the command ended with no line of ours (hostile tester, 2026-12-06). Instead, after
``GONE_S`` of no answer the command says so in one line and stops as a SIGTERM stops it (a search saves its
state, and ``--resume`` goes on from it); exit 1. Where Ray's calls to the gone cluster block that stop, the
process ends ``EXIT_S`` later.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

ARMED = threading.Event()  # a command's own process (``cli.entry``, the job scripts): a Python caller of
# speciesfam's functions (a notebook, the tests) is never signalled nor ended from here
GONE = threading.Event()  # set once the cluster stopped answering: the command's exit is 1, its line said
CHECK_S = 2.0
GONE_S = 15.0  # well inside Ray's 60 s, so the stop has time to save a search's state
EXIT_S = 20.0  # then ended here: the main thread can be blocked in a call to the gone GCS (Tune's
# cluster_resources) until Ray's own 60 s
WHO = ["speciesfam"]  # the command's name in its lines (cli.run sets it)
_WATCHED: list[str] = []  # the address watched now: a thread watching another one (Ray shut down and started
# again in this process, as the tests do) ends


def watch(address: str, shown: str | None) -> None:
    """Watch the cluster whose GCS is at ``address`` (HOST:PORT) from a daemon thread; ``shown``: the address
    the command was given (``auto`` as found), None for the command's own local Ray. Not for Ray Client
    (ray://): its own connection says when the cluster is gone."""
    if not ARMED.is_set() or ":" not in address or _WATCHED == [address]:
        return
    _WATCHED[:] = [address]
    GONE.clear()
    threading.Thread(target=_watch, args=(address, shown), name="speciesfam-cluster-watch", daemon=True).start()


def answers(address: str, timeout_s: float = CHECK_S) -> bool:
    """Whether something accepts a connection at ``address`` (the GCS's port: a gone head refuses or times out)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def _watch(address: str, shown: str | None) -> None:
    import ray

    down_since = None
    while True:
        time.sleep(CHECK_S)
        if _WATCHED != [address] or not ray.is_initialized() or ray.get_runtime_context().gcs_address != address:
            if _WATCHED == [address]:  # shut down by the command: nothing to watch (a later init watches again)
                _WATCHED.clear()
            return
        if answers(address):
            down_since = None
            continue
        down_since = down_since or time.monotonic()
        if time.monotonic() - down_since >= GONE_S:  # each round above checked it is still this Ray's
            _gone(shown or address, shown is None)
            return


def _gone(address: str, local: bool) -> None:
    from . import interrupts

    GONE.set()
    interrupts.STOPPING.set()  # Ray's notes on the work cut short: the log's
    which = "this command's local Ray" if local else "the Ray cluster"
    line = (f"{WHO[0]}: failed: {which} at {address} stopped answering ({GONE_S:.0f} s; its head went away: "
            + ("`ray stop` or the OOM killer ended its processes" if local else "a stopped or lost head node, or another "
               "command's local Ray that ended with it") + "): the command stops; what finished is kept (a search "
            "goes on with --resume once a cluster is up)")
    logging.getLogger(__name__).warning("%s", line)
    print(line, file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # as a SIGTERM stops the command: a search saves its state
    time.sleep(EXIT_S)
    import traceback

    stacks = "\n".join(f"thread {t}:\n{''.join(traceback.format_stack(f))}" for t, f in sys._current_frames().items())
    logging.getLogger(__name__).warning("the command did not end within %.0f s of the cluster going away: ended "
                                        "here; its threads were at:\n%s", EXIT_S, stacks)
    end(1)


def end(code: int) -> None:
    """End the process now with ``code``, its logs and console flushed: ``ray.shutdown`` (and Ray's own at exit)
    would wait on the gone cluster, then Ray's core worker ends it with 1."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
