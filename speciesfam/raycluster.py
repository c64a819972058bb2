"""Connecting to Ray: a running cluster (``RAY_ADDRESS`` or ``--address``), else a local one."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

from ._lazy import OWN_TEMP
from .errors import SpeciesfamError


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process, quietly, with speciesfam's environment for every worker."""
    import logging

    import ray

    from . import cluster_watch, console, interrupts

    named = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    found = check_reachable(address, named) if address else None  # refused whether or not Ray runs here already
    if ray.is_initialized():
        return
    if found and _loopback_cluster(found):
        _loopback_only()  # joined on 127.0.0.1, as it listens: Ray went to the external address and waited forever
        # its owner's end stops it, and Ray's core worker then ends this process at once (exit 1; the plasma
        # store's connection lost): nothing of ours can say it then (hostile tester), so it is said now
        console.say_err(f"{cluster_watch.WHO[0]}: note: {found} is another program's local Ray (a speciesfam "
                        "command's or a notebook's: it listens on 127.0.0.1 only); when that program ends, its Ray "
                        "stops and this command with it (exit 1, no more lines): for a Ray that outlives them, "
                        "`ray start --head`")
    # Quiet workers unless --verbose (console.py); a TF_CPP_MIN_LOG_LEVEL the user set wins.
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "KERAS_BACKEND": "tensorflow",
           OWN_TEMP: "1", **console.worker_env()}  # TensorFlow's files per traced function: see own_temp_folder
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR"):  # never the API key
        if key in os.environ:
            env[key] = os.environ[key]
    for attempt in range(1, 4):
        kwargs, held = {}, []
        if not address:  # a new local Ray, reachable from this machine only
            _loopback_only()
            # Ray Train's placement-group cleaner finds its cluster through the State API, which auto-detects it
            # and fails when another Ray runs on this machine ("Found multiple active Ray instances"): the
            # finished trial's placement group then leaks and the next trial waits forever. Give the new Ray
            # a dashboard port of its own and tell every worker where that API server is.
            port = _free_port()
            env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
            kwargs = {"num_cpus": num_cpus, "include_dashboard": True, "dashboard_host": "127.0.0.1",
                      "dashboard_port": port, "_node_ip_address": "127.0.0.1"}
        try:
            # SIGINT is held only while a local Ray starts (its daemons); joining a cluster leaves none behind
            with _daemons_in_own_groups(not address), _interrupts_held(not address) as held:
                # 'local': a new Ray even where `ray start` left /tmp/ray/ray_current_cluster (ray.init(None) joined
                # that cluster, refusing num_cpus, or waited on a dead one's address for 35 s: round 41)
                ray.init(address=address or "local", runtime_env={"env_vars": env},
                         log_to_driver=console.log_to_driver(),
                         logging_level=logging.INFO if console.verbose() else logging.WARNING, **kwargs)
            if held:  # Ctrl-C while Ray started: stop it whole now (cut short, its agents outlived it by ~1 min)
                ray.shutdown()
                raise KeyboardInterrupt
            console.quiet_raylet_notes()
            break
        except SystemExit as err:  # SIGTERM inside ray.init: Ray's own handler exits (15, silently, leaving daemons)
            if err.code != signal.SIGTERM:
                raise
            _stop_half_started_ray()
            raise KeyboardInterrupt from None  # as a SIGTERM at any other time: "interrupted", exit 130
        except Exception as err:  # noqa: BLE001 -- Ray raises a bare Exception with the dashboard's log
            # The free port was taken between choosing it and the dashboard binding it (by another process,
            # or by one of Ray's own components, which bind random ports too): seen once in a test run, where
            # it failed every test after it. Ray says "already occupied" when its own check finds it taken,
            # "address already in use" when the dashboard then fails to bind. Choose another port.
            taken = any(s in str(err) for s in ("address already in use", "already occupied"))
            # Ray waits 30 s (fixed) for its raylet to register: on a loaded machine it raised a bare Exception
            # (a traceback; hostile tester at load 23). Stop what started and try again; then say it in one line.
            slow = "timed out during startup" in str(err)
            if address or not (taken or slow):
                raise
            if slow:
                _stop_half_started_ray()
            else:
                ray.shutdown()
            if held:
                raise KeyboardInterrupt from err
            if attempt == 3 and slow:
                load = f"load average {os.getloadavg()[0]:.0f} on {os.cpu_count()} cores; " if hasattr(
                    os, "getloadavg") else ""
                raise SpeciesfamError(f"a local Ray did not start: its raylet did not register within Ray's 30 s, 3 "
                                      f"times ({load}the machine is too busy); run it again when it is less "
                                      "busy") from err
            if attempt == 3:
                raise
    console.quiet_loggers()
    if not (address or "").startswith("ray://"):  # a gone head: said, not silent
        cluster_watch.watch(ray.get_runtime_context().gcs_address, (found or address) if address else None)
    if threading.current_thread() is threading.main_thread():  # replaces Ray's C++ abort-with-stack-dump
        signal.signal(signal.SIGTERM, interrupts.raise_interrupt)


def _stop_half_started_ray() -> None:
    """Kill the Ray processes this process started, and theirs (the raylet's agents, the dashboard's modules),
    when ``ray.init`` was cut short: ``ray.shutdown`` knows only a node that finished starting. Each is
    suspended as it is found, so none starts another while the tree is walked."""
    import ray

    found: dict[int, object] = {}
    try:
        import psutil  # Ray's own copy (ray/thirdparty_files, on sys.path once ray is imported)

        def ray_process(p) -> bool:
            try:
                return p.pid not in found and "ray" in " ".join(p.cmdline())
            except psutil.Error:  # gone since it was listed
                return False

        for _ in range(20):
            new = [p for p in psutil.Process().children(recursive=True) if ray_process(p)]
            if not new:
                break
            for p in new:
                with contextlib.suppress(psutil.Error):
                    p.suspend()
                found[p.pid] = p
        for p in found.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
    except (ImportError, OSError):  # no psutil here: shutdown does what it can
        pass
    ray.shutdown()


def check_reachable(address: str, named: str = "--address", timeout_s: float = 5.0) -> str | None:
    """Refuse a cluster address that is no Ray cluster's, in one line, before ``ray.init``: a malformed one (Ray
    raised ValueError: a traceback), one where nothing accepts a connection within ``timeout_s`` or where the
    program listening does not speak gRPC (HTTP/2) as Ray's GCS and client server do (a web server, the
    dashboard's port), or, for HOST:PORT, is not Ray's GCS (``_is_gcs``): ``ray.init`` waited on those without
    end, printing Ray's C++ 'Failed to connect to GCS' warnings every ~40 s (hostile tester rounds 42-44).
    'auto' is the address Ray would choose for it (RAY_ADDRESS, /tmp/ray/ray_current_cluster, a GCS running
    here), checked the same way; 'local' starts a new Ray. Returns the address checked (for 'auto', the one
    found; None for 'local', or where Ray's lookup moved)."""
    import socket

    from .errors import ConfigError

    leave = "leave --address out" if named.startswith("--address") else "unset RAY_ADDRESS"
    if address == "local":
        return None
    if address == "auto":  # Ray's choice, checked: a cluster `ray start` left recorded but dead waited without end
        found = _auto_address(named, leave)
        if found:
            check_reachable(found, f"{named} auto ({found}, the Ray cluster found on this machine; `ray stop` "
                                   "forgets a dead one):", timeout_s)
        return found
    target = address.split("://", 1)[1] if address.startswith("ray://") else address
    host, _, port = target.rpartition(":")  # 'HOST:PORT/' too is refused: Ray's own parse raised ValueError
    if "://" in target or not host or not port.isdigit() or not 0 < int(port) < 65536:
        dashboard = (" (an http:// address is the dashboard's, for `ray job submit --address`)"
                     if "://" in target else "")
        raise ConfigError(f"{_said(named, address)} expected HOST:PORT of a Ray cluster's head, as `ray start "
                          f"--head` prints it (e.g. 10.0.0.5:6379), or ray://HOST:10001 for Ray Client{dashboard}; or "
                          f"{leave} to run on a local Ray")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)  # HTTP/2's client preface and an empty SETTINGS frame; gRPC answers SETTINGS
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            answer = conn.recv(9)
    except OSError as err:
        why = (f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError)
               else (err.strerror or type(err).__name__).lower())
        raise ConfigError(f"{_said(named, address)} no Ray cluster answers there ({why}); check the head node's "
                          f"address and port (`ray status` on the head prints it), or {leave} to run on a local Ray") from None
    if len(answer) < 4 or answer[3] != 4 or (target == address and not _is_gcs(target, timeout_s)):
        raise ConfigError(f"{_said(named, address)} a program answers there, but not a Ray cluster's head (it takes "
                          "connections on its GCS port, 6379 unless `ray start --head --port` set another; 8265 is "
                          "the dashboard's, for `ray job submit`; Ray Client's port, 10001, is given as ray://HOST:10001); "
                          f"check the port, or {leave} to run on a local Ray")
    return address


def _said(named: str, address: str) -> str:
    """How a refusal names the address: '--address HOST:PORT:', or for 'auto' the text naming what Ray found."""
    return named if named.endswith(":") else f"{named} {address}:"


def _auto_address(named: str, leave: str) -> str | None:
    """The address ``ray.init(address='auto')`` would join (Ray's own lookup), or None where Ray moved it."""
    from .errors import ConfigError

    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        return None
    import logging

    quiet = logging.getLogger("ray._private.services")  # its 'Found multiple active Ray instances' reached the console
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise ConfigError(f"{named} auto: no Ray cluster runs on this machine (`ray start --head` starts one); "
                          f"give the head's HOST:PORT, or {leave} to run on a local Ray") from None
    finally:
        quiet.setLevel(level)
    if found is not None and not found.strip():  # a ray_current_cluster emptied (a full disk): Ray's ValueError
        raise ConfigError(f"{named} auto: Ray's record of the cluster `ray start` last started here (ray_current_cluster "
                          f"in Ray's temp folder) is empty: `ray stop` removes it; or give the head's HOST:PORT, or "
                          f"{leave} to run on a local Ray")
    return found


def _is_gcs(address: str, timeout_s: float) -> bool:
    """Whether the gRPC server at ``address`` is Ray's GCS: it serves NodeInfoGcsService's GetClusterId (another
    gRPC server, Ray Client's port among them, answers UNIMPLEMENTED; ray.init waited on one without end: hostile
    tester round 44). A GCS that wants a token (RAY_AUTH_MODE=token) answers, refusing: a GCS all the same."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(b"", timeout=timeout_s)  # an empty request is a valid GetClusterIdRequest
        except grpc.RpcError as err:
            return err.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                                      grpc.StatusCode.DEADLINE_EXCEEDED)
    return True


@contextlib.contextmanager
def _interrupts_held(hold: bool = True) -> Iterator[list[int]]:
    """SIGINT while Ray starts is held (the list it yields says whether one came) and acted on once it has
    started: a KeyboardInterrupt inside ``ray.init`` left the dashboard and runtime-env agents that the raylet
    had started running for a minute after the command exited 130."""
    held: list[int] = []
    # a command started with SIGINT ignored (`cmd &` in a script, nohup) ignores it throughout, as Python does:
    # held here, a SIGINT during ray.init alone stopped it (hostile tester round 65, kill -INT of such a clean)
    if not hold or threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield held
        return
    before = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, before)


@contextlib.contextmanager
def _daemons_in_own_groups(starting: bool) -> Iterator[None]:
    """While a local Ray starts: each of its daemons (GCS, raylet, dashboard; the raylet's workers and agents follow
    theirs) leads a process group of its own, not this process's.

    They inherited this process's group. ``timeout`` and a shell's ``kill %1`` signal a whole process group, so a
    SIGTERM meant to stop the search killed the GCS too, and the driver, which stops a search on SIGTERM and saves
    its state, exited 1 with nothing said or saved. A terminal's Ctrl-C and a supervisor's signal still reach this
    process, and Ray stops with it (``ray.shutdown`` at exit; Ray's own parent-death signal besides). Ray starts
    every daemon through one ``Popen`` subclass (``ray._private.services.ConsolePopen``, checked in
    tests/test_search_process.py): this gives it ``process_group=0`` while ``ray.init`` runs. (Before, this process
    led a new group while Ray started, which a process that already leads its group, a shell's job, cannot.)
    """
    try:
        from ray._private import services
    except ImportError:  # Ray moved it: the daemons stay in this process's group, as before
        services = None
    base = getattr(services, "ConsolePopen", None)
    if not starting or sys.platform == "win32" or base is None:
        yield
        return

    class OwnGroupPopen(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnGroupPopen
    try:
        yield
    finally:
        services.ConsolePopen = base


def actor_pool(num_actors: int | None = None, use_gpu: bool = True) -> tuple[int, int, int]:
    """(actors, torch threads per CPU actor, GPUs used) for a Ray Data actor pool fed by decode tasks.

    GPU: one actor per GPU. CPU only: up to one actor per node, leaving at least one CPU in the cluster for the
    decode tasks that feed the actors (an actor holding every CPU deadlocked them). Each CPU actor reserves 1 CPU
    but uses its node's cores as torch threads: Ray would otherwise limit it to one thread (measured 0.45x a
    plain 2-thread loop).
    """
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0)) if use_gpu else 0
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
    total_cpus = int(sum(n["Resources"]["CPU"] for n in nodes))
    actors = num_actors or (gpus if gpus else max(1, min(len(nodes), total_cpus - 1)))
    per_node = -(-actors // max(1, len(nodes)))
    threads = 0 if gpus else max(1, int(min(n["Resources"]["CPU"] for n in nodes)) // per_node)
    return actors, threads, gpus


def use_actor_threads(threads: int) -> None:
    """In an ``actor_pool`` CPU actor, once its model is loaded: let torch use ``threads`` (Ray would limit it to
    the actor's 1-CPU reservation). Only where the model loaded torch: importing it (and open_clip) for a model
    that does not took ~7 s per actor."""
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _loopback_only() -> None:
    """Make the local Ray about to start listen on 127.0.0.1 only (GCS, raylet, workers, agents, metrics).

    Ray 2.60 replaces a loopback node address by the machine's external one unless its "cluster mode" is off
    (``ray_constants.ENABLE_RAY_CLUSTER``, the ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` switch, read when
    ``ray.init`` resolves the node IP: ``ray/_private/services.py`` ``get_node_ip_address``); every server then
    binds the node IP, which was 0.0.0.0 / the external address for the GCS, raylets, workers and two
    unauthenticated metrics endpoints. Set here in this process only (not in ``os.environ``), so
    ``ray start`` clusters started from this process stay multi-node capable.
    """
    from ray._private import ray_constants

    if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False


def _loopback_cluster(address: str) -> bool:
    """Whether ``address`` (as ``check_reachable`` returns it: 'auto' resolved) is a Ray on this machine that
    listens on 127.0.0.1 only (a local Ray of another speciesfam command, or of a notebook): Ray 2.60 joins 127.0.0.1:PORT at the machine's
    external address (``_loopback_only``), where nothing answers, and waited on it without end, printing 'Failed
    to connect to GCS' (docs auditor: ``--address auto`` beside a running search). A cluster of ``ray start``
    answers there too: joined as Ray joins it."""
    from ray._private import services

    from .cluster_watch import answers

    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit() or not services.is_localhost(host.strip("[]")):
        return False
    external = services.get_node_ip_address()  # where ray.init would join it
    return not services.is_localhost(external) and not answers(f"{external}:{port}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_shared(uri: str, what: str) -> None:
    """Fail before any work when ``uri`` is a node-local path on a multi-node cluster.

    Other nodes cannot see this machine's disk: data and Tune storage must be cloud URIs (s3://, gs://) or an
    NFS path mounted at the same place on every node; for NFS, set SPECIESFAM_SHARED_FS=1 to say so.
    """
    import ray

    from . import storage
    from .config import ConfigError

    if storage.is_remote(uri) or os.environ.get("SPECIESFAM_SHARED_FS") == "1":
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        raise ConfigError(f"{what}={uri!r} is a local path but the Ray cluster has {len(nodes)} nodes, which cannot "
                          "all see it. Use s3:// or gs://, or an NFS path mounted on every node and set "
                          "SPECIESFAM_SHARED_FS=1 in the job's environment.")
