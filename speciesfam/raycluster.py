"""Connecting to Ray: a running cluster (``RAY_ADDRESS`` or ``--address``), else a local one."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process, quietly, with speciesfam's environment for every worker."""
    import ray

    if ray.is_initialized():
        return
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), "KERAS_BACKEND": "tensorflow"}
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR"):  # never the API key
        if key in os.environ:
            env[key] = os.environ[key]
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = {"num_cpus": num_cpus} if not address else {}
    ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True, **kwargs)
