"""Ship stage: export the best trial's best checkpoint as a self-contained bundle, load it, predict.

A bundle is a folder: ``model.keras`` (loads in Keras safe mode: no Lambda layers, no pickled code),
``config.json`` (labels, image size, input convention, hyperparameters, versions), ``labels.json``,
``metrics.json``, ``saved_model/`` (TF SavedModel for serving) and ``MODEL_CARD.md``. It is written to a
temporary folder and renamed into place, so a crash never leaves a half-written bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from . import storage

BUNDLE_FILES = ("model.keras", "config.json", "labels.json")


def best_trial(workdir: str, trial_id: str | None = None) -> dict[str, Any]:
    """The row of RUN/trials.csv to export: ``trial_id`` or the best successful trial by val macro-F1."""
    trials = storage.read_table(storage.join(workdir, "trials.csv"), stage_hint="speciesfam tune ... --workdir RUN")
    if trial_id:
        rows = trials[trials["trial_id"].astype(str) == trial_id]
        if rows.empty:
            raise ValueError(f"trial {trial_id!r} is not in {workdir}/trials.csv; trials: {trials['trial_id'].tolist()}")
    else:
        rows = trials[(trials["status"] == "ok") & trials["best_checkpoint"].notna()]
        if rows.empty:
            raise ValueError(f"no successful trial with a checkpoint in {workdir}/trials.csv: see the 'error' column")
        rows = rows.sort_values("best_val_macro_f1", ascending=False)
    row = rows.iloc[0].to_dict()
    if not isinstance(row.get("best_checkpoint"), str):
        raise ValueError(f"trial {row['trial_id']} has no checkpoint (status {row['status']})")
    return row


def _local_copy(uri: str, dest: str) -> str:
    """Checkpoint folder ``uri`` as a local folder (copied from object storage when remote)."""
    return storage.download_dir(uri, dest) if storage.is_remote(uri) else uri


def export_bundle(workdir: str, trial_id: str | None = None, out: str | None = None) -> str:
    """Write the bundle of the best (or named) trial to ``out`` (default RUN/bundle); returns its path."""
    from ._lazy import keras as _keras

    if out is None and storage.is_remote(workdir):
        raise ValueError(f"workdir {workdir} is in object storage; a bundle is written to local disk: give --out DIR")
    keras = _keras()
    row = best_trial(workdir, trial_id)
    out = storage.local_dir(out or storage.join(workdir, "bundle"))
    parent = os.path.dirname(out.rstrip("/"))
    with tempfile.TemporaryDirectory() as scratch:
        ckpt = _local_copy(row["best_checkpoint"], os.path.join(scratch, "ckpt"))
        for name in ("model.keras", "config.json"):
            if not os.path.exists(os.path.join(ckpt, name)):
                raise FileNotFoundError(f"checkpoint {row['best_checkpoint']} lacks {name}; was it written by speciesfam?")
        tmp = tempfile.mkdtemp(prefix=".bundle-", dir=parent)
        try:
            shutil.copy(os.path.join(ckpt, "model.keras"), tmp)
            config = json.load(open(os.path.join(ckpt, "config.json")))
            if config.get("model") == "probe":
                raise ValueError(f"trial {row['trial_id']} is an embedding probe: it ranks hyperparameters on "
                                 "CLIP embeddings and takes no images; export a scratch or transfer trial")
            model = keras.saving.load_model(os.path.join(tmp, "model.keras"), safe_mode=True)
            model.export(os.path.join(tmp, "saved_model"), format="tf_saved_model", verbose=False)
            config["trial_id"] = row["trial_id"]
            metrics = {k: row[k] for k in ("best_val_macro_f1", "best_epoch", "epochs_run", "seconds")}
            if os.path.exists(os.path.join(ckpt, "metrics.json")):  # the checkpoint's own epoch, per family
                metrics["checkpoint"] = json.load(open(os.path.join(ckpt, "metrics.json")))
            for name, data in (("config.json", config), ("labels.json", config["labels"]), ("metrics.json", metrics)):
                with open(os.path.join(tmp, name), "w") as f:
                    json.dump(data, f, indent=1, default=str)
            with open(os.path.join(tmp, "MODEL_CARD.md"), "w") as f:
                f.write(model_card(workdir, config, metrics))
            if os.path.exists(out):
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def model_card(workdir: str, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    lines = [f"# speciesfam model: {config['model']}", "",
             f"- families ({len(config['labels'])}): {', '.join(config['labels'])}",
             f"- input: {config['image_size']}x{config['image_size']} RGB, 0..255 (the model rescales itself)",
             f"- trial {config.get('trial_id')}: best val macro-F1 {metrics['best_val_macro_f1']:.4f} at epoch "
             f"{metrics['best_epoch']}", f"- hyperparameters: `{json.dumps(config.get('hp', {}), sort_keys=True)}`",
             f"- versions: {config.get('versions')}", ""]
    for name, title in (("catalog.md", "Data"), ("clean.md", "Cleaning")):
        uri = storage.join(workdir, name)
        if storage.exists(uri):
            first = storage.read_bytes(uri).decode().split("\n## ")[0]
            lines += [f"## {title}", "", *first.splitlines()[1:], ""]
    lines += ["## Known limits", "",
              "- Validation macro-F1 comes from the split used to choose the trial: it is optimistic; run "
              "`speciesfam evaluate` on the test split for an unbiased figure.",
              "- The model only knows the families above; any image gets one of them.", ""]
    return "\n".join(lines)


def load_bundle(path: str):
    """Load ``(model, config)`` from a bundle folder, with a clear error for a damaged or incomplete one."""
    from ._lazy import keras as _keras

    missing = [f for f in BUNDLE_FILES if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"{path} is not a complete speciesfam bundle: missing {missing}; re-run "
                                "`speciesfam export --workdir RUN`")
    try:
        config = json.load(open(os.path.join(path, "config.json")))
        model = _keras().saving.load_model(os.path.join(path, "model.keras"), safe_mode=True)
    except Exception as err:  # zip, h5 and JSON errors all mean the same thing to a user
        raise ValueError(f"{path}: the bundle is damaged ({type(err).__name__}: {err}); re-export it") from err
    return model, config


def predict(bundle: str, paths: list[str], top_k: int = 3, batch_size: int = 32) -> list[dict[str, Any]]:
    """Top-k families per image. Folders are expanded; a file that cannot be read gets an ``error`` entry
    and the others go on."""
    from .data.images import DecodeError, decode_rgb

    model, config = load_bundle(bundle)
    labels, size = config["labels"], int(config["image_size"])
    files = [f for p in paths for f in (storage.list_files(p) if os.path.isdir(p) else [p])]
    out, batch, where = [], [], []
    for f in files:
        try:
            batch.append(decode_rgb(storage.read_bytes(f), size=size).astype(np.float32))
            where.append(len(out))
            out.append({"path": f})
        except (DecodeError, OSError) as err:
            out.append({"path": f, "error": str(err)})
    for start in range(0, len(batch), batch_size):
        probs = model.predict_on_batch(np.stack(batch[start:start + batch_size]))
        for i, p in zip(where[start:start + batch_size], np.asarray(probs)):
            order = np.argsort(-p)[:top_k]
            out[i]["top"] = [(labels[j], float(p[j])) for j in order]
    return out
