"""A cluster address (--address, RAY_ADDRESS) that is no Ray cluster's head is refused in one line (exit 2)
before any work: ``ray.init`` waited on it without end, printing Ray's C++ warnings (hostile tester rounds 42-45)."""

from __future__ import annotations

import pytest

from speciesfam import cli
from speciesfam.errors import ConfigError


def test_a_cluster_address_where_no_ray_answers_is_refused_at_once(tmp_path, monkeypatch, capsys):
    """`--address 127.0.0.1:6399` with no cluster there waited without end, Ray's C++ 'Failed to connect to GCS'
    warnings every ~40 s, Ctrl-C ignored (hostile tester round 42): one line naming it, exit 2."""
    import socket
    import time

    from speciesfam.data.synthetic_embeddings import make_embedding_run

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = str(tmp_path / "run")
    make_embedding_run(run, rows=30, dim=4, families=3)
    start = time.monotonic()
    assert cli.main(["tune", "probe", "--workdir", run, "--smoke-test", "--address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there (connection refused)" in err, err
    assert len(err.splitlines()) == 1 and time.monotonic() - start < 60
    monkeypatch.setenv("RAY_ADDRESS", f"ray://localhost:{port}")
    assert cli.main(["tune", "probe", "--workdir", run, "--smoke-test"]) == 2
    err = capsys.readouterr().err
    assert f"RAY_ADDRESS ray://localhost:{port}: no Ray cluster answers there" in err and "unset RAY_ADDRESS" in err, err
    monkeypatch.delenv("RAY_ADDRESS")
    # a web server there (the dashboard's port, say) hung as well; a malformed address was a traceback (round 43)
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # its request log would share stderr with the line tested
            pass

    web = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        for address, said in ((f"127.0.0.1:{web.server_port}", "a program answers there, but not a Ray cluster"),
                              ("http://127.0.0.1:8265", "an http:// address is the dashboard's"),
                              ("127.0.0.1", "expected HOST:PORT"), ("127.0.0.1:99999", "expected HOST:PORT"),
                              (f"127.0.0.1:{web.server_port}/", "expected HOST:PORT")):  # Ray's ValueError: round 44
            assert cli.main(["tune", "probe", "--workdir", run, "--smoke-test", "--address", address]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"--address {address}: " in err and said in err, err
    finally:
        web.shutdown()


def test_a_grpc_server_that_is_not_rays_gcs_is_refused_and_rays_is_taken(ray_session, capsys):
    """Any gRPC server passed the HTTP/2 check, Ray Client's port 10001 given without ray:// among them, and
    ray.init waited on it without end (hostile tester round 44). Ray's own GCS must pass."""
    from concurrent import futures

    import grpc
    import ray

    from speciesfam.raycluster import check_reachable

    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(ConfigError, match=f"^--address 127.0.0.1:{port}: a program answers there, but not a "
                                              "Ray cluster's head"):
            check_reachable(f"127.0.0.1:{port}")
    finally:
        server.stop(None)
    check_reachable(ray.get_runtime_context().gcs_address)  # this session's Ray: no error


def test_rays_connection_errors_point_at_the_address_not_at_storage(tmp_path, monkeypatch, capsys):
    """'ConnectionError: Could not find any running Ray instance ... (check the path, its permissions and free
    space; for s3:// ...)' (hostile tester round 44): Ray's errors name the cluster's address; storage's keep theirs."""
    from speciesfam.data.synthetic_embeddings import make_embedding_run

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=30, dim=4, families=3)
    for err, hint in ((ConnectionError("Could not find any running Ray instance."), "check the cluster's address"),
                      (ConnectionError("Connection refused by endpoint s3.local"), "check the path, its permissions")):
        def fail(args, err=err):
            raise err

        monkeypatch.setitem(cli.COMMANDS, "report", fail)
        assert cli.main(["report", "--workdir", run]) == 2
        assert f"({hint}" in capsys.readouterr().err



def test_address_auto_is_the_cluster_ray_would_join_checked_the_same_way(tmp_path, monkeypatch, ray_session, capsys):
    """`--address auto` joins the cluster `ray start` last recorded (/tmp/ray/ray_current_cluster): where that
    cluster had died, it waited without end (round 44's leftover). Ray's own lookup, then the same check."""
    import socket

    import ray

    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.raycluster import check_reachable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # where Ray keeps that record; not this machine's /tmp/ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # ray.init set it to this session's Ray; Ray's lookup reads it first
    # no other Ray on this machine (Ray's 'auto' takes the one GCS process it finds running over that record)
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", lambda: frozenset())
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    run = str(tmp_path / "run")
    make_embedding_run(run, rows=30, dim=4, families=3)
    assert cli.main(["tune", "probe", "--workdir", run, "--smoke-test", "--address", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.endswith(f"--address auto (127.0.0.1:{port}, the Ray cluster found on this machine; `ray stop` forgets "
                        "a dead one): no Ray cluster answers there (connection refused); check the head node's address "
                        "and port (`ray status` on the head prints it), or leave --address out to run on a local Ray"), err
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    with pytest.raises(ConfigError, match="^RAY_ADDRESS auto .*unset RAY_ADDRESS to run on a local Ray$"):
        check_reachable("auto", "RAY_ADDRESS")
    monkeypatch.delenv("RAY_ADDRESS")
    (tmp_path / "ray" / "ray_current_cluster").write_text("")  # emptied (a full disk): Ray's ValueError (round 46)
    with pytest.raises(ConfigError, match="^--address auto: Ray's record of the cluster `ray start` last started here "
                                          r"\(ray_current_cluster in Ray's temp folder\) is empty: `ray stop` removes it"):
        check_reachable("auto")
    (tmp_path / "ray" / "ray_current_cluster").write_text(ray.get_runtime_context().gcs_address)
    check_reachable("auto")  # a live cluster: no error


JOIN = """
import sys, ray
from speciesfam.raycluster import init_ray
init_ray(sys.argv[1])
print("joined", int(ray.cluster_resources()["CPU"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("given", ["gcs", "localhost"])
def test_a_second_command_joins_a_local_ray_that_listens_on_loopback_only(ray_session, given):
    """A speciesfam command given the address of another one's local Ray (127.0.0.1 only), as `--address auto`
    finds it: Ray joined it at the machine's external address, where nothing answers, and waited without end
    printing 'Failed to connect to GCS' (docs auditor). Run in a fresh process: this one's Ray is on loopback."""
    import os
    import subprocess
    import sys

    address = ray_session.get_runtime_context().gcs_address
    if given == "localhost":
        address = "localhost:" + address.rpartition(":")[2]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    done = subprocess.run([sys.executable, "-c", JOIN, address], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "joined 2" in done.stdout, done.stderr[-2000:]
    # said at the start: when the Ray's owner ends, Ray's core worker ends this process at once, with no line of ours
    assert "is another program's local Ray" in done.stderr and "this command with it (exit 1" in done.stderr, \
        done.stderr[-2000:]


def test_a_command_started_with_sigint_ignored_ignores_it_while_ray_starts_too():
    """`speciesfam clean ... &` in a script starts with SIGINT ignored (POSIX shells do that), and Python keeps it
    ignored: only a SIGINT while the local Ray started stopped such a clean; one a second later was ignored
    (hostile tester round 65). While Ray starts it is held only where it would be acted on."""
    import os
    import signal

    from speciesfam.raycluster import _interrupts_held

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _interrupts_held() as held:
            os.kill(os.getpid(), signal.SIGINT)
        assert held == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with _interrupts_held() as held:  # a terminal's Ctrl-C: held, acted on once Ray has started
            os.kill(os.getpid(), signal.SIGINT)
        assert held == [signal.SIGINT] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
