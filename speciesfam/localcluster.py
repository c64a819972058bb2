"""A real 2-node Ray cluster on this machine, for checking the cluster path end to end.

``python -m speciesfam.localcluster --workdir DIR`` starts a head node and a second node (each with its own
CPU and a custom resource), submits ``jobs/clean_data.py`` and ``jobs/tune_transfer.py --smoke-test`` with
``ray job submit``, waits, checks the artifacts, and stops both nodes. Everything listens on 127.0.0.1 on
ports of its own, and stopping kills only this cluster's processes (never other Ray instances).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import layout, storage

REPO = Path(__file__).resolve().parents[1]
EXCLUDES = [".git", ".venv", ".venv-*", "runs", "**/__pycache__", "*.egg-info"]


@dataclass
class LocalCluster:
    port: int = 6390
    dashboard_port: int = 8266
    temp_dir: str = "/tmp/speciesfam-cluster"
    _agent_ready: bool = False

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @staticmethod
    def env() -> dict[str, str]:
        """This Python's environment first on PATH (so the nodes' and jobs' `python` is this one), and no
        token auth: a loopback-only throwaway cluster."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "RAY_AUTH_MODE": "disabled"}

    def _ray(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        ray_bin = str(Path(sys.executable).with_name("ray"))
        out = subprocess.run([ray_bin, *args], env=self.env(), capture_output=True, text=True)
        if check and out.returncode:  # Ray says why on its own stderr/stdout: keep it in the error
            said = "\n".join((out.stderr + out.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"`ray {' '.join(args[:2])}` exited {out.returncode} (ports {self.port}, "
                               f"{self.dashboard_port}, {self.port + 99}-{self.port + 113}):\n{said}")
        return out

    def _own_ports(self, node: int) -> list[str]:
        """Ports that Ray otherwise fixes (dashboard agent 52365, client server 10001): another Ray on this
        machine (a local `ray.init`) holds those, and a head whose agent cannot bind takes no jobs."""
        base = self.port + 100 + 10 * node
        return ["--dashboard-agent-listen-port", str(base), "--dashboard-agent-grpc-port", str(base + 1),
                "--runtime-env-agent-port", str(base + 2), "--metrics-export-port", str(base + 3)]

    def start(self) -> None:
        """Head node (1 CPU, resource ``head``) and a second node (1 CPU, resource ``node2``)."""
        self._ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port), "--num-cpus", "1",
                  "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
                  "--ray-client-server-port", str(self.port + 99), *self._own_ports(0),
                  "--temp-dir", self.temp_dir, "--resources", json.dumps({"head": 1}), "--disable-usage-stats")
        self._ray("start", "--address", f"127.0.0.1:{self.port}", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                  *self._own_ports(1), "--resources", json.dumps({"node2": 1}), "--node-name", "node2",
                  # its own runtime_resources, as on a real second machine: sharing the head's, each node's
                  # runtime-env agent deleted the job's working dir (the driver's cwd) when its own use ended
                  "--temp-dir", os.path.join(self.temp_dir, "node2"), "--disable-usage-stats")

    def submit_command(self, *job: str) -> list[str]:
        """The ``ray job submit`` command for ``python JOB...`` with this repo as the working dir."""
        # Both nodes are on this machine, so local paths are shared: say so (see raycluster.check_shared).
        # RAY_ADDRESS: Ray Train's PlacementGroupCleaner finds its cluster by auto-detection, which fails when
        # another Ray runs on the machine; the trial's placement group then leaks and the next trial waits forever.
        env_vars = {"SPECIESFAM_SHARED_FS": "1", "RAY_ADDRESS": f"127.0.0.1:{self.port}"}
        runtime_env = json.dumps({"excludes": EXCLUDES, "env_vars": env_vars})
        return [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", self.address,
                "--working-dir", str(REPO), "--runtime-env-json", runtime_env, "--", "python", *job]

    def submit(self, *job: str, timeout_s: float = 900) -> str:
        """Submit a job and wait; returns its output, raising if it failed."""
        self.wait_for_job_agent()
        try:
            out = subprocess.run(self.submit_command(*job), env=self.env(), capture_output=True, text=True,
                                 timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"job {job} did not finish in {timeout_s} s") from err
        return check_job(job, out.returncode, out.stdout, out.stderr)

    def wait_for_job_agent(self, timeout_s: float = 120) -> None:
        """Right after `ray start` the dashboard answers before its job agent is up ("No available agent to
        submit job"): submit a no-op job until one is accepted."""
        deadline = time.time() + timeout_s
        while not self._agent_ready:
            out = subprocess.run([str(Path(sys.executable).with_name("ray")), "job", "submit", "--address",
                                  self.address, "--", "true"], env=self.env(), capture_output=True, text=True)
            if out.returncode == 0:
                self._agent_ready = True
                return
            if time.time() > deadline:
                raise RuntimeError(f"the job API at {self.address} is not ready after {timeout_s} s: {out.stderr[-500:]}")
            time.sleep(2)

    def pids(self) -> list[int]:
        """Processes of this cluster only: their command lines name its GCS port or its temp dir."""
        marks = (f"127.0.0.1:{self.port}", self.temp_dir)
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if any(m in cmd for m in marks):
                    found.append(int(proc.name))
        return found

    def kill_node2(self) -> int:
        """Kill the second node's raylet and every process under it (a node failure); returns how many."""
        children: dict[int, list[int]] = {}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(proc.name))
        doomed = [p for p in self.pids()
                  if "--node-name=node2" in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()]
        for pid in doomed:
            doomed.extend(children.get(pid, []))
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(doomed)

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM this cluster's processes, then SIGKILL whatever is left (raylets restart workers while
        dying, so repeat until none remain)."""
        deadline = time.time() + timeout_s
        sig = signal.SIGTERM
        while (pids := self.pids()) and time.time() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(1)
            sig = signal.SIGKILL


def check_job(job, returncode: int, stdout: str, stderr: str) -> str:
    if returncode != 0 or "succeeded" not in stdout:
        raise RuntimeError(f"job {job} failed (exit {returncode}):\n{stdout[-4000:]}\n{stderr[-2000:]}")
    return stdout


def job_lines(stdout: str) -> list[str]:
    """The job's own lines in ``ray job submit``'s output: after 'Tailing logs until the job exits', before the
    closing '----' / "Job '...' succeeded" block, without Ray's colour codes."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).rstrip() for ln in stdout.splitlines()]
    # Ray's own lines, with or without its log prefix ('2026-12-05 04:47:03,533\tINFO cli.py:42 -- ')
    said = [re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+\s+[A-Z]+ \S+ -- ", "", ln) for ln in lines]
    start = next((i + 1 for i, ln in enumerate(said) if ln.startswith("Tailing logs until the job exits")), 0)
    end = next((i for i in range(len(said) - 2, start - 1, -1)
                if re.fullmatch(r"-+", said[i]) and re.match(r"Job '.*' (succeeded|failed)", said[i + 1])),
               len(lines))
    return [ln for ln in lines[start:end] if ln.strip()]


def check_artifacts(workdir: str) -> dict:
    """What a user expects after the two jobs; raises with the missing piece."""
    for name in (layout.MANIFEST, layout.EMBEDDINGS, layout.CLEAN_MANIFEST, layout.REMOVED, layout.TRIALS):
        if not (Path(workdir) / name).exists():
            raise FileNotFoundError(f"{workdir}/{name} was not written")
    trials = storage.read_table(str(Path(workdir) / layout.TRIALS))
    if not (trials["status"] == "ok").any():
        raise RuntimeError(f"no successful trial in {workdir}/trials.csv:\n{trials[['trial_id', 'status', 'error']]}")
    return {"trials": len(trials), "ok": int((trials["status"] == "ok").sum()),
            "best_val_macro_f1": float(trials["best_val_macro_f1"].max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="shared run folder (both nodes are on this machine)")
    args = parser.parse_args()
    workdir = str(Path(args.workdir).resolve())
    cluster = LocalCluster()
    cluster.start()
    try:
        for name, job in (("clean", "jobs/clean_data.py"), ("tune", "jobs/tune_transfer.py")):
            print(f"{name} job (ray job submit -- python {job} --smoke-test --workdir {workdir}):", flush=True)
            for line in job_lines(cluster.submit(job, "--smoke-test", "--workdir", workdir)):
                print(f"  {line}", flush=True)
        print(json.dumps(check_artifacts(workdir)))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
