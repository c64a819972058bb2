"""Tracking: W&B through Ray's ``WandbLoggerCallback`` (off unless asked), and always a local trial table
(RUN/trials.csv, RUN/trials.md) plus a plot of the metric against time per trial (RUN/search_progress.png).

The W&B API key is read from the environment by wandb itself; speciesfam never prints or writes it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .. import storage

if TYPE_CHECKING:
    import pandas as pd

METRIC = "val_macro_f1"


def prepare_wandb(cfg) -> None:
    """Set this process's W&B environment for ``cfg.wandb`` BEFORE Ray starts (Ray's processes copy it).

    ``offline`` sets ``WANDB_MODE=offline`` (Ray's ``WandbLoggerCallback`` otherwise asks for an API key) and
    drops ``WANDB_API_KEY``, which offline runs never need and Ray would otherwise hold in its processes'
    environments and runtime-env logs. ``disabled`` leaves the environment alone.
    """
    if cfg.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
        os.environ.pop("WANDB_API_KEY", None)
    elif cfg.wandb == "online" and os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        os.environ["WANDB_MODE"] = "online"


def callbacks(cfg, name: str, experiment_dir: str) -> list:
    """Tune callbacks for ``cfg.wandb`` (``disabled`` | ``offline`` | ``online``).

    W&B run files go to ``WANDB_DIR`` if set, else into the experiment's folder when it is local (offline runs
    can then be uploaded later with ``wandb sync``). Online, Ray's callback hands ``WANDB_API_KEY`` from this
    process's environment to its logging actor (Ray logs runtime environments under /tmp/ray on the node), so
    a set key gets a warning pointing to ``wandb login``; speciesfam itself never prints or stores it.
    """
    if cfg.wandb == "disabled":
        return []
    from ray.air.integrations.wandb import WandbLoggerCallback

    prepare_wandb(cfg)  # normally done before Ray starts (run_search); harmless to repeat
    if cfg.wandb == "online" and "WANDB_API_KEY" in os.environ:
        import warnings

        warnings.warn("W&B online with WANDB_API_KEY set: Ray's WandbLoggerCallback forwards the key in its "
                      "logging actors' runtime environment, which Ray writes to /tmp/ray/session_*/logs on this "
                      "node. Prefer `wandb login` once on this node (the logging actors run here) and unset "
                      "WANDB_API_KEY.", stacklevel=2)
    local = None if storage.is_remote(experiment_dir) else experiment_dir
    wandb_dir = os.environ.get("WANDB_DIR") or local
    if wandb_dir:
        storage.makedirs(wandb_dir)
    return [WandbLoggerCallback(project=cfg.wandb_project, group=name, tags=[cfg.kind, cfg.searcher, cfg.scheduler],
                                excludes=["checkpoint_path"], log_config=True, mode=cfg.wandb, dir=wandb_dir)]


def trial_table(results) -> "pd.DataFrame":
    """One row per trial: id, status, hyperparameters, best val_macro_f1, epochs run, seconds, best checkpoint."""
    import pandas as pd

    rows = []
    for r in results:
        hist = r.metrics_dataframe.copy() if r.metrics_dataframe is not None else pd.DataFrame()
        fs = getattr(r, "filesystem", None)
        if "checkpoint_path" in hist.columns:  # Ray reports object-store paths without their scheme
            hist["checkpoint_path"] = [storage.to_uri(fs, p) if isinstance(p, str) else p for p in hist["checkpoint_path"]]
        best: dict[str, Any] = {}
        if METRIC in hist.columns and hist[METRIC].notna().any():
            best = hist.loc[hist[METRIC].idxmax()].to_dict()
            if "checkpoint_path" in hist.columns:
                # Ray Train keeps only the top checkpoints (ties: the later ones); take the best that still exists.
                kept = hist[hist["checkpoint_path"].map(lambda p: isinstance(p, str) and storage.exists(p))]
                if len(kept) and kept[METRIC].notna().any():
                    best = kept.loc[kept[METRIC].idxmax()].to_dict()
        if best and not best.get("checkpoint_path") and r.best_checkpoints:  # checkpoints reported to Tune itself
            ckpt, m = max(r.best_checkpoints, key=lambda cm: cm[1].get(METRIC, float("-inf")))
            best = {**best, **{k: m[k] for k in (METRIC, "epoch") if k in m},
                    "checkpoint_path": storage.to_uri(ckpt.filesystem, ckpt.path)}
        trial_id = (r.metrics or {}).get("trial_id") or os.path.basename(r.path).split("_")[1]
        rows.append({
            "trial_id": trial_id,
            "status": "error" if r.error else "ok",
            "error": str(r.error).splitlines()[0][:200] if r.error else "",
            "best_val_macro_f1": best.get(METRIC),
            "best_epoch": best.get("epoch"),
            "epochs_run": int(hist["training_iteration"].max()) if "training_iteration" in hist else 0,
            "seconds": float(hist["time_total_s"].max()) if "time_total_s" in hist else 0.0,
            "best_checkpoint": best.get("checkpoint_path"),
            "config": json.dumps(r.config, sort_keys=True, default=str),
            "trial_path": storage.to_uri(fs, r.path),
        })
    df = pd.DataFrame(rows)
    return df.sort_values("best_val_macro_f1", ascending=False, na_position="last").reset_index(drop=True)


def write_trial_table(results, workdir: str) -> "pd.DataFrame":
    df = trial_table(results)
    storage.write_table(df, storage.join(workdir, "trials.csv"))
    cols = ["trial_id", "status", "best_val_macro_f1", "best_epoch", "epochs_run", "seconds", "config"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df[cols].itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
                                       for v in r) + " |")
    storage.write_text(storage.join(workdir, "trials.md"), "\n".join(lines) + "\n")
    from ..plots import search_progress

    search_progress(results, storage.join(workdir, "search_progress.png"), METRIC)
    return df
