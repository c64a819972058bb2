"""Shared by the search benchmarks: a probe search with per-trial start times, summarised from its results."""

from __future__ import annotations

import os
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def start_recorder():
    """A Tune callback recording when the driver started each trial (Unix seconds), in ``.started``."""
    from ray.tune import Callback

    class StartTimes(Callback):
        def __init__(self):
            self.started: dict[str, float] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started.setdefault(trial.trial_id, time.time())

    return StartTimes()


def probe_search(workdir: str, cfg) -> dict:
    """Run ``run_search(workdir, cfg)`` (a probe search) and summarise it.

    Returns: wall (s), best (val macro-F1), epochs (reported in all), trials, processes (distinct trial pids),
    trial_cpu and driver_cpu (CPU seconds),
    hist (every report, with ``since_start``: seconds from the search's start), start delays (trial started by
    the driver -> its first epoch begins; and -> its first report), in trial start order.
    """
    import pandas as pd

    from speciesfam.tune import search, tracking

    recorder = start_recorder()
    original = tracking.callbacks
    tracking.callbacks = lambda *a, **k: [*original(*a, **k), recorder]
    try:
        cpu = time.process_time()
        start = time.time()
        results = search.run_search(workdir, cfg)
        wall = time.time() - start
        driver_cpu = time.process_time() - cpu
    finally:
        tracking.callbacks = original
    # trials that a time budget ended before their first report have no metrics
    hist = pd.concat([r.metrics_dataframe for r in results if r.metrics_dataframe is not None and
                      "reported_at" in r.metrics_dataframe], ignore_index=True)
    hist["since_start"] = hist["reported_at"] - start  # Tune's own "timestamp" is whole seconds
    first = hist.sort_values(["trial_id", "epoch"]).groupby("trial_id").first()  # each trial's epoch 1
    started = first.index.map(recorder.started)
    order = started.argsort()
    return {"wall": wall, "best": float(hist["val_macro_f1"].max()), "epochs": len(hist), "trials": len(results),
            "errors": len(results.errors), "processes": int(hist["pid"].nunique()), "hist": hist, "start": start,
            # CPU seconds of the trial processes (whole life, imports included) and of this driver process:
            # what the search costs whatever else runs on the machine (Ray's own daemons not counted).
            "trial_cpu": float(hist.groupby("pid")["process_cpu_s"].max().sum()) if "process_cpu_s" in hist else
            float("nan"), "driver_cpu": driver_cpu,
            "to_first_epoch": (first["first_epoch_at"] - started).to_numpy()[order],
            "to_first_report": (first["reported_at"] - started).to_numpy()[order]}


def time_to(run: dict, target: float, from_first_report: bool = False) -> float:
    """Seconds from the search's start until any trial first reported val macro-F1 >= target (nan: never).

    ``from_first_report``: counted from the search's first report instead, i.e. without the start every search
    pays before its first epoch is done (Ray's first trial processes, TensorFlow's import, the first trace).
    """
    hit = run["hist"][run["hist"]["val_macro_f1"] >= target]
    zero = float(run["hist"]["since_start"].min()) if from_first_report else 0.0
    return float(hit["since_start"].min()) - zero if len(hit) else float("nan")
