"""A real 2-node Ray cluster on this machine: jobs submitted with `ray job submit` write their artifacts, and a
local storage path on a multi-node cluster is refused before any training."""

import pytest

from speciesfam.localcluster import LocalCluster, check_artifacts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(port=6391, dashboard_port=8267, temp_dir=str(tmp_path_factory.mktemp("raytmp")))
    c.start()
    yield c
    c.stop()
    assert not c.pids(), "cluster processes left behind"


def test_two_node_cluster_runs_clean_and_tune_jobs(cluster, tmp_path):
    import json
    import subprocess
    import sys

    look = ("import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(json.dumps([sorted(n['Resources']) for n in ray.nodes() if n['Alive']]))")
    out = subprocess.run([sys.executable, "-c", look, f"127.0.0.1:{cluster.port}"], capture_output=True, text=True,
                         env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled"}, check=True)
    nodes = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(nodes) == 2 and any("head" in n for n in nodes) and any("node2" in n for n in nodes)
    workdir = str(tmp_path / "run")
    cluster.submit("jobs/clean_data.py", "--smoke-test", "--workdir", workdir)
    cluster.submit("jobs/tune_transfer.py", "--smoke-test", "--workdir", workdir)
    summary = check_artifacts(workdir)
    assert summary["trials"] == 2 and summary["ok"] >= 1
    assert (tmp_path / "run" / "tune" / "transfer").is_dir()


def test_local_storage_on_multi_node_cluster_fails_fast(cluster, tmp_path):
    import subprocess
    import sys

    from speciesfam.demo import demo_images

    workdir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "speciesfam.cli", "catalog", demo_images(), "--workdir", str(workdir)],
                   check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "speciesfam.cli", "tune", "scratch", "--smoke-test", "--workdir",
                          str(workdir), "--address", f"127.0.0.1:{cluster.port}"],
                         capture_output=True, text=True, env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled"})
    assert out.returncode == 2
    assert "is a local path but the Ray cluster has 2 nodes" in out.stderr
