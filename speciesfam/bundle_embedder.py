"""How a probe bundle's embedder is rebuilt on load: from its record (``config.json["embedder"]``), its local
weights files checked against their sha256 (read from ``--weights-dir`` when the bundle moved to another
machine), an open_clip tag's weights found as clean finds them, and the model id the head was trained on; and
what export records of it (``embedder_record``)."""

from __future__ import annotations

import os
from typing import Any

from .bundle import BundleError, sha256_file
from .errors import SpeciesfamError


def embedder_config(spec: dict[str, Any], weights_dir: str | None = None):
    """The ``CleanConfig`` that rebuilds the bundle's embedder, after checking its local weights files' sha256 and
    that it is the embedder the head was trained on (no torch: predict checks it before any actor starts).
    ``weights_dir``: where those files are read instead of their recorded paths (the bundle moved to another
    machine): the same names, the same sha256."""
    from .config import CleanConfig
    from .data.embedders import embedder_source, file_sha256, local_dir_weights, model_id, split_id

    spec = _moved(spec, weights_dir) if weights_dir else spec
    pretrained = spec.get("pretrained")
    files = dict(spec.get("files_sha256") or {})  # a local-dir: model's config and weights
    model = spec.get("model") or ""
    if files and model.startswith("local-dir:"):  # another weights file added there, one open_clip prefers
        loads = local_dir_weights(model[len("local-dir:"):])
        if loads and os.path.abspath(loads) not in files:
            trained = [f for f in sorted(files) if os.path.basename(f) != "open_clip_config.json"]
            raise BundleError(f"open_clip would now load {loads}, not the weights this bundle's head was trained on "
                              f"({', '.join(trained)}): remove it, or export again from a run cleaned with it")
    if spec.get("pretrained_sha256"):
        files[pretrained] = spec["pretrained_sha256"]
    for file, digest in files.items():
        if not os.path.isfile(file):
            where = (f"not in --weights-dir {weights_dir}" if weights_dir else "not on this machine; copy it there, "
                     "or give --weights-dir FOLDER where a copy of it is")
            raise BundleError(f"this bundle embeds with the local file {file} (sha256 {digest}), which is {where}")
        if file_sha256(file) != digest:  # read once: the embedder's id below hashes it too
            raise BundleError(f"{file} is not the file this bundle's head was trained on (sha256 differs from "
                              f"{digest}); restore the original file, or export again from a run cleaned with it")
    cfg = CleanConfig(model=spec.get("model") or CleanConfig.model, pretrained=pretrained,
                      embedder=spec.get("embedder"))
    _fetched(cfg)
    rebuilt = model_id(cfg)
    if not split_id(spec["model_id"])[1]:  # exported before ids carried the weights' digest (checked above)
        rebuilt = split_id(rebuilt)[0]
    if weights_dir and split_id(spec["model_id"])[1]:  # read elsewhere: the same weights are the same model
        rebuilt, spec = split_id(rebuilt)[1], {**spec, "model_id": split_id(spec["model_id"])[1]}
    source = embedder_source(spec["embedder"]) if spec.get("embedder") else None
    if spec.get("embedder") and source is None:  # not importable here: not 'changed' (round 75)
        raise BundleError(f"this bundle embeds with {spec['embedder']}, whose module "
                          f"{spec['embedder'].partition(':')[0]!r} cannot be found here: put the folder that holds it "
                          "on PYTHONPATH" + (f" (it was {spec['source_file']} at export)" if spec.get("source_file")
                                             else ""))
    if spec.get("embedder") and rebuilt != spec["model_id"] and split_id(rebuilt)[0] == split_id(spec["model_id"])[0]:
        raise BundleError(f"embedder module {source} changed since this bundle's head was "
                          f"trained on its vectors (code digest {split_id(spec['model_id'])[1]} -> "
                          f"{split_id(rebuilt)[1]}): restore it, or run clean, the probe search and export again")
    if rebuilt != spec["model_id"]:
        raise BundleError(f"the rebuilt embedder is {rebuilt!r}, the head was trained on {spec['model_id']!r}; "
                          "re-export from the run that trained it")
    return cfg


def _fetched(cfg) -> None:
    """An open_clip tag or hub model: its weights found in the local cache (or downloaded) before anything loads
    it, as clean does, and said in one line: offline, predict retried the hub for 50 s, 46 lines of it, then
    advised clean's flags (hostile tester round 47); a tag open_clip does not know was a traceback."""
    from .data.embedders import fetch_pretrained

    if cfg.embedder or not (cfg.model.startswith("hf-hub:") or (cfg.pretrained and not os.path.isabs(cfg.pretrained))):
        return
    try:
        fetch_pretrained(cfg)
    except SpeciesfamError as err:
        cause = str(err).split(" Offline machines need")[0]
        raise BundleError(f"{cause} The bundle's embedder needs those weights: on an offline machine, copy the "
                          "Hugging Face cache (HF_HOME, ~/.cache/huggingface) there from one that has them, or "
                          "export from a run cleaned with a local weights file (--pretrained PATH or --model "
                          "local-dir:FOLDER; its files travel with --weights-dir)") from None


def reads_local_files(spec: dict[str, Any]) -> bool:
    """Whether the embedder record names local weights files (a ``local-dir:`` folder's, a ``--pretrained`` file):
    only those are read from ``--weights-dir``."""
    return bool(spec.get("files_sha256") or spec.get("pretrained_sha256"))


def _moved(spec: dict[str, Any], weights_dir: str) -> dict[str, Any]:
    """The embedder record with its local files read from ``weights_dir`` (same names): a ``local-dir:`` model is
    that folder, a ``--pretrained`` file the file of its name there. A tag, hub model or factory: unchanged."""
    if not reads_local_files(spec):
        return spec  # nothing read from local files: a tag, a hub model, random weights, a factory (cli notes it)
    folder = os.path.abspath(weights_dir)
    if not os.path.isdir(folder):
        raise BundleError(f"--weights-dir {weights_dir} is not a folder: give the folder that holds the "
                          "embedder's files")
    spec = dict(spec)
    if str(spec.get("model") or "").startswith("local-dir:"):
        spec["model"] = f"local-dir:{folder}"
        spec["files_sha256"] = {os.path.join(folder, os.path.basename(f)): d
                                for f, d in (spec.get("files_sha256") or {}).items()}
    elif spec.get("pretrained_sha256") and spec.get("pretrained"):
        spec["pretrained"] = os.path.join(folder, os.path.basename(spec["pretrained"]))
    return spec


def embedder_record(clean_cfg: dict[str, Any]) -> dict[str, Any]:
    """What a probe bundle records to rebuild its embedder (``embedder_config`` reads it): open_clip model + tag, a
    local weights file with its sha256, or a user's ``module:factory`` (with its source file's sha256)."""
    from .data.embedders import embedder_source
    from .model_card import licence

    spec: dict[str, Any] = {"model_id": clean_cfg["model_id"], "embedder": clean_cfg.get("embedder")}
    if spec["embedder"]:
        spec["source"] = "module:factory"
        origin = embedder_source(spec["embedder"])
        if origin is None:
            raise SpeciesfamError(f"embedder {spec['embedder']!r}: cannot find module "
                                  f"{spec['embedder'].partition(':')[0]!r}; export where it is importable")
        spec.update(source_file=origin, source_sha256=sha256_file(origin))
    else:
        spec.update(model=clean_cfg["model"], pretrained=clean_cfg.get("pretrained"))
        pretrained = spec["pretrained"]
        if spec["model"].startswith(("hf-hub:", "local-dir:")):
            spec.update(source=spec["model"].split(":", 1)[0], pretrained=None)
            if spec["model"].startswith("local-dir:"):  # the folder's files, so that one replaced in place is told
                spec["files_sha256"] = _local_dir_files(spec["model"][len("local-dir:"):])
        elif pretrained and os.path.exists(pretrained):
            spec.update(source="local weights file", pretrained=os.path.abspath(pretrained),
                        pretrained_sha256=sha256_file(pretrained))
        else:
            spec["source"] = "open_clip pretrained tag" if pretrained else "open_clip random weights"
    spec["licence"] = licence(spec)
    return spec


def _local_dir_files(folder: str) -> dict[str, str]:
    """sha256 of the files open_clip reads from a ``local-dir:`` folder: its config and the weights it loads."""
    from .data.embedders import local_dir_weights

    files = [os.path.join(folder, "open_clip_config.json"), local_dir_weights(folder)]
    return {os.path.abspath(f): sha256_file(f) for f in files if f and os.path.isfile(f)}
