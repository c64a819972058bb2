"""A command whose Ray cluster goes away under it says so (hostile tester, 2026-12-06: a search joined to another
command's local Ray with `--address auto` exited 1 with no line of its own when that Ray shut down, a minute later,
as Ray's core worker ends the process)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from speciesfam.data.synthetic_embeddings import make_embedding_run
from speciesfam.localcluster import LocalCluster

pytestmark = pytest.mark.slow  # a cluster of its own, stopped mid-search


def test_a_search_whose_cluster_goes_away_says_so_and_exits_1(tmp_path):
    temp = tempfile.mkdtemp(prefix="sf-gone-")  # short: Ray's socket paths must fit in 107 bytes
    cluster = LocalCluster(port=6395, dashboard_port=8271, temp_dir=temp)
    run = str(tmp_path / "run")
    make_embedding_run(run, rows=4000, dim=128, families=60)
    cluster.start()
    try:
        # the address in the environment: cluster.stop() kills what names it on its command line
        env = {**cluster.env(), "RAY_ADDRESS": f"127.0.0.1:{cluster.port}", "SPECIESFAM_SHARED_FS": "1"}
        search = subprocess.Popen([sys.executable, "-m", "speciesfam", "tune", "probe", "--workdir", run,
                                   "--num-samples", "1000", "--max-epochs", "30"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        lines = []
        for line in search.stdout:  # a few trials done: the search is under way
            lines.append(line)
            if "trial 3/" in line:
                break
        assert any("trial 3/" in ln for ln in lines), "".join(lines) + search.stderr.read()
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)
    stopped = time.monotonic()
    out, err = search.communicate(timeout=120)
    assert search.returncode == 1, err[-3000:]
    said = [ln for ln in err.splitlines() if "stopped answering" in ln]
    assert len(said) == 1 and said[0].startswith(f"speciesfam tune: failed: the Ray cluster at 127.0.0.1:{cluster.port} "
                                                 "stopped answering"), err[-3000:]
    assert "Traceback" not in err and "interrupted" not in err, err[-3000:]
    print(f"ended {time.monotonic() - stopped:.0f} s after the cluster stopped")  # Ray's own end: ~60 s, no line
    # what finished is kept: Tune's state, for --resume
    assert os.path.isdir(os.path.join(run, "tune", "probe")), os.listdir(run)
