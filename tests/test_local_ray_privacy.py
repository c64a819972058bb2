"""A local search keeps to this machine and keeps secrets: Ray's processes listen on loopback only, and
`--wandb offline` alone works with the W&B key removed before Ray starts (never in Ray's processes), and the
search exits quietly."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, os, sys, threading, time
    from pathlib import Path

    os.environ.pop("WANDB_MODE", None)
    os.environ["WANDB_API_KEY"] = SECRET = "speciesfam-privacy-key-0123456789abcdef"
    os.environ["WANDB_DIR"] = sys.argv[1] + "/wb"
    from speciesfam._lazy import torch_modules
    torch_modules()
    from speciesfam.config import TuneConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.synthetic import make_collection
    from speciesfam.tune.search import run_search

    ME = os.getpid()

    def tree():
        parent = {}
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        mine, grew = {ME}, True
        while grew:
            new = {p for p, pp in parent.items() if pp in mine and p not in mine}
            mine |= new
            grew = bool(new)
        return mine

    def address(hexaddr):
        ip, port = hexaddr.split(":")
        raw = bytes.fromhex(ip)
        if len(raw) == 4:
            return ".".join(str(b) for b in raw[::-1]), int(port, 16)
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        b = b"".join(words)
        if b[:12] == bytes(10) + b"\\xff\\xff":
            return "::ffff:" + ".".join(map(str, b[12:])), int(port, 16)
        return ":".join(b[i:i + 2].hex() for i in range(0, 16, 2)), int(port, 16)

    listeners, environ_hits, names = {}, set(), {}

    def sample():
        inodes = {}
        for proto in ("tcp", "tcp6"):
            for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A":  # LISTEN
                    inodes[f[9]] = address(f[1])
        for pid in tree():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\\0")[0].decode()[-40:]
                if title:  # Ray renames its workers (ray::IDLE -> ray::RayTrainWorker); a dying one reads empty
                    names[pid] = title
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        ip, port = inodes[link[8:-1]]
                        listeners[f"{ip}:{port}"] = names.get(pid, "")
                if pid != ME and SECRET.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    environ_hits.add(pid)
            except OSError:
                pass

    stop = threading.Event()

    def loop():
        while not stop.is_set():
            sample()
            time.sleep(0.5)

    root = Path(sys.argv[1])
    make_collection(root / "images", counts={"Felidae": 8, "Ranidae": 8}, size=32, seed=3)
    run_catalog(str(root / "images"), str(root / "run"))
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    cfg = TuneConfig.smoke(kind="scratch", num_samples=1, max_epochs=1, workers_per_trial=1, image_size=32,
                           wandb="offline", wandb_project="privacy")
    run_search(str(root / "run"), cfg)
    sample()
    stop.set()
    print("RESULT " + json.dumps({"listeners": listeners, "environ_hits": sorted(environ_hits),
                                  "wandb_runs": len(list((root / "wb").rglob("offline-run-*")))}))
''')


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("0000:0000:0000:0000:0000:0000:0000:0001",) or ip.startswith("::ffff:127.")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_local_search_listens_on_loopback_only_and_never_holds_the_wandb_key(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RAY_ADDRESS", "WANDB_MODE")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=540)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line and out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # and it exits quietly: Ray's W&B callback printed an ignored AttributeError from its __del__ at exit
    assert "Exception ignored" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
    result = json.loads(line[len("RESULT "):])
    assert len(result["listeners"]) >= 5, result  # GCS, raylet, workers, dashboard... were seen
    exposed = {addr: cmd for addr, cmd in result["listeners"].items() if not _loopback(addr.rsplit(":", 1)[0])}
    # TensorFlow's collective gRPC server in a Ray Train worker (MultiWorkerMirroredStrategy's all-reduce,
    # started from TF_CONFIG) binds every interface: TensorFlow offers no bind address. It is TensorFlow's,
    # not Ray's, and is documented in README ("What speciesfam guarantees").
    ray_exposed = {addr: cmd for addr, cmd in exposed.items() if cmd != "ray::RayTrainWorker"}
    assert not ray_exposed, ray_exposed
    assert len(exposed) - len(ray_exposed) <= 1, exposed  # one TF server for the one training worker
    assert result["environ_hits"] == [], "the W&B key reached Ray's processes"
    assert result["wandb_runs"] == 1  # --wandb offline worked with no WANDB_MODE in the environment


PORT_TAKEN = textwrap.dedent('''
    import socket
    from speciesfam import raycluster

    taken = socket.socket()  # a port someone else holds: the first one init_ray's free-port choice returns
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real, chosen = raycluster._free_port, []
    raycluster._free_port = lambda: chosen.append(taken.getsockname()[1] if not chosen else real()) or chosen[-1]
    raycluster.init_ray(num_cpus=1)
    import ray
    print("RESULT", len(chosen), ray.is_initialized(), ray.cluster_resources().get("CPU"))
''')


@pytest.mark.slow
def test_a_dashboard_port_taken_before_ray_binds_it_is_replaced_not_fatal():
    """The free port init_ray picks for the dashboard can be taken before Ray binds it (it once failed every
    test after it): init_ray starts Ray again on another port."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", PORT_TAKEN], capture_output=True, text=True, env=env, timeout=300)
    assert "RESULT 2 True 1.0" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
