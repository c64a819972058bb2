"""The search driver: ``run_search(workdir, cfg) -> ResultGrid``, used by the CLI, the demo and the jobs.

Each scratch/transfer trial is a function trainable that runs a Ray Train ``TensorflowTrainer`` on
``cfg.workers_per_trial`` workers (``train_loop_per_worker``); ``TuneReportCallback`` forwards every epoch's
metrics and checkpoint path to Tune, so searchers and ASHA see ``val_macro_f1`` per epoch. Probe trials
(``train/probe.py``) train a head on cached embeddings in the trial process itself; Tune reuses their
processes from trial to trial (``reuse_actors``), and the embeddings reach them through the object store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shlex
import time
from typing import Any, Iterator

from .. import console, interrupts, layout, lines, stages, storage
from ..config import TuneConfig, name_seed
from ..data.catalog import check_images_readable, load_manifest
from ..errors import ConfigError, SearchFailedError, StageOrderError
from ..registry import SCHEDULERS, SEARCHERS
from .checks import (check_imagenet_reachable, check_learnable, check_plugins, check_wandb_reachable, fit_worker_cpus,
                     trial_slots)
from ..locks import search_lock
from .record import add_seconds, as_started, check_record, check_resumable, used_seconds, write_record
from .space import load_space

METRIC, MODE = layout.METRIC, layout.MODE
# TensorFlow's oneDNN CPU kernels segfault under MultiWorkerMirroredStrategy for strided convolutions
# (measured: scratch_functional crashed both workers with SIGSEGV in epoch 1; with oneDNN off it trains).
# Off for training workers only; a user's own setting wins. GPUs do not use oneDNN.
WORKER_ENV = {"TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "0")}


def training_manifest(workdir: str, kind: str = "scratch") -> str:
    """RUN/clean_manifest.parquet if the clean stage ran, else RUN/manifest.parquet (not for probe searches:
    they train on the clean stage's embeddings)."""
    cleaned = layout.path(workdir, layout.CLEAN_MANIFEST)
    if storage.exists(cleaned):
        stages.check_fresh(workdir, "clean")  # a re-run catalog makes the cleaned manifest stale
        return cleaned
    for stage in ("catalog", "clean"):  # ran, their table gone: said (not 'no catalogued run', nor trained on the
        stages.check_outputs(workdir, stage)  # uncleaned catalog after a line that said so: round 74)
    if not storage.exists(layout.path(workdir, layout.MANIFEST)):  # nothing catalogued there (a mistyped --workdir?)
        raise StageOrderError(f"{workdir} holds no catalogued run ({layout.MANIFEST} not found). Run "
                              f"`{stages.command('catalog', workdir)}` and `{stages.command('clean', workdir)}` first.")
    if kind == "probe":
        raise StageOrderError(f"{cleaned} does not exist: a probe search trains on the clean stage's embeddings. "
                              f"Run `{stages.command('clean', workdir)}` first.")
    console.say(f"tune: {cleaned} not found, training on the uncleaned catalog (run "
                f"`{stages.command('clean', workdir)}` first to remove outliers)")
    return layout.path(workdir, layout.MANIFEST)


def _trial(config: dict[str, Any], fixed: dict[str, Any], cfg: TuneConfig, train_storage: str) -> None:
    """One Tune trial: a Ray Train run of ``train_loop_per_worker`` with this trial's hyperparameters."""
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from ..train.loop import train_loop_per_worker
    from .space import check_drawn

    started_at = time.time()  # the trial's start, for the start-up breakdown (train/loop.py run_training)
    check_drawn(config)  # before its workers start
    hp = dict(config)
    model = hp.pop("model")
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.gpus_per_worker else {})}
    trainer = TensorflowTrainer(
        train_loop_per_worker,
        train_loop_config={**fixed, "model": model, "hp": hp, "trial_started_at": started_at},
        scaling_config=ScalingConfig(num_workers=cfg.workers_per_trial, use_gpu=cfg.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=tune.get_context().get_trial_id(), storage_path=train_storage,
            callbacks=[TuneReportCallback()], failure_config=FailureConfig(max_failures=0),
            worker_runtime_env={"env_vars": WORKER_ENV},
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=METRIC,
                                               checkpoint_score_order=MODE)),
    )
    trainer.fit()


def run_search(workdir: str, cfg: TuneConfig, address: str | None = None):
    """Run (or with ``resume`` continue) a search and write RUN/trials.csv and RUN/trials.md.

    Returns:
        The ``ray.tune.ResultGrid``.
    """
    from functools import partial

    from ray import tune

    from ..raycluster import check_shared, init_ray
    from .tracking import older_split_id, prepare_wandb, val_split_id, write_trial_table

    cfg.validate()
    space = load_space(cfg)
    check_plugins(cfg, space)
    manifest_uri = training_manifest(workdir, cfg.kind)  # no run folder: said before the weights' refusal
    if cfg.kind == "transfer" and cfg.weights == "imagenet" and address is None and not os.environ.get("RAY_ADDRESS"):
        check_imagenet_reachable(space)  # local runs only: on a cluster the workers download, not this machine
    read = stages.check_upstream(workdir, "tune")  # the runs this search is built from, whatever runs meanwhile
    stages.refuse_folders_in_place(workdir, "tune")  # trials.csv made a folder failed after the search (round 50)
    manifest = load_manifest(manifest_uri)
    labels = check_learnable(manifest, manifest_uri)
    storage_path = cfg.storage_path or storage.join(workdir, "tune")
    if not storage.is_remote(storage_path):
        storage_path = storage.filesystem(storage_path)[1]
    name = cfg.name or cfg.kind
    if cfg.seed is None:  # a second search of another name drew the first one's trials again (seed 0: round 49)
        cfg = dataclasses.replace(cfg, seed=name_seed(name))
    val_split = val_split_id(workdir)  # the split every trial of this search is scored on
    with search_lock(storage_path, name, workdir):  # one search of a name at a time (two at once lost one's trials)
        # name reuse, resume: before Ray or the cache
        check_record(storage_path, name, val_split, cfg.resume, cfg, older_split_id(workdir, val_split))
        cfg = as_started(storage_path, name, cfg)  # what a resume may leave out, for the records
        points = None
        if cfg.init_from and not cfg.resume:  # before Ray and the image cache; a resumed search has its trials
            from .warmstart import warm_start_points

            points = warm_start_points(workdir, storage_path, cfg.init_from, space, cfg.seed)
        if cfg.kind == "probe":  # read once, before Ray: trials get zero-copy arrays from the object store
            from ..train.probe import probe_arrays

            data, embedding_model = probe_arrays(workdir, labels)  # refuses embeddings not the last clean's
        prepare_wandb(cfg)  # before Ray starts: its processes copy this process's environment
        if cfg.wandb == "online":
            check_wandb_reachable()  # the logging actors run on this node
        init_ray(address)
        fitted = fit_worker_cpus(cfg)
        # the records keep the workers' CPUs as given: left out, they are fitted again to the cluster a reproduction
        # or a --resume runs on (the report's command pinned this machine's 0.75: round 54)
        recorded, cfg = dataclasses.replace(fitted, cpus_per_worker=cfg.cpus_per_worker), fitted
        slots = trial_slots(cfg)  # and refuse a trial that can never be placed, before any work
        check_shared(storage_path, "storage_path")
        check_shared(manifest_uri, "workdir")
        if cfg.kind != "probe":  # probe trials read embeddings, not images
            check_images_readable(manifest, manifest_uri)
        fixed = {"manifest": manifest_uri if storage.is_remote(manifest_uri) else storage.filesystem(manifest_uri)[1],
                 "labels": labels, "image_size": cfg.image_size,
                 # pretrained weights exist for transfer backbones only; scratch CNNs start from random weights
                 "weights": cfg.weights if cfg.kind == "transfer" else None, "max_epochs": cfg.max_epochs,
                 "seed": cfg.seed, "kind": cfg.kind}
        if cfg.kind == "probe":
            from ..train.probe import probe_trial

            fixed["embedding_model"] = embedding_model
            fixed["precision"] = cfg.precision  # "auto" is resolved in each trial process, on its node's CPU
            trainable = tune.with_parameters(probe_trial, fixed=fixed, data=data)
        else:
            if cfg.image_cache and "sha256" in manifest.columns:
                from ..data import image_cache

                cache = image_cache.build(workdir, manifest, cfg.image_size)  # decoded once, read by every trial
                fixed["image_cache"] = cache if storage.is_remote(cache) else storage.filesystem(cache)[1]
            trainable = partial(_trial, fixed=fixed, cfg=cfg, train_storage=storage.join(storage_path, name, "train"))
        trainable = tune.with_resources(trainable, {"CPU": cfg.trial_cpus})
        tuner = make_tuner(trainable, space, cfg, storage_path, name, points=points, reuse_actors=cfg.kind == "probe",
                           slots=slots)
        if not cfg.resume:
            write_record(storage_path, name, val_split, recorded)  # once nothing refused it
        console.say(start_line(cfg, name, space, slots))
        try:
            results, ending = fit(tuner, space, cfg, used_seconds(storage_path, name))
        except Exception as err:
            storage.raise_if_full(storage_path, err)
            raise
        add_seconds(storage_path, name, ending["seconds"])
        del tuner  # its callbacks are collected while Ray is up (Ray's W&B callback fails in __del__ at interpreter exit)
        gc.collect()
        table = write_trial_table(results, workdir, kind=cfg.kind, val_split=val_split)  # this search's trials
        record_search(workdir, recorded, name, table, built_from=read, **ending)
        if not ending["interrupted"]:  # stopped before any trial trained: an interrupt (exit 130), not a failed search
            check_some_trial_trained(table, layout.path(workdir, layout.TRIALS),
                                     cfg.time_budget_s if ending["time_budget_hit"] else None)
        return results


def planned_trials(space: dict[str, Any], cfg: TuneConfig) -> int:
    """Trials the search will run: ``num_samples`` x the space's grid points."""
    planned = cfg.num_samples
    for value in space.values():
        if isinstance(value, dict) and isinstance(value.get("grid_search"), list):
            planned *= len(value["grid_search"])
    return planned


def start_line(cfg: TuneConfig, name: str, space: dict[str, Any], slots: int) -> str:
    """The console's line as a search starts: what runs, how, and how many trials at once (``make_tuner``'s
    concurrency: ``max_concurrent`` or the cluster's ``slots``, at most the trials planned; more than the slots
    cannot run at once) on what."""
    if cfg.kind == "probe":
        each = f"{cfg.trial_cpus:g} CPU"
    else:
        gpus = f" + {cfg.gpus_per_worker:g} GPU" if cfg.gpus_per_worker else ""
        each = f"{lines.counted(cfg.workers_per_trial, 'Ray Train worker')} x {cfg.cpus_per_worker:g} CPU{gpus}"
    scheduler = cfg.scheduler
    if cfg.scheduler in ("asha", "hyperband"):  # HyperBand's later brackets judge later
        bracket = ", the first bracket" if cfg.scheduler == "hyperband" else ""
        scheduler += f" (grace {lines.counted(cfg.grace, 'epoch')}{bracket})"
    budget = f", time budget {cfg.time_budget_s:g} s" if cfg.time_budget_s else ""
    planned = planned_trials(space, cfg)
    at_once = min(cfg.max_concurrent or slots, slots, planned)  # what fits now, whatever --max-concurrent allows
    return (f"tune: search {name!r}: {lines.counted(planned, cfg.kind + ' trial')} x up to "
            f"{lines.counted(cfg.max_epochs, 'epoch')}, {cfg.searcher} + {scheduler}, {at_once} at a time ({each} each)"
            f"{budget}")


def fit(tuner, space: dict[str, Any], cfg: TuneConfig, before: float = 0.0):
    """``tuner.fit()`` without TensorBoard files; returns its ResultGrid and, for the search's record, the trials
    planned (``num_samples`` x the space's grid points), whether an interrupt stopped it or the time budget ended
    it (then Tune stops the trials still training and starts no more; the budget spans the search's runs:
    ``before``, the seconds of its earlier runs, counts), and the seconds this run took."""
    planned = planned_trials(space, cfg)
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    start = time.monotonic()
    try:
        # Ray's core worker writes an E-line to fd 2 for each actor restartable with arguments in the object
        # store (Tune's W&B logging actor, ray#53727): to the stage log, not the console
        with _no_tensorboard(), console.quiet_stderr("tune", python_too=False):
            results = tuner.fit()  # SIGINT/SIGTERM stop it and save its state (interrupts.watch_interrupts)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        interrupts.hold_interrupts()  # the trials have ended: the search's summary and report come first
    seconds = time.monotonic() - start
    budget_hit = bool(cfg.time_budget_s) and before + seconds >= cfg.time_budget_s
    return results, {"planned": planned, "time_budget_hit": budget_hit, "interrupted": interrupts.interrupted(),
                     "seconds": seconds}


@contextlib.contextmanager
def _no_tensorboard() -> Iterator[None]:
    """While a search runs: Tune's CSV and JSON result logs only (``make_tuner`` adds them; the trial table and
    the report read them), not its TensorBoard event files, whose tensorboardX import added 1.4 s to every
    search's start (benchmarks/RESULTS.md). A user's own ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0`` wins. Scoped
    to the search: other Tuners in the same process keep Tune's defaults."""
    name = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    ours = name not in os.environ
    if ours:
        os.environ[name] = "1"
    try:
        yield
    finally:
        if ours:
            os.environ.pop(name, None)


def record_search(workdir: str, cfg: TuneConfig, name: str, table, planned: int | None = None,
                  time_budget_hit: bool = False, interrupted: bool = False, seconds: float | None = None,
                  built_from: dict[str, str] | None = None) -> None:
    """The tune stage record: this search's settings and result (export refuses trials of a search built from
    an older clean or catalog run; the console's summary counts this search, not every search in RUN, and says
    when the time budget ended it: ``fit``'s ``planned`` and ``time_budget_hit``)."""
    from dataclasses import asdict

    import pandas as pd

    from .tracking import scored_trials

    ok = scored_trials(table)
    best = ok.iloc[0] if len(ok) else None
    summary = {"experiment": name, "kind": cfg.kind, "trials": len(table), "ok": len(ok), "planned": planned,
               "time_budget_hit": time_budget_hit, "interrupted": interrupted, "seconds": seconds,
               # --resume needs a trial that reported (record.check_record); else the summary says start again
               "resumable": interrupted and bool((table.get("epochs_run", pd.Series(dtype=float)).fillna(0) > 0).any()),
               **({"best_trial": str(best["trial_id"]), layout.BEST_METRIC: float(best[layout.BEST_METRIC]),
                   "best_epoch": int(best["best_epoch"]) if pd.notna(best["best_epoch"]) else None}
                  if best is not None else {})}
    settings = {**asdict(cfg), "grace_period": cfg.grace}  # the grace period in force, default or given
    # Every search on these catalog and clean runs, by name (the report's reproduce commands; the bundle may
    # come from any of them), the last one also as the record's own config.
    on_these = stages.upstream_ids(workdir, "tune") if built_from is None else built_from
    try:
        before = stages.load(workdir, "tune") or {}
        earlier = before.get("searches") or {}
    except StageOrderError as err:  # a damaged tune record: rewritten with this search
        # not "run tune again to rewrite it": this is that run
        console.say(f"tune: warning: {getattr(err, 'damaged', err)}; rewritten, it now records this search only "
                    "(the trials of the others stay in trials.csv)")
        before, earlier = {}, {}
    searches = {n: s for n, s in earlier.items() if n != name and s.get("built_from") == on_these}
    # A search that trained nothing, on the runs the last one read and replacing no search that trained, leaves
    # export's choice as it was: the run id stays, so the bundle is not stale (the report said to export again,
    # which made an identical bundle and dropped its evaluation: hostile tester round 43)
    same = (not len(ok) and before.get("built_from") == on_these
            and not ((earlier.get(name) or {}).get("summary") or {}).get("ok"))
    # nor does a --resume of a finished search (every trial kept: its trials, best trial and score as recorded):
    # the bundle was marked stale (hostile tester round 65)
    was = earlier.get(name) or {}
    same = same or (len(ok) and before.get("built_from") == on_these == was.get("built_from") and all(
        (was.get("summary") or {}).get(k) == summary.get(k) for k in ("trials", "ok", "best_trial", layout.BEST_METRIC,
                                                                        "best_epoch")))
    searches[name] = {"config": settings, "built_from": on_these, "finished_at": stages.timestamp(),
                      "summary": summary}  # the report: how each search ended, interrupted ones included
    stages.finish(workdir, "tune", config=settings, summary=summary,  # None too: --weights none differs
                  built_from=on_these, searches=searches, run_id=before.get("run_id") if same else None)


def check_some_trial_trained(table, trials_csv: str = "RUN/trials.csv", budget_hit: float | None = None) -> None:
    """A search none of whose trials trained and scored (failed, NaN, or stopped before an epoch) trained
    nothing: raise (the CLI exits 1) with the first errors and where every trial's row is; ``budget_hit``:
    the time budget (s) that ended the search, said with its fix."""
    from .tracking import scored_trials

    if len(scored_trials(table)):
        return
    errors = [e for e in table["error"].dropna().astype(str).unique().tolist() if e][:3] if "error" in table else []
    budget = (f"; its time budget ({budget_hit:g} s) ended it first: give --time-budget more seconds, or leave it "
              "out") if budget_hit else ""
    raise SearchFailedError(f"no trial of {len(table)} finished with a val macro-F1"
                            f"{': ' + ' | '.join(errors) if errors else ''}{budget}; see {trials_csv}")


def make_tuner(trainable, space: dict[str, Any], cfg: TuneConfig, storage_path: str, name: str,
               points: list[dict] | None = None, reuse_actors: bool = False, slots: int | None = None):
    """The Tuner for any trainable (the real trial, or toy ones in tests): searcher, scheduler, budget,
    retries and tracking from ``cfg``; with ``cfg.resume``, the stored experiment continued.

    Args:
        points: configurations the searcher evaluates first (a warm start).
        reuse_actors: run later trials in finished trials' processes (no new process, imports already paid;
            the trainable must reset whatever a trial leaves behind in its process).
        slots: trials at once unless ``cfg.max_concurrent`` says (``trial_slots``; None: as Tune's resources allow).
    """
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from .tracking import callbacks

    experiment = storage.join(storage_path, name)
    # Keeping 2 checkpoints per trial makes Tune snapshot the experiment whenever a trial checkpointed twice
    # since the last one, and warn (3 lines, repeated) when that is more often than every 5 s: probe trials
    # checkpoint on each new best, a few times a second. Expected here, so not on the console (a user's own
    # setting wins).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if cfg.resume:
        check_resumable(storage_path, name)
        console.say(f"tune: resuming {experiment}")
        from .history import keep_before_resume, rehome_search_state

        keep_before_resume(experiment)  # Tune may write a resumed trial's result.json anew
        rehome_search_state(experiment)  # trials drawn after the resume: in this folder, not the one copied from
        # the space again: Tune keeps a tune.sample_from function as a placeholder it resolves from the space it
        # is given, and a trial drawn after the resume got the placeholder itself ("float() argument must be ...
        # not 'tuple'": tester). Failed trials run again (resume_errored), from their last checkpoint if any.
        try:
            return tune.Tuner.restore(experiment, trainable, resume_errored=True, param_space=space)
        except ValueError as err:  # Tune's check of the space's searched keys (a space file edited since)
            if "param_space" not in str(err):
                raise
            said = "; ".join(ln.strip() for ln in str(err).splitlines() if ln.strip().startswith(("Got:", "Expected:")))
            raise ConfigError(f"--resume --name {shlex.quote(name)}: the search space is not the one that search started with "
                              f"(its searched keys: {said or 'they differ'}); resume it with the same --space and "
                              "--extra, or start a new search without --resume") from None
    from ray.tune.search.basic_variant import BasicVariantGenerator

    search_alg, limit = SEARCHERS.get(cfg.searcher)(space, cfg.seed, points=points), cfg.max_concurrent or slots
    if isinstance(search_alg, BasicVariantGenerator):  # Tune ignores max_concurrent_trials for one it is given
        search_alg.max_concurrent, limit = limit or 0, None  # (random/grid, seeded: every trial started at once)
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=cfg.num_samples, search_alg=search_alg,
            scheduler=SCHEDULERS.get(cfg.scheduler)(cfg), reuse_actors=reuse_actors,
            max_concurrent_trials=limit, time_budget_s=cfg.time_budget_s),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, checkpoint_config=tune.CheckpointConfig(
            # checkpoints reported to Tune itself (probe trials: one per new best): each trial's 2 best, not
            # all of them (100 probe trials x ~9 improvements x ~1.5 MB of weights would stay on disk).
            # CNN trials' checkpoints are Ray Train's, kept 2 per trial by _trial's CheckpointConfig.
            num_to_keep=2, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE), callbacks=[
            CSVLoggerCallback(), JsonLoggerCallback(),  # the trial table's source, whatever else is on or off
            *callbacks(cfg, name, experiment),
            lines.trial_lines_callback(planned_trials(space, cfg), lines.scheduler_name(cfg.scheduler),
                                       cfg.max_epochs,
                                       cut_by=lines.search_cut_by(cfg.time_budget_s),
                                       model="probe" if cfg.kind == "probe" else None)],
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=console.tune_verbosity()),  # one line per trial instead of Tune's status tables
    )
