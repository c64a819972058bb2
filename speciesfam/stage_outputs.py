"""What a stage hands the next, checked: the tables later stages read (``OUTPUTS``), whose digest each stage's
record holds (``outputs_sha256``), so a table its stage did not finish writing, or an edit, is refused where it is
read (``check_outputs``), and a stage run again with the same outcome is the same run (``same_run``)."""

from __future__ import annotations

import json
import os
from typing import Any

from . import layout, storage
from .errors import SpeciesfamError, StageOrderError

# stage -> the tables later stages read, digested into its record (``outputs_sha256``) and checked when read
OUTPUTS: dict[str, tuple[str, ...]] = {"catalog": (layout.MANIFEST,), "clean": (layout.CLEAN_MANIFEST,)}
# stage -> its settings of how it runs, not what it makes: a run again with others is the same run (``finish``)
RUN_ONLY: dict[str, tuple[str, ...]] = {"clean": ("batch_size", "num_actors", "gallery_per_family")}


def check_outputs(workdir: str, stage: str, rec: dict[str, Any] | None = None) -> None:
    """Refuse ``stage``'s tables (``OUTPUTS``) when they are not what the run its record names wrote: a stage
    stopped (Ctrl-C, killed) after writing them and before its record, or an edit since. Later stages took such
    a clean_manifest.parquet as the last finished clean's: a search trained on it and its bundle's card named
    the other clean (rounds 72, 73). A record from before ``outputs_sha256`` is not checked."""
    from .stages import command, load

    rec = load(workdir, stage) if rec is None else rec
    want = (rec or {}).get("outputs_sha256")
    if want and outputs_digest(workdir, stage) != want:
        tables = [layout.path(workdir, name) for name in OUTPUTS[stage]]
        gone = [uri for uri in tables if not storage.exists(uri)]
        why = (f"{' and '.join(gone)} {'is' if len(gone) == 1 else 'are'} gone" if gone else
               f"{' and '.join(tables)} is not what the last finished {stage} wrote (a {stage} stopped before it "
               "finished, or an edit since)")
        err = StageOrderError(f"{why}: run `{command(stage, workdir)}` again")
        err.not_written = True  # the report's banner: not a stage built from an older run
        raise err


def check_table(uri: str) -> None:
    """``check_outputs`` for a run folder's table read by its path (``evaluate --manifest RUN/clean_manifest.parquet``
    scored an interrupted clean's test split as the run's own, and the report showed it: round 74); a damaged
    record is left to the warnings that read it."""
    from .stages import load

    folder, name = storage.parent(uri), uri.rstrip("/").rsplit("/", 1)[-1]
    for stage, names in OUTPUTS.items():
        try:
            rec = load(folder, stage) if name in names else None
        except SpeciesfamError:
            rec = None
        if rec:
            check_outputs(folder, stage, rec)


def outputs_digest(workdir: str, stage: str) -> str:
    """A digest of ``stage``'s tables (``OUTPUTS``) as later stages act on them: every column but the floats
    (clean's outlier scores moved in the 7th digit when its embeddings were computed again, and made an unchanged
    clean a new run: round 72). Local files' digest is computed once per process for their inode, size and
    modification time (a command checked the same table up to 10 times: 1.5 s each at 260,000 rows; round 74)."""
    import hashlib

    uris = [layout.path(workdir, name) for name in OUTPUTS.get(stage, ())]
    key = tuple(_file_key(uri) for uri in uris)
    if all(key) and key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.sha256()
    for name, uri in zip(OUTPUTS.get(stage, ()), uris):
        df = storage.read_table(uri) if storage.exists(uri) else None
        kept = df[[c for c in df.columns if df[c].dtype.kind != "f"]] if df is not None else None
        digest.update(name.encode() + b"\0" + (kept.to_csv(index=False).encode() if kept is not None else b"-"))
    if all(key):
        _DIGESTS[key] = digest.hexdigest()
    return digest.hexdigest()


_DIGESTS: dict[tuple, str] = {}


def _file_key(uri: str) -> tuple | None:
    """A local file's identity for ``outputs_digest``'s cache (None: remote or not there: not cached)."""
    if storage.is_remote(uri):
        return None
    try:
        st = os.stat(storage.filesystem(uri)[1])
    except OSError:
        return None
    return os.path.abspath(storage.filesystem(uri)[1]), st.st_ino, st.st_size, st.st_mtime_ns


def same_run(workdir: str, stage: str, config: dict[str, Any], read: dict[str, str], outputs: str) -> str | None:
    """The last run's id when this one has its config (but ``RUN_ONLY`` settings), upstream runs and outputs (None
    otherwise)."""
    from .stages import _plain, load

    try:
        before = load(workdir, stage)
    except SpeciesfamError:  # damaged: a new run
        return None

    def what(conf: dict[str, Any]) -> dict[str, Any]:  # another --batch-size made the search stale (round 74)
        return {k: v for k, v in conf.items() if k not in RUN_ONLY.get(stage, ())}

    same = before is not None and before.get("outputs_sha256") == outputs and before.get("built_from") == read \
        and what(before.get("config") or {}) == what(json.loads(json.dumps(config, default=_plain, sort_keys=True)))
    return before.get("run_id") if same else None


def check_embedder_unchanged(workdir: str, rec: dict[str, Any] | None = None) -> None:
    """The local weights files (or a ``module:factory``'s source) clean embedded with, whose digest is in its model
    id, still hold those bytes: a probe trained on the embeddings of the old ones, bundled with the new, would
    embed otherwise (a search trained on them, and export kept such a bundle: round 75). ``rec``: clean's record."""
    from .config import CleanConfig
    from .data.embedders import model_id, split_id, weights_files
    from .reproduce import command as reproduced
    from .stages import command, load

    rec = load(workdir, "clean") if rec is None else rec
    cfg = (rec or {}).get("config") or {}
    if not split_id(cfg.get("model_id") or "")[1]:  # a tag, a hub model (or a clean from before digests)
        return
    now = CleanConfig(model=cfg.get("model") or CleanConfig.model, pretrained=cfg.get("pretrained"),
                      embedder=cfg.get("embedder"))
    now_id = model_id(now)
    if now_id != cfg["model_id"]:
        files, what = weights_files(now), "code" if now.embedder else "weights"
        module = (now.embedder or "").partition(":")[0]
        now_said = f"{' and '.join(files)} now {'holds' if len(files) == 1 else 'hold'} other {what} (digest " \
                   f"{split_id(now_id)[1]})" if files else f"its module {module!r} cannot be found here (put the " \
            "folder that holds it on PYTHONPATH)" if module else "those weights files are gone"
        raise StageOrderError(f"clean embedded with {cfg['model_id']!r}, but {now_said}: restore "
                              f"{'it' if module else 'them'}, or run "
                              f"`{reproduced('clean', rec, workdir)}` and the probe search again "
                              f"(`{command('tune', workdir, 'probe')}`)")
