"""What a search is refused for before it trains: plug-ins that cannot build, ImageNet weights that cannot be
fetched, a W&B server that cannot be reached, a split on which no trial could score above 0, and a trial the
cluster cannot hold (``trial_slots``, with the workers' CPUs fitted to it: ``fit_worker_cpus``)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .. import lines
from ..config import TuneConfig
from ..console import say
from ..errors import ConfigError, SpeciesfamError
from ..registry import SCHEDULERS, SEARCHERS


def check_plugins(cfg: TuneConfig, space: dict[str, Any]) -> None:
    """Build the searcher and scheduler once before Ray starts: one that cannot take this space fails here, and a
    ``module:attr`` that returns something else is refused in one line (Tune failed on it with a traceback)."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import SearchAlgorithm, Searcher

    # called as the search calls them (a searcher written as (space, seed) passed here, then failed in the Tuner
    # with a traceback: hostile tester round 31)
    for flag, build, kinds, signature in (
            ("searcher", lambda: SEARCHERS.get(cfg.searcher)(space, cfg.seed, points=None), (Searcher, SearchAlgorithm),
             "(space, seed, points=None)"),
            ("scheduler", lambda: SCHEDULERS.get(cfg.scheduler)(cfg), (TrialScheduler,), "(cfg)")):
        try:
            made = build()
        except SpeciesfamError:
            raise
        except TypeError as err:  # the wrong signature, most likely
            raise ConfigError(f"--{flag} {getattr(cfg, flag)} failed when built for this search: TypeError: {err} "
                              f"(a {flag} function is called as {signature}: see speciesfam/tune/algorithms.py)"
                              ) from err
        except Exception as err:  # a plug-in's own failure, or a searcher that cannot take this space
            raise ConfigError(f"--{flag} {getattr(cfg, flag)} failed when built for this search: "
                              f"{type(err).__name__}: {err}") from err
        if made is not None and not isinstance(made, kinds):  # None: Tune's own generator (a plug-in may say so)
            raise ConfigError(f"--{flag} {getattr(cfg, flag)} returned an object of type {type(made).__name__}, not "
                              f"a Ray Tune {kinds[0].__name__}; give a function that builds one (see "
                              "speciesfam/tune/algorithms.py)")


MIN_WEIGHTS_BYTES = 1 << 20  # the smallest backbone's notop weights (MobileNetV3Small) are ~4 MB


def check_imagenet_reachable(space: dict[str, Any], host: str = "storage.googleapis.com") -> None:
    """Refuse ``--weights imagenet`` in seconds where Keras can neither download the weights of the space's
    backbones nor find them cached (every trial failed after minutes with a URL fetch error). A backbone's file
    in Keras' cache is the one keras.applications names (``transfer.IMAGENET_FILES``), of at least
    ``MIN_WEIGHTS_BYTES``: any file there passed before, a README too, then any name holding the backbone's
    ('..._small_minimalistic_...'). (Keras checks its hash when it loads it.)"""
    import socket

    from ..models.transfer import IMAGENET_FILES
    from .space import model_names

    wanted = sorted({m for m in model_names(space.get("model")) if isinstance(m, str) and m in IMAGENET_FILES})
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")

    def cached(name: str) -> bool:  # a stub of bytes failed Keras' hash check, and every trial on the download
        path = os.path.join(cache, IMAGENET_FILES[name])
        return os.path.isfile(path) and os.path.getsize(path) >= MIN_WEIGHTS_BYTES

    missing = [m for m in wanted if not cached(m)]
    if not missing:
        return  # weights downloaded before: Keras reads them from there
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as err:
        raise ConfigError(f"--weights imagenet: Keras downloads ImageNet weights from {host}, which cannot be "
                          f"reached from here ({err}), and {cache} holds none for {', '.join(missing)}; give "
                          "--weights none (random weights) or --weights PATH.h5 (a local file), or run where they "
                          "can be downloaded") from err


def check_wandb_reachable(timeout_s: float = 5.0) -> None:
    """Online W&B must reach its server from here (the logging actors run on this node): unreachable, a search
    ran to its end "ok" while W&B retried in the background, uploaded nothing, and held the exit for minutes."""
    import socket
    from urllib.parse import urlsplit

    url = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    parts = urlsplit(url if "://" in url else f"https://{url}")
    try:
        socket.create_connection((parts.hostname or "", parts.port or (80 if parts.scheme == "http" else 443)),
                                 timeout=timeout_s).close()
    except (OSError, ValueError) as err:
        raise ConfigError(f"--wandb online: W&B's server {url} cannot be reached from here ({err}); give --wandb "
                          "offline and upload later with `wandb sync`, or set WANDB_BASE_URL to a server this node "
                          "reaches") from err


def check_learnable(manifest, manifest_uri: str) -> list[str]:
    """The families (usable images), refused before any work when no trial could score above 0: fewer than 2
    families, or than 2 with train images, no val image, or val images only of families no model learns. Says
    which families have usable images but none in train (their val and test images are always scored wrong:
    clean took them, or the files went since catalog).

    Returns:
        The families, sorted: the model's classes.
    """
    ok = manifest[manifest["status"] == "ok"]
    labels, taught = sorted(ok["label"].unique()), set(ok.loc[ok["split"] == "train", "label"])
    scored = set(ok.loc[ok["split"] == "val", "label"])
    again = "re-run catalog (and clean) to split its images anew, or catalog more images per family"
    if len(labels) < 2:
        raise SpeciesfamError(f"{manifest_uri} has {lines.counted(len(labels), 'usable family', 'usable families')}; "
                              "classification needs at least 2")
    if not scored:  # every trial would score 0
        raise SpeciesfamError(f"{manifest_uri} has no usable 'val' images, so no trial could be scored (clean's "
                              "near-duplicate grouping can move whole families to train: see clean.md; re-run clean "
                              "with a higher --near-duplicate-threshold, or catalog more images per family)")
    untaught = sorted(set(labels) - taught)
    if len(taught) < 2:  # a model of one class, or none: its val macro-F1 says nothing
        raise SpeciesfamError(f"{manifest_uri}: {lines.counted(len(taught), 'family has', 'families have')} usable "
                              f"train images, and classification needs at least 2 (none in train: "
                              f"{lines.some(untaught, quote=True)}); see clean.md, or {again}")
    if not scored & taught:
        raise SpeciesfamError(f"{manifest_uri}: every val image is of a family with no usable train image "
                              f"({lines.some(sorted(scored), quote=True)}), so no trial could score above 0 on val; "
                              f"see clean.md, or {again}")
    if untaught:
        say(f"tune: warning: {lines.counted(len(untaught), 'family has', 'families have')} no usable train image "
            f"({lines.some(untaught, quote=True)}): no model learns it; see clean.md, or re-run catalog (and clean) to "
            "split its images anew")
    unscored = sorted(taught - scored)
    if unscored:  # 1 val image of 1 family of 6 gave "best val macro-F1 1.000", unsaid (hostile tester round 33)
        say(f"tune: warning: {lines.counted(len(unscored), 'family has', 'families have')} no usable val image "
            f"({lines.some(unscored, quote=True)}): val macro-F1 scores the other {len(scored & taught)} (and any of "
            f"these a model predicts, at F1 0) on "
            f"{lines.counted(int((ok['split'] == 'val').sum()), 'image')}; see clean.md, or {again}")
    return labels


def fit_worker_cpus(cfg: TuneConfig) -> TuneConfig:
    """``cfg`` with ``cpus_per_worker`` set where it was left out (CNN trials): 1, or on a cluster with fewer
    CPUs than one trial then needs, an equal share of what is left beside the trial's own process, in quarters
    of a CPU (2 CPUs: 2 workers x 0.75; a plain `tune scratch` was refused on a 2-core laptop: round 53)."""
    if cfg.cpus_per_worker is not None or cfg.kind == "probe":  # a probe trial trains in its own process
        return cfg
    import ray

    share = (ray.cluster_resources().get("CPU", 0) - cfg.trial_cpus) / cfg.workers_per_trial
    each = 1.0 if share >= 1 or share < 0.25 else int(share * 4) / 4  # under a quarter: trial_slots refuses it
    return dataclasses.replace(cfg, cpus_per_worker=each)


def trial_slots(cfg: TuneConfig) -> int:
    """How many trials the cluster holds at once (each trial's process and its Ray Train workers, CPUs and GPUs
    counted; the default for ``max_concurrent``, which also keeps trial processes from taking the CPUs their
    workers wait for). Fails before any training when one trial can never be placed."""
    import ray

    cfg = fit_worker_cpus(cfg)
    total = ray.cluster_resources()
    workers = 0 if cfg.kind == "probe" else cfg.workers_per_trial  # probe trials train in the trial process
    need_cpu = cfg.trial_cpus + (workers * cfg.cpus_per_worker if workers else 0)  # probes: cpus_per_worker None
    need_gpu = workers * cfg.gpus_per_worker
    if need_gpu > total.get("GPU", 0):
        raise ConfigError(f"gpus_per_worker={cfg.gpus_per_worker} x workers_per_trial={cfg.workers_per_trial} "
                          f"needs {need_gpu} GPUs but the cluster has {total.get('GPU', 0)}; use "
                          "--gpus-per-worker 0 or add GPU nodes")
    if need_cpu > total.get("CPU", 0) and not workers:  # a probe trial trains in its own process
        raise ConfigError(f"one probe trial needs {need_cpu:g} CPUs (--cpus-per-trial) but the cluster has "
                          f"{total.get('CPU', 0):g}; lower --cpus-per-trial (default 1)")
    if need_cpu > total.get("CPU", 0):
        raise ConfigError(f"one trial needs {need_cpu} CPUs (cpus_per_trial {cfg.trial_cpus} + "
                          f"{workers} workers x cpus_per_worker {cfg.cpus_per_worker}) but the "
                          f"cluster has {total.get('CPU', 0)}; lower --cpus-per-worker (e.g. 0.5 on a 2-CPU laptop) or "
                          "--workers-per-trial, or use --smoke-test")
    fits = total.get("CPU", 0) / need_cpu
    if need_gpu:
        fits = min(fits, total.get("GPU", 0) / need_gpu)
    return max(1, int(fits + 1e-9))
