"""Export stage: the best trial (CNN or embedding probe) of every search on RUN -> a self-contained bundle.

``export`` owns the bundle schema (``speciesfam.bundle``): it builds the bundle's ``config.json`` from the
trial's checkpoint, its row of ``trials.csv`` and the stage records (``RUN/stages/*.json``: how ``clean``
embedded, what ``catalog`` saw), never from another stage's Markdown. A checkpoint's own ``config.json`` is
an input here, not the schema.

The bundle is built in ``.<name>-new-*`` beside its destination and swapped in by ``bundle_placement`` (which
also checks ``--out`` and clears what a killed export left), so a kill at any point leaves the old bundle or
the new one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import uuid
from typing import Any, Callable

from . import bundle as B
from . import bundle_placement as placement
from . import console, layout, seen, stages, storage
from .errors import SpeciesfamError, StageOrderError
from .lines import some
from .bundle_embedder import embedder_record
from .model_card import model_card
from .stage_outputs import check_embedder_unchanged
from .reproduce import versions
from .tune.tracking import scored_trials
from .tune.trials_file import older_searches, read_trials, trials_lost

def family(kind: str) -> str:
    """``probe`` or ``cnn`` for a search kind (scratch and transfer trials are CNNs)."""
    return "probe" if kind == "probe" else "cnn"


def choose_trial(workdir: str, trial_id: str | None = None) -> tuple[dict[str, Any], str]:
    """The row of RUN/trials.csv to export and why: ``trial_id``, else the best successful trial of every
    search (CNN and probe, one metric, one val split; ties go to the faster trial).

    Raises:
        SpeciesfamError: the trial is unknown, failed, or no trial has a checkpoint.
    """
    if not storage.exists(layout.path(workdir, layout.TRIALS)):
        from .locks import running_searches

        running = running_searches(workdir)
        if running:  # not "run tune first": it runs
            raise SpeciesfamError(f"--workdir {workdir}: no search has ended there yet, and {', '.join(running)} "
                                  "runs now; export when it has ended")
    trials = read_trials(workdir, stage_hint=stages.command("tune", workdir))
    if stages.load(workdir, "tune"):  # run folders tuned before tune recorded itself have no record to check
        stages.check_fresh(workdir, "tune")  # a catalog or clean re-run since: the trials' splits are gone
    lost = trials_lost(workdir, trials)  # a search's trials missing (a table cut short or rewritten by one
    if lost:                             # search's --resume): not another search's worse trial, unsaid
        raise StageOrderError(lost)
    trials["trial_id"] = trials["trial_id"].astype(str)
    if "kind" not in trials:  # tables written before the column existed
        trials["kind"] = "unknown"
    metric = layout.BEST_METRIC
    ok = scored_trials(trials[trials["best_checkpoint"].notna()])
    if trial_id:
        rows = trials[trials["trial_id"] == str(trial_id)]
        if rows.empty:
            ids = trials["trial_id"].astype(str).tolist()
            older = older_searches(workdir)  # their trials were dropped from the table
            ran = _trial_folder(workdir, str(trial_id))  # a search of that name since re-run on newer splits
            raise SpeciesfamError(f"trial {trial_id!r} is not in {workdir}/{layout.TRIALS}; its {len(ids)} trials: "
                                  f"{some(ids, 10)}" + (f" (the trials of {some(older, quote=True)}, searches of an "
                                                        "older catalog or clean run, were dropped from it: their "
                                                        "splits are gone)" if older else "") + (
                f"; trial {trial_id} ran in {ran}, and the table no longer holds it: a search on an older catalog "
                "or clean run, or one started again under the same --name, leaves its trials out" if ran and not older
                else ""))  # it said 'on an older catalog or clean run' of a name reused (round 46)
        row = rows.iloc[0].to_dict()
        if not isinstance(row.get("best_checkpoint"), str):
            raise SpeciesfamError(f"trial {trial_id} has no checkpoint (status {row['status']}: {row.get('error')})")
        best = ok.iloc[0] if len(ok) else None
        reason = "chosen with --trial" + (
            f"; it is the best trial ({best['kind']}, {metric} {best[metric]:.4f})" if best is not None and
            str(best["trial_id"]) == str(trial_id) else f"; the best trial is {best['trial_id']} ({best['kind']}, "
            f"{metric} {best[metric]:.4f})" if best is not None else "")
        if row.get("status") != layout.OK:  # a checkpoint from before it failed: said in the card and metrics
            reason += f"; this trial then failed ({row['status']}: {row.get('error')}): exported from its checkpoint"
        return row, reason
    if ok.empty:
        raise SpeciesfamError(f"no successful trial with a checkpoint in {workdir}/{layout.TRIALS}: see its "
                              "'error' column")
    row = ok.iloc[0].to_dict()
    counts = ok["kind"].value_counts()
    reason = (f"highest {layout.METRIC} ({row[metric]:.4f}) of {len(ok)} successful trials ("
              + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")")
    for fam, grp in ok.groupby(ok["kind"].map(family)):
        if fam != family(row["kind"]):
            other = grp.iloc[0]
            reason += f"; the best {fam} trial, {other['trial_id']} ({other['kind']}), scored {other[metric]:.4f}"
    ties = ok[(ok[metric] == row[metric]) & (ok["trial_id"] != row["trial_id"])]
    if len(ties):
        took = f"{row['seconds']:.{1 if row['seconds'] >= 0.1 else 3}f}"  # 0.048 s read '0.0 s' (round 61)
        reason += f"; tied with {some(ties['trial_id'])}: the faster trial ({took} s) was taken"
    return row, reason


def _clean_config(workdir: str, model_id: str | None) -> dict[str, Any]:
    """How the clean stage embedded (its stage record), checked against the embeddings the head trained on."""
    rec = stages.load(workdir, "clean")
    if rec is None:
        raise StageOrderError(f"{workdir} has no record of how the clean stage embedded ({layout.STAGES}/clean.json); "
                              f"run `{stages.command('clean', workdir)}` again (it reuses the cached embeddings)")
    cfg = rec["config"]  # a dict: stages.load reads a config edited away as {}
    gone = [k for k in ("model", "model_id") if k not in cfg]  # a traceback (round 60), 'embedded with None' (61)
    if gone:  # (a field of another type is damage in stages.load)
        raise StageOrderError(f"{stages.record_uri(workdir, 'clean')} is damaged (its config has no "
                              f"{' and no '.join(gone)}); run `{stages.command('clean', workdir)}` again (with the "
                              "--model the embeddings were made with, it reuses them)")
    if model_id and cfg.get("model_id") != model_id:
        raise StageOrderError(f"the probe was trained on embeddings of {model_id!r}, but the last clean stage embedded "
                              f"with {cfg.get('model_id')!r}; run the probe search again "
                              f"(`{stages.command('tune', workdir, 'probe')}`)")
    check_embedder_unchanged(workdir, rec)
    return cfg


def _is_probe(ckpt_cfg: dict[str, Any]) -> bool:
    """A probe trial's checkpoint (older ones say so only in "model")."""
    return ckpt_cfg.get("kind") == "probe" or ckpt_cfg.get("model") == "probe"


def _loaded(path: str, trial: str, load: Callable[[], Any]) -> Any:
    """``load()`` of a checkpoint's model file; one that cannot be loaded (cut short, not a .keras zip or HDF5 file,
    gone) is one line naming the trial and the file: Keras's traceback named export's own temporary copy, 'File not
    found' of a file that was there (rounds 57, 58)."""
    try:
        return load()
    except Exception as err:  # noqa: BLE001 -- Keras and h5py raise ValueError, OSError, KeyError... for such a file
        raise _damaged(trial, path, f"cannot be loaded ({B.why_not_loaded(path, err)})") from err


def _damaged(trial: str, path: str, problem: str) -> SpeciesfamError:
    return SpeciesfamError(f"trial {trial}'s checkpoint file {path} {problem}: it is damaged or not this trial's; "
                           "export another --trial, or run the search again")


def _checkpoint_json(ckpt: str, name: str, trial: str) -> dict[str, Any]:
    """A checkpoint's config.json or metrics.json: a JSON object, else one line naming the trial and the file (a
    cut-short or emptied one was a traceback: round 58)."""
    path = os.path.join(ckpt, name)
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError; '[' * 100000
        raise _damaged(trial, path, f"cannot be read as JSON ({type(err).__name__}: {str(err)[:200]})") from err
    if not isinstance(data, dict):
        raise _damaged(trial, path, "is not a JSON object")
    return data


def _older_probe(cfg: dict[str, Any]) -> bool:
    """A probe checkpoint of before probe.weights.h5 (a whole model.keras; its config says 'probe' only in "model").
    A checkpoint whose config says kind 'probe' has weights: with them gone it is damage, whatever lies beside
    them (a CNN's model.keras was exported as a probe head: round 59)."""
    return _is_probe(cfg) and cfg.get("kind") != "probe"


def _check_config(cfg: dict[str, Any], path: str, trial: str) -> None:
    """What ``_write_model`` and the model card read of a checkpoint's config.json is there and of its type, as
    predict checks a bundle's (round 58: a KeyError; round 59: hp "x", embedding_dim -1, labels [1, 2], ...)."""
    probe = _is_probe(cfg)
    needed = {"labels": list, **({} if _older_probe(cfg) else {"embedding_dim": int} if probe else
                                 {"model": str, "image_size": int})}
    wrong = [k for k, kind in needed.items() if not isinstance(cfg.get(k), kind) or isinstance(cfg.get(k), bool)]
    if not isinstance(cfg.get("hp", {}), dict):
        wrong.append("hp")
    if wrong:
        raise _damaged(trial, path, f"lacks {' and '.join(wrong)}, or holds {'it' if len(wrong) == 1 else 'them'} "
                                    "of another type")
    if probe and not _older_probe(cfg) and cfg["embedding_dim"] < 1:
        raise _damaged(trial, path, f"has embedding_dim {cfg['embedding_dim']}, not a length of vectors")
    problem = B.config_problem({"kind": "probe" if probe else "cnn", "labels": cfg["labels"],
                                "image_size": cfg.get("image_size"), "embedder": {"model_id": ""}})
    if problem:
        raise _damaged(trial, path, problem)


def _check_metrics(metrics: dict[str, Any], path: str, trial: str) -> dict[str, Any]:
    """A checkpoint's metrics.json as the model card reads it: per family a val F1 (round 59: a traceback)."""
    per_class = metrics.get("per_class_f1", {})
    if not isinstance(per_class, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and (v != v or 0 <= v <= 1)  # NaN; not None,
            for v in per_class.values()):  # 10**400 (round 60: tracebacks in the model card)
        raise _damaged(trial, path, f"has per_class_f1 {str(per_class)[:80]!r}, not a val F1 per family")
    return metrics


def _write_model(ckpt: str, ckpt_cfg: dict[str, Any], tmp: str, trial: str) -> dict[str, Any]:
    """The model file(s) of the bundle from the checkpoint of ``trial``; returns the kind-specific part of
    config.json."""
    from ._lazy import keras as _keras

    keras = _keras()
    labels = list(ckpt_cfg["labels"])
    if _is_probe(ckpt_cfg):
        weights, path = os.path.join(ckpt, "probe.weights.h5"), os.path.join(ckpt, B.CNN_MODEL)
        if not _older_probe(ckpt_cfg):  # the probe trial's checkpoint: weights of build_probe(classes, dim, hp);
            from .models.probe import build_probe  # deleted: named (round 58)

            head = _loaded(os.path.join(ckpt, "config.json"), trial, lambda: build_probe(  # hp {"head_units": "abc"}
                len(labels), int(ckpt_cfg["embedding_dim"]), ckpt_cfg.get("hp", {})))
            _loaded(weights, trial, lambda: head.load_weights(weights))
        else:  # older probe checkpoints: a whole model.keras
            head = _loaded(path, trial, lambda: keras.saving.load_model(path, safe_mode=True))
            if problem := B.model_mismatch(head, labels):
                raise _damaged(trial, path, problem)
        head.save(os.path.join(tmp, B.PROBE_HEAD))
        return {"kind": "probe", "model": "probe", "embedding_dim": int(head.inputs[0].shape[-1]),
                "input": "RGB uint8 images of any size; the embedder's own preprocessing resizes them"}
    path = os.path.join(ckpt, B.CNN_MODEL)
    model = _loaded(path, trial, lambda: keras.saving.load_model(path, safe_mode=True))
    size = int(ckpt_cfg["image_size"])
    if problem := B.model_mismatch(model, labels, size):  # a probe head in its place made a bundle that crashed
        raise _damaged(trial, path, problem)  # predict (round 58)
    shutil.copy(path, os.path.join(tmp, B.CNN_MODEL))
    model.export(os.path.join(tmp, B.SAVED_MODEL), format="tf_saved_model", verbose=False)
    return {"kind": "cnn", "model": ckpt_cfg["model"], "image_size": size, "weights": ckpt_cfg.get("weights"),
            "input": f"RGB uint8 images of any size, resized bilinearly to {size}x{size}; the model rescales 0..255"}


def export_bundle(workdir: str, trial_id: str | None = None, out: str | None = None) -> str:
    """Write the bundle of the best (or named) trial to ``out`` (default RUN/bundle); returns its path.

    Also writes the export stage record (which trial and why) and marks the exported trial in RUN/trials.md.
    """
    if trial_id is not None and not trial_id.strip():  # an empty shell variable: not "the best" unsaid
        raise SpeciesfamError("--trial is empty: give a trial id from RUN/trials.csv, or leave --trial out for the "
                              "best trial")
    if out is None and storage.is_remote(workdir):
        raise SpeciesfamError(f"workdir {workdir} is in object storage; a bundle is written to local disk: give --out DIR")
    if not storage.is_remote(workdir) and not storage.exists(workdir):  # mistyped: say so, not "no trials.csv"
        raise SpeciesfamError(f"--workdir {workdir} does not exist; give the run folder of `speciesfam catalog`, "
                              "`clean` and `tune`")
    row, reason = choose_trial(workdir, trial_id)
    from .locks import running_searches

    running = [] if trial_id or storage.is_remote(workdir) else running_searches(workdir)
    if running:  # it chose among the trials of the searches that ended, unsaid (round 52)
        one = len(running) == 1
        console.say(f"export: {some(running)} {'runs' if one else 'run'} on this run folder now: "
                    f"{'its' if one else 'their'} trials are not in trials.csv yet; export again once "
                    f"{'it has' if one else 'they have'} ended to count them")
    stages.refuse_folders_in_place(workdir, "export")  # trials.md made a folder: it failed after the bundle (round 51)
    out = out or layout.path(workdir, layout.BUNDLE)
    if storage.is_remote(out):
        raise SpeciesfamError(f"--out {out}: a bundle is written to a local or NFS folder, not an object store")
    out = storage.filesystem(out)[1]  # absolute; not created (recover must see whether it exists)
    held = placement.held_model(workdir, out, row)  # the same model: kept, so its id, evaluations and predictions stay
    placement.check_out(out, workdir, replacing=held is None)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    placement.recover(out)
    if held and held.get("kind") == "probe":  # kept: its embedder must still be the one its head trained on
        check_embedder_unchanged(workdir)  # (its module's code changed: it was kept, and no longer loaded; round 75)
    config, replaced = (held, "") if held else _write_bundle(workdir, row, reason, out)
    summary = {"trial_id": row["trial_id"], "search": row.get("search") if isinstance(row.get("search"), str) else None,
               "kind": config["kind"], "model": config["model"],
               layout.BEST_METRIC: row[layout.BEST_METRIC], "reason": reason, "bundle": out,
               **({"replaced": replaced} if replaced else {}), **({"kept": True} if held else {})}
    # the default folder recorded as None: a copy of the run folder reproduces its own export (its report said
    # --out ORIGINAL/bundle, replacing the other run's bundle: hostile tester round 32)
    default = out == storage.filesystem(layout.path(workdir, layout.BUNDLE))[1]
    stages.finish(workdir, "export", config={"trial": trial_id, "out": None if default else out}, summary=summary)
    _mark_trials_md(workdir, summary)
    if held and (extra := placement.foreign_files(out)):
        console.say(f"export: note: {out} also holds files that are not its bundle's ({some(extra)}): left as they are")
    return out


def _write_bundle(workdir: str, row: dict[str, Any], reason: str, out: str) -> tuple[dict[str, Any], str]:
    """Build the bundle of trial ``row`` beside ``out`` and swap it into place; returns its config and what it
    replaced ('' when nothing, or the same trial's bundle unchanged)."""
    parent, name = os.path.split(out)
    with tempfile.TemporaryDirectory() as scratch:
        uri = row["best_checkpoint"]
        ckpt = storage.download_dir(uri, os.path.join(scratch, "ckpt")) if storage.is_remote(uri) else uri
        if not os.path.exists(ckpt):
            raise SpeciesfamError(f"checkpoint {uri} of trial {row['trial_id']} is not there (deleted, or the search's "
                                  "--storage-path moved); export another --trial, or run the search again")
        if not os.path.exists(os.path.join(ckpt, "config.json")):
            raise SpeciesfamError(f"checkpoint {uri} has no config.json; was it written by speciesfam?")
        ckpt_cfg = _checkpoint_json(ckpt, "config.json", row["trial_id"])
        _check_config(ckpt_cfg, os.path.join(ckpt, "config.json"), row["trial_id"])  # 'lacks labels, or ...' too
        embedder = embedder_record(_clean_config(workdir, ckpt_cfg.get("embedding_model"))) if _is_probe(ckpt_cfg) else None
        tmp = os.path.join(parent, f".{name}-new-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            config = {"schema": B.SCHEMA, "schema_version": B.SCHEMA_VERSION, **_write_model(ckpt, ckpt_cfg, tmp, row["trial_id"]),
                      "labels": list(ckpt_cfg["labels"]), "hp": ckpt_cfg.get("hp", {}),
                      **({"embedder": embedder} if embedder else {}),
                      "trial": {"trial_id": row["trial_id"], "search_kind": row.get("kind"), "reason": reason,
                                "val_split": row.get("val_split"),
                                # the catalog and clean runs whose splits it trained on (evaluate checks them)
                                "trained_on": ((stages.load(workdir, "tune") or {}).get("built_from") or {}),
                                # the image folder its catalog read: evaluate writes nothing there, whatever it scores
                                "image_folder": stages.image_folder(workdir),
                                "run_folder": os.path.abspath(workdir)},  # a damaged bundle names its export
                      "exported_at": stages.timestamp(), "versions": dict(versions())}
            metrics = {k: row.get(k) for k in (layout.BEST_METRIC, "best_epoch", "epochs_run", "seconds")}
            for k in ("best_epoch", "epochs_run"):  # 1, not 1.0: a trial with none (not_trained) made them floats
                if isinstance(metrics[k], float) and metrics[k] == metrics[k]:
                    metrics[k] = int(round(metrics[k]))
            if row.get("status") != layout.OK:
                metrics.update(status=row.get("status"), error=row.get("error"))
            if os.path.exists(os.path.join(ckpt, "metrics.json")):  # the checkpoint's own epoch, per family
                metrics["checkpoint"] = _check_metrics(_checkpoint_json(ckpt, "metrics.json", row["trial_id"]),
                                                       os.path.join(ckpt, "metrics.json"), row["trial_id"])
            for file, data in ((B.CONFIG, config), (B.LABELS, config["labels"]), (B.METRICS, metrics)):
                with open(os.path.join(tmp, file), "w") as f:
                    json.dump(data, f, indent=1, default=str)
            with open(os.path.join(tmp, B.CARD), "w") as f:
                f.write(model_card(workdir, config, metrics, row))
            unseen = seen.write(workdir, tmp, config["trial"]["trained_on"])  # evaluate leaves them out of a score
            if unseen:
                console.say(f"export: note: {unseen}: evaluate cannot leave the images this model was trained on "
                            "out of another set's score")
            with open(os.path.join(tmp, B.CHECKSUMS), "w") as f:  # last: its presence marks a finished bundle
                json.dump(B.checksums(tmp), f, indent=1)
            replaced = placement.replaced_bundle(out, config["trial"])
            placement.swap_into_place(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return config, replaced



def _trial_folder(workdir: str, trial_id: str) -> str:
    """The folder under RUN/tune/ of trial ``trial_id`` (Tune names it TRAINABLE_ID_N_...), '' if none."""
    if storage.is_remote(workdir) or not re.fullmatch(r"\w+", trial_id):  # 29dc3_00000 of the random searcher
        return ""
    found = glob.glob(os.path.join(glob.escape(layout.path(workdir, "tune")), "*", f"*_{trial_id}_*"))
    return next((p for p in sorted(found) if os.path.isdir(p)), "")




def _mark_trials_md(workdir: str, summary: dict[str, Any]) -> None:
    from .tune.tracking import write_trials_md

    write_trials_md(workdir, read_trials(workdir), exported=summary)
