"""Tracking: W&B through Ray's ``WandbLoggerCallback`` (off unless asked), and always a local trial table
(RUN/trials.csv, RUN/trials.md); the report draws every search's trials on one timeline (RUN/search_progress.png).

The W&B API key is read from the environment by wandb itself; speciesfam never prints or writes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from .. import console, layout, storage
from ..lines import counted, error_text
from ..markdown import cell
from .trials_file import read_trials, search_name, unreadable

if TYPE_CHECKING:
    import pandas as pd

def prepare_wandb(cfg) -> None:
    """Set this process's W&B environment for ``cfg.wandb`` BEFORE Ray starts (Ray's processes copy it).

    ``offline`` sets ``WANDB_MODE=offline`` (Ray's ``WandbLoggerCallback`` otherwise asks for an API key) and
    drops ``WANDB_API_KEY``, which offline runs never need and Ray would otherwise hold in its processes'
    environments and runtime-env logs. ``disabled`` leaves the environment alone.
    """
    if cfg.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
        os.environ.pop("WANDB_API_KEY", None)
    elif cfg.wandb == "online":
        if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
            os.environ["WANDB_MODE"] = "online"
        check_wandb_key()


def check_wandb_key() -> None:
    """Online W&B needs an API key on this node: Ray's callback looks for it once the search has started and
    fails with a traceback; the same lookup (Ray's own) runs here first, so a missing key is one line."""
    from ray.air.integrations.wandb import _set_api_key

    from ..errors import ConfigError

    if "WANDB_API_KEY" in os.environ and not os.environ["WANDB_API_KEY"].strip():  # Ray takes it as a key
        raise ConfigError("--wandb online: WANDB_API_KEY is set but blank; set it to your key, unset it to use "
                          "`wandb login`'s, or give --wandb offline")
    missing, said = False, io.StringIO()
    # wandb's deprecation notice for the API Ray calls goes to the log, not the console
    with console.quiet_stderr("W&B's credential lookup"), contextlib.redirect_stderr(said):
        try:
            _set_api_key()
        except ValueError:
            missing = True
    if said.getvalue().strip():
        logging.getLogger(__name__).info("W&B's credential lookup said: %s", said.getvalue().strip())
    if missing:
        raise ConfigError("--wandb online: no W&B API key on this node; run `wandb login` once here (or set "
                          "WANDB_API_KEY), or give --wandb offline and upload later with `wandb sync`") from None


def _wandb_callback(**kwargs):
    """Ray's ``WandbLoggerCallback``, ending each trial's logging actor when the search ends.

    A trial still running when the search was interrupted is never ended by Tune, so its logging actor waited
    on its queue and Ray's callback waited for it for ``upload_timeout`` (30 minutes) before exiting; here every
    such actor is told to finish its W&B run first. At interpreter exit Ray's ``__del__`` can find Ray's
    modules half torn down: nothing is left to do then, and nothing is printed."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    class EndingWandbCallback(WandbLoggerCallback):
        def on_experiment_end(self, trials, **info):
            for trial in list(self._trial_logging_actors):
                self._signal_logging_actor_stop(trial=trial)
            super().on_experiment_end(trials, **info)

        def __del__(self):
            try:
                super().__del__()
            except Exception:  # noqa: BLE001 -- see the docstring
                pass

    return EndingWandbCallback(**kwargs)


def callbacks(cfg, name: str, experiment_dir: str) -> list:
    """Tune callbacks for ``cfg.wandb`` (``disabled`` | ``offline`` | ``online``).

    W&B run files go to ``WANDB_DIR`` if set, else into the experiment's folder when it is local (offline runs
    can then be uploaded later with ``wandb sync``). Online, Ray's callback hands ``WANDB_API_KEY`` from this
    process's environment to its logging actor (Ray logs runtime environments under /tmp/ray on the node), so
    a set key gets a warning pointing to ``wandb login``; speciesfam itself never prints or stores it.
    """
    if cfg.wandb == "disabled":
        return []
    prepare_wandb(cfg)  # normally done before Ray starts (run_search); harmless to repeat
    if cfg.wandb == "online" and "WANDB_API_KEY" in os.environ:  # on the console: a warning went to the log only
        console.say("tune: warning: W&B online with WANDB_API_KEY set: Ray's WandbLoggerCallback forwards the key in "
                    "its logging actors' runtime environment, which Ray writes to /tmp/ray/session_*/logs on this "
                    "node; prefer `wandb login` once on this node (the logging actors run here) and unset "
                    "WANDB_API_KEY")
    local = None if storage.is_remote(experiment_dir) else experiment_dir
    wandb_dir = os.environ.get("WANDB_DIR") or local
    if wandb_dir:
        storage.makedirs(wandb_dir)
    return [_wandb_callback(project=cfg.wandb_project, group=name, tags=[cfg.kind, cfg.searcher, cfg.scheduler],
                            excludes=["checkpoint_path"], log_config=True, mode=cfg.wandb, dir=wandb_dir)]


def _train_checkpoint_here(path: str, experiment: str) -> str:
    """Ray Train's checkpoint ``OLD/<name>/train/<trial id>/<checkpoint>`` of a CNN trial as the same checkpoint
    under ``experiment`` (``.../<name>``, the experiment this trial's results are in now); others as they are."""
    parts = path.rstrip("/").rsplit("/", 4)
    if len(parts) < 5 or parts[2] != "train" or parts[1] != experiment.rstrip("/").rsplit("/", 1)[-1]:
        return path
    return storage.join(experiment, *parts[2:])


def _best_epoch(r) -> dict[str, Any]:
    """The row of the trial's history with its best metric whose checkpoint exists on storage.

    Ray Train reports each epoch's checkpoint path (and keeps only the top ones); Tune's own checkpoints
    (probe trials) are named in ``checkpoint_dir_name`` inside the trial's folder. Tune's list of a trial's
    checkpoints can miss the last ones: a search interrupted after the trial saved and reported an epoch, but
    before Tune's checkpoint manager recorded it. The history and storage are what happened; Tune's list is
    only the fallback.
    """
    import pandas as pd

    from .history import history

    metric = layout.METRIC
    fs = getattr(r, "filesystem", None)
    hist = history(storage.to_uri(fs, r.path))  # the results before a resume too
    if hist is None:
        hist = r.metrics_dataframe.copy() if r.metrics_dataframe is not None else pd.DataFrame()
    if "checkpoint_path" in hist.columns:  # Ray reports object-store paths without their scheme
        # Ray Train's absolute <experiment>/train/<trial id>/<checkpoint>, reported when the search ran: a run folder
        # copied or moved since and resumed holds them under the old experiment folder; taken to this one
        experiment = storage.to_uri(fs, os.path.dirname(r.path.rstrip("/")))
        hist["checkpoint_path"] = [_train_checkpoint_here(storage.to_uri(fs, p), experiment) if isinstance(p, str)
                                   else p for p in hist["checkpoint_path"]]
    elif "checkpoint_dir_name" in hist.columns:
        trial_uri = storage.to_uri(fs, r.path)
        hist["checkpoint_path"] = [storage.join(trial_uri, d) if isinstance(d, str) and d else None
                                   for d in hist["checkpoint_dir_name"]]
    best: dict[str, Any] = {}
    if metric in hist.columns and hist[metric].notna().any():
        best = hist.loc[hist[metric].idxmax()].to_dict()
        if "checkpoint_path" in hist.columns:
            best["checkpoint_path"] = None  # unless one of the best rows' checkpoints exists
            # best first; ties: the later epoch (Ray Train keeps the later of tied checkpoints)
            order = hist[hist[metric].notna()].iloc[::-1].sort_values(metric, ascending=False, kind="mergesort")
            for _, row in order.iterrows():
                if isinstance(row["checkpoint_path"], str) and storage.exists(row["checkpoint_path"]):
                    best = row.to_dict()
                    break
    if best and not best.get("checkpoint_path") and r.best_checkpoints:  # checkpoints Tune recorded itself
        ckpt, m = max(r.best_checkpoints, key=lambda cm: cm[1].get(metric, float("-inf")))
        best = {**best, **{k: m[k] for k in (metric, "epoch") if k in m},
                "checkpoint_path": storage.to_uri(ckpt.filesystem, ckpt.path)}
    # the furthest epoch the trial reached: a resumed trial goes on from its checkpoint (its best epoch), so its
    # epochs after it are reported again and its last report may be an earlier epoch than one reported before
    counter = next((c for c in ("epoch", "training_iteration") if c in hist and hist[c].notna().any()), None)
    best["epochs_run"] = int(hist[counter].max()) if counter else 0
    # None (unknown), not 0.0, for a trial that reported nothing: a failed trial took time too
    seconds = hist["time_total_s"].max() if "time_total_s" in hist else None
    best["seconds"] = float(seconds) if seconds is not None and seconds == seconds else None
    return best


def trial_table(results, kind: str | None = None, val_split: str = "") -> "pd.DataFrame":
    """One row per trial (columns ``layout.TRIAL_COLUMNS``), best metric first.

    Args:
        results: Tune results (a ``ResultGrid`` or a list of ``Result``).
        kind: the search kind (``scratch``, ``transfer``, ``probe``); inferred per trial when None (a trial
            whose config names no ``model`` is a probe).
        val_split: identity of the validation split every trial was scored on (see ``val_split_id``).
    """
    import pandas as pd

    rows = []
    own = _tune_trials(results)
    for r in results:
        best = _best_epoch(r)
        status, error = _outcome(r.error, best["epochs_run"])
        # who the trial is and what it drew, from Tune's own trial: a Result takes both from the trial's last
        # report, which an interrupt just after a reused process's previous trial left as that trial's (a trial
        # written under another's id and settings, its own gone: round 52), and a trial the time budget stopped
        # before its first report had none ({} in trials.csv)
        trial_id, config = own.get(r.path) or ((r.metrics or {}).get("trial_id") or os.path.basename(r.path), r.config)
        config = dict(config or {})
        trial_kind = kind or ("cnn" if "model" in config else "probe")
        rows.append({
            "trial_id": trial_id, "search": search_name(r.path), "kind": trial_kind,
            "model": config.get("model") or ("probe" if trial_kind == "probe" else ""),
            "status": status, "error": error,
            layout.BEST_METRIC: best.get(layout.METRIC), "best_epoch": best.get("epoch"),
            "epochs_run": best["epochs_run"], "seconds": best["seconds"],
            "best_checkpoint": best.get("checkpoint_path"),
            "config": json.dumps(config, sort_keys=True, default=str),
            "trial_path": storage.to_uri(getattr(r, "filesystem", None), r.path), "val_split": val_split,
        })
    return rank_trials(pd.DataFrame(rows, columns=layout.TRIAL_COLUMNS))


def _tune_trials(results) -> dict[str, tuple[str, dict]]:
    """Each trial's id and settings as drawn, by its path: the trials of the ``ResultGrid``'s experiment state
    (the one it was built from, else read back from storage); {} for a list of ``Result``s."""
    trials = getattr(getattr(results, "_experiment_analysis", None), "trials", None)
    if trials is None and hasattr(results, "experiment_path"):
        from ray.tune import ExperimentAnalysis

        try:
            trials = ExperimentAnalysis(results.experiment_path, storage_filesystem=results.filesystem).trials
        except Exception:  # noqa: BLE001 -- a state Tune cannot read back: each trial's last report names it
            trials = None
    return {t.path: (t.trial_id, t.config) for t in trials or ()}


def _outcome(error: BaseException | None, epochs_run: int) -> tuple[str, str]:
    """A trial's status and why: ``error`` (its exception), ``not_trained`` (no epoch reported) or ``ok``."""
    if error:
        return "error", error_text(error)
    if not epochs_run:
        return "not_trained", ("ended before its first epoch was recorded (the search's time budget ran out, or it "
                               "was stopped)")
    return "ok", ""


def rank_trials(df: "pd.DataFrame") -> "pd.DataFrame":
    """Trials best first: highest best val macro-F1, ties to the faster trial, trials without a score last.
    The one ranking of trials: the trial table, export's choice and the warm start all use it."""
    by = [layout.BEST_METRIC, *(["seconds"] if "seconds" in df else [])]  # a table without times: the report's
    return df.sort_values(by, ascending=[False, True][:len(by)], na_position="last").reset_index(drop=True)


def scored_trials(df: "pd.DataFrame") -> "pd.DataFrame":
    """The trials that trained and scored (status ok, a best val macro-F1), best first: what a search found.
    The one filter: the search's record and its did-anything-train check, export's choice and the warm start."""
    return rank_trials(df[(df["status"] == "ok") & df[layout.BEST_METRIC].notna()])


def val_split_id(workdir: str) -> str:
    """Which split the trials are trained and scored on: the manifest, its val image count and a digest of what a
    trial depends on (each usable image with its family and split, and for the cleaned manifest the embedding
    model): trials of other searches count as comparable only when it matches. A clean or catalog run again with
    the same outcome keeps it (its run id did not: an identical clean dropped every earlier trial as "scored on
    another val split")."""
    import hashlib

    from .. import stages

    name = layout.CLEAN_MANIFEST if storage.exists(layout.path(workdir, layout.CLEAN_MANIFEST)) else layout.MANIFEST
    if not storage.exists(layout.path(workdir, name)):  # a search on data of its own (toy trainables in tests)
        return ""
    df = storage.read_table(layout.path(workdir, name))
    ok = df[df["status"] == layout.OK]
    val = ok[ok["split"] == "val"]
    ids = ok["sha256"].where(ok["sha256"].notna(), ok["path"]) if "sha256" in ok else ok["path"]
    rec = stages.load(workdir, "clean") if name == layout.CLEAN_MANIFEST else None
    parts = [str(((rec or {}).get("config") or {}).get("model_id", "")),
             *sorted("\t".join(row) for row in zip(ids.astype(str), ok["label"].astype(str), ok["split"].astype(str)))]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]
    return f"{name} {digest}: {counted(len(val), 'val image')}"


def older_split_id(workdir: str, current: str) -> str:
    """The run folder's val split ``current`` (``val_split_id``) in the form older versions recorded (the
    manifest's stage run id for the digest), so an upgrade keeps their searches and trials ("" for no split)."""
    if not current:
        return ""
    from .. import stages

    name, count = current.split(" ", 1)[0], current.split(": ", 1)[-1]
    rec = stages.load(workdir, "clean" if name == layout.CLEAN_MANIFEST else "catalog")
    return f"{name} run {rec['run_id'][:8] if rec else 'unrecorded'}: {count}"


def same_val_split(recorded: object, current: str, older: str = "") -> bool:
    """Whether a search's or a trial's recorded split is the run folder's ``current`` one (or its ``older`` id)."""
    return recorded == current or (bool(older) and recorded == older)


def merge_trials(old: "pd.DataFrame", new: "pd.DataFrame") -> tuple["pd.DataFrame", int]:
    """The trial table of every search on this run folder: ``new`` replaces the rows of its own experiment(s)
    (a re-run or resumed search) and keeps other searches' rows scored on the same val split.

    Returns:
        (merged table, number of old rows dropped because they were scored on another val split).
    """
    import pandas as pd

    experiment = lambda paths: {str(p).rstrip("/").rsplit("/", 1)[0] for p in paths}  # noqa: E731
    for col in layout.TRIAL_COLUMNS:  # tables written before a column existed
        if col == "search" and col not in old.columns:
            old[col] = old["trial_path"].map(search_name)
        if col not in old.columns:
            old[col] = "" if col in ("kind", "model", "val_split", "error") else None
    old = old[~old["trial_id"].astype(str).isin(new["trial_id"].astype(str))
              & ~old["trial_path"].map(lambda p: next(iter(experiment([p])))).isin(experiment(new["trial_path"]))]
    split = set(new["val_split"])
    stale = old[~old["val_split"].isin(split)]
    merged = pd.concat([old[old["val_split"].isin(split)], new], ignore_index=True) if len(old) else new
    return rank_trials(merged[layout.TRIAL_COLUMNS]), len(stale)


def write_trial_table(results, workdir: str, kind: str | None = None, val_split: str | None = None) -> "pd.DataFrame":
    """Write RUN/trials.csv (this search's trials merged with earlier searches on the same val split),
    and RUN/trials.md; returns this search's trials.
    ``val_split``: the trials' ``val_split_id`` when the caller has it (read from ``workdir`` otherwise)."""
    from ..errors import SourceError

    split = val_split_id(workdir) if val_split is None else val_split
    new = df = trial_table(results, kind, split)
    uri = layout.path(workdir, layout.TRIALS)
    try:
        old = read_trials(workdir) if storage.exists(uri) else None
    except SourceError as err:  # emptied or damaged: this search's --resume is what writes it again
        console.say(f"tune: {unreadable(uri, err)}; written anew with this search's trials (each other search's "
                    "--resume adds its own)")
        old = None
    if old is not None:
        older = older_split_id(workdir, split)  # rows an older version scored on this split, under the id it wrote
        if older and "val_split" in old:
            old["val_split"] = old["val_split"].replace({older: split})
        df, stale = merge_trials(old, new)
        if stale:
            console.say(f"tune: dropped {counted(stale, 'trial')} of {uri} scored on another val split (catalog or "
                        "clean re-run)")
    storage.write_table(whole_epochs(df), uri)
    write_trials_md(workdir, df)  # RUN/search_progress.png: the report's timeline of every search, written with it
    return new


EPOCH_COLUMNS = ("best_epoch", "epochs_run")  # whole numbers; a trial without one made them floats (1.0, 6.0)


def whole_epochs(df: "pd.DataFrame") -> "pd.DataFrame":
    """The trial table with its epoch columns as whole numbers (empty where unknown), as trials.csv holds them."""
    import pandas as pd

    return df.assign(**{c: pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
                        for c in EPOCH_COLUMNS if c in df})


def write_trials_md(workdir: str, df: "pd.DataFrame", exported: dict[str, Any] | None = None) -> None:
    """RUN/trials.md: every trial of every search, CNN and probe side by side, and which one export took."""
    cols = ["trial_id", "search", "kind", "model", "status", layout.BEST_METRIC, "best_epoch", "epochs_run", "seconds",
            "error"]
    splits = sorted(set(df["val_split"].dropna().astype(str))) if "val_split" in df else []
    lines = ["# Trials", "",
             f"Every trial is ranked by `{layout.METRIC}` (macro-F1 over families, on the validation split), the "
             f"same metric for CNN and probe trials, scored on: {'; '.join(splits) or 'unrecorded'}.", ""]
    if exported:
        lines += [f"**Exported**: trial `{exported['trial_id']}` ({exported['kind']}, {exported['model']}): "
                  f"{exported['reason']}", ""]
    lines += ["| " + " | ".join(cols) + " | config |", "|" + "---|" * (len(cols) + 1)]
    for r in df.to_dict("records"):
        cells = [cell(f"{v:.0f}" if c in EPOCH_COLUMNS and isinstance(v, float) and v == v else
                      f"{v:.4f}" if isinstance(v, float) and v == v else v) for c, v in ((c, r.get(c)) for c in cols)]
        lines.append("| " + " | ".join(cells) + f" | `{r.get('config', '')}` |")
    storage.write_text(layout.path(workdir, layout.TRIALS_MD), "\n".join(lines) + "\n")
