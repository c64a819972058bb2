"""Embedding images for the clean stage: Ray Data decodes them in parallel tasks and a pool of embedder actors
(one per GPU, fp16; CPU actors when there is no GPU) encodes them; ``cached_embeddings`` reuses
``RUN/embeddings.parquet`` for the same model and image bytes. ``iter_plain`` is the same work in one process
(benchmark baseline, equivalence tests)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from .. import layout, lines, pathtext, storage
from ..console import Progress, quiet_stderr, say
from ..config import CleanConfig
from .embedders import embedder_source, load_embedder, model_id, split_id
from ..errors import SpeciesfamError, inner_error
from .images import DecodeError, changed_reason, read_rgb, read_rgb_sha256

if TYPE_CHECKING:
    import pandas as pd


EMBEDDING_COLUMNS = ["path", "label", "sha256", "embedding", "model_id", "decoder"]  # decoder: images.DECODER


def decode_batch(batch: "pd.DataFrame", size: int | None = None, digest: bool = False) -> "pd.DataFrame":
    """Ray Data task: read and decode each path (resized to ``size`` x ``size`` if given); failures go to the
    ``error`` column, never drop a row. Rows that arrive with an ``error`` already (e.g. hidden files in
    predict) are not read and keep it. ``digest``: also the sha256 of each file read, column ``content`` ('' for
    a row in error)."""
    images, errors, digests = [], [], []
    given = batch["error"] if "error" in batch else [""] * len(batch)
    hashes = batch["sha256"] if "sha256" in batch else [None] * len(batch)  # catalog's: a replaced file is an error
    for path, error, sha256 in zip(batch["path"], given, hashes):
        content = ""
        if not error:
            try:
                image, content = read_rgb_sha256(path, size=size, sha256=sha256 or None) if digest else \
                    (read_rgb(path, size=size, sha256=sha256 or None), "")
            except DecodeError as err:
                error, content = str(err) or type(err).__name__, ""
        images.append(image if not error else np.zeros((1, 1, 3), np.uint8))
        errors.append(error)
        digests.append(content)
    out = batch.copy()
    out["image"] = images
    out["error"] = errors
    if digest:
        out["content"] = digests
    return out


class EmbedActor:
    """Ray Data actor: holds one embedder replica, applies its own transform and encodes a batch."""

    def __init__(self, cfg: dict, threads: int = 0):
        from ..raycluster import use_actor_threads

        self.embedder = load_embedder(CleanConfig(**cfg))
        use_actor_threads(threads)

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        return embed_frame(self.embedder, batch)


def embed_frame(embedder, batch: "pd.DataFrame") -> "pd.DataFrame":
    """Embed the decoded ``image`` column of a batch (rows with an ``error`` get an empty embedding).

    Embeddings are plain lists of floats: every block then has one Arrow type (a list), whereas NumPy vectors
    beside an empty list made a block Ray Data could not convert back to pandas."""
    good = [i for i, e in enumerate(batch["error"]) if not e]
    vecs: list = [[] for _ in range(len(batch))]
    if good:
        x = checked_vectors(embedder.embed([batch["image"].iloc[i] for i in good]), len(good), embedder.model_id,
                            [batch["path"].iloc[i] for i in good])
        for i, v in zip(good, x):
            vecs[i] = v.tolist()
    out = batch.drop(columns=["image"])
    out["embedding"] = vecs
    out["model_id"] = embedder.model_id
    return out


def checked_vectors(x: np.ndarray, n: int, model_id: str, paths: list[str] | None = None) -> np.ndarray:
    """``x`` if it is one finite vector per image of ``n``; else a ValueError saying what the embedder gave,
    for how many of the images and the first such file (``paths``: the images' files; None: a test image)."""
    of = lines.counted(n, "image") if paths is not None else "a plain grey test image"
    if x.ndim != 2 or len(x) != n or x.shape[1] < 1:
        what = f"an array of shape {x.shape} for {of}"
    elif not np.isfinite(x).all():
        what = f"non-finite values for {of}"
        if paths is not None:
            bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
            what = f"non-finite values for {len(bad)} of {of} (e.g. {paths[bad[0]]})"
    else:
        return x
    raise ValueError(f"embedder {model_id!r} gave {what}; it must give one finite vector per image, shape (N, D)")


def embedding_dataset(rows: "pd.DataFrame", cfg: CleanConfig):
    """The Ray Data pipeline (lazy): blocks of ``batch_size`` rows -> decode -> embedder actor pool."""
    import ray

    from ..raycluster import actor_pool, check_shared, init_ray

    init_ray()
    check_shared(rows["path"].iloc[0], "image path")
    actors, threads, gpus = actor_pool(cfg.num_actors)
    df = rows[["path", "label", "sha256"]].reset_index(drop=True)
    # One input block per batch (no repartition: an all-to-all step that only added a barrier).
    ds = ray.data.from_pandas([df.iloc[i:i + cfg.batch_size] for i in range(0, len(df), cfg.batch_size)])
    ds = ds.map_batches(decode_batch, batch_format="pandas", batch_size=cfg.batch_size)
    return ds.map_batches(EmbedActor, fn_constructor_kwargs={"cfg": asdict(cfg), "threads": threads},
                          batch_format="pandas", batch_size=cfg.batch_size,
                          compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0)


def embedder_ready(cfg: CleanConfig) -> None:
    """Before any embedding actor starts (and before clean says it embeds): the open_clip weights are in the
    local cache, or a user's factory builds and embeds one image. Offline, a bad tag or a factory of the wrong
    shape: one line here, not failing actors retried for a minute, each with its traceback."""
    from .embedders import fetch_pretrained, local_dir_choice

    fetch_pretrained(cfg)
    if cfg.embedder:
        check_embedder(cfg)
    elif cfg.model.startswith("local-dir:"):
        choice = local_dir_choice(cfg.model[len("local-dir:"):])
        if choice:
            say(f"clean: {choice}")


def embed_with_ray(rows: "pd.DataFrame", cfg: CleanConfig) -> "pd.DataFrame":
    """Embed ``rows`` (path, label, sha256) with the Ray Data pipeline; returns one row per input row.
    Call ``embedder_ready`` first."""
    from .embedders import LOAD_FAILED

    import pandas as pd

    try:
        frames, progress = [], Progress("clean", len(rows), "images embedded")
        with quiet_stderr("the embedding pipeline", python_too=False):  # Ray's C++ line about the actor pool
            for batch in embedding_dataset(rows, cfg).iter_batches(batch_format="pandas", batch_size=None):
                frames.append(batch)
                progress.add(len(batch))
        return pd.concat(frames, ignore_index=True)
    except Exception as err:  # the actors could not build the embedder (offline, bad tag): say so in one line
        inner = inner_error(err)
        if inner is not None:  # whole (a line's cut lost a state_dict mismatch's detail: round 45)
            raise SpeciesfamError(str(inner)) from err
        reason = next((line for line in reversed(str(err).splitlines()) if LOAD_FAILED in line), None)
        if reason is not None:
            raise SpeciesfamError(reason[reason.index(LOAD_FAILED):]) from err
        if cfg.embedder:  # a user's embedder failed on the images: its error, in one line (the traceback: the log)
            from ..lines import error_text

            logging.getLogger(__name__).info("the embedder failed:", exc_info=True)
            raise SpeciesfamError(f"--embedder {cfg.embedder} failed while embedding: {error_text(err)}") from None
        raise


def _embed_one(cfg: dict) -> None:
    embedder = load_embedder(CleanConfig(**cfg))
    checked_vectors(embedder.embed([np.full((32, 32, 3), 128, np.uint8)]), 1, embedder.model_id)


def check_embedder(cfg: CleanConfig) -> None:
    """Build the user's ``module:factory`` embedder in one Ray task and embed one image with it; a factory that
    fails, or whose encode does not give one vector per image, stops clean here with one line."""
    import ray

    from ..raycluster import init_ray

    init_ray()
    try:
        ray.get(ray.remote(num_cpus=1, max_retries=0)(_embed_one).remote(asdict(cfg)))
    except ray.exceptions.RayError as err:  # a task error, or its worker died (the factory exited)
        from ..lines import error_text

        raise SpeciesfamError(f"--embedder {cfg.embedder}: {error_text(err)}") from None


def iter_plain(rows: "pd.DataFrame", cfg: CleanConfig):
    """The same work in one process without Ray, one batch at a time (benchmark baseline, equivalence tests)."""
    embedder = load_embedder(cfg)
    for start in range(0, len(rows), cfg.batch_size):
        chunk = rows[["path", "label", "sha256"]].iloc[start:start + cfg.batch_size]
        yield embed_frame(embedder, decode_batch(chunk))


def embed_plain(rows: "pd.DataFrame", cfg: CleanConfig) -> "pd.DataFrame":
    import pandas as pd

    return pd.concat(list(iter_plain(rows, cfg)), ignore_index=True)


def catalogued_at(workdir: str) -> float:
    """When the run's catalog started reading files (seconds since the epoch; its end for records older than
    ``started_at``; 0 when it cannot be told: every file is hashed). The record's UTC offset is read: a run
    catalogued in another time zone took a cutoff hours off (same-size replacements went unhashed)."""
    from datetime import datetime

    from .. import stages

    try:
        rec = stages.load(workdir, "catalog") or {}
        return datetime.strptime(rec.get("started_at") or rec["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (KeyError, TypeError, ValueError, SpeciesfamError):
        return 0.0


def changed_since_catalog(rows: "pd.DataFrame", since: float) -> dict[str, str]:
    """Local files of ``rows`` (path, sha256, bytes) gone, or no longer holding the bytes catalog hashed: path ->
    reason. A stat each; a file is hashed again only when its size differs or it was modified after ``since``."""
    import hashlib

    errors = {}
    for path, sha256, size in zip(rows["path"], rows["sha256"], rows.get("bytes", [None] * len(rows))):
        if storage.is_remote(path):
            continue
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not os.path.isfile(path):
            errors[path] = "cannot read file: it no longer exists (it did when catalogued)"
        elif st.st_size != size or st.st_mtime >= since:
            try:
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                same = digest.hexdigest() == sha256
            except OSError as err:
                errors[path] = pathtext.read_error(err, path)
                continue
            if not same:
                errors[path] = changed_reason(sha256)
    return errors


def cached_embeddings(workdir: str, rows: "pd.DataFrame", cfg: CleanConfig) -> "pd.DataFrame":
    """Embeddings for ``rows``: those already in RUN/embeddings.parquet for this model, these bytes and this
    decode path are reused, only the rest are computed; the union is written back."""
    import pandas as pd

    from .images import DECODER

    uri = layout.path(workdir, layout.EMBEDDINGS)
    mid = model_id(cfg)
    empty = pd.DataFrame(columns=EMBEDDING_COLUMNS)
    try:
        old = storage.read_table(uri) if storage.exists(uri) else empty
        lacking = sorted(set(EMBEDDING_COLUMNS) - {"decoder"} - set(old.columns))  # decoder: older cleans wrote none
        why = f"lacks column(s) {lacking}" if lacking else ""
    except SpeciesfamError as err:  # damaged (a disk that filled, a copy cut short): a cache, so embedded anew
        why = f"cannot be read ({type(err.__cause__ or err).__name__})"
    if why:  # another file of that name too (a traceback: round 49)
        say(f"clean: {uri} {why}; it is a cache: every image is embedded again and it is written anew")
        old = empty
    held = len(old)
    base, _ = split_id(mid)
    reweighted = int(old["model_id"].map(lambda m: split_id(m)[0] == base and m != mid).sum())
    old = old[old["model_id"] == mid].drop_duplicates("sha256")
    # never an empty or null vector (an older clean could cache an empty one; a null one was a traceback: round 50)
    old = old[old["embedding"].map(lambda v: isinstance(v, (list, tuple, np.ndarray)) and len(v) > 0).astype(bool)]
    if old["embedding"].map(len).nunique() > 1:  # one model gives one length: a mix is a damaged or edited file
        say(f"clean: {uri} holds vectors of {old['embedding'].map(len).nunique()} lengths for {mid}; it is a cache: "
            "every image is embedded again and it is written anew")
        old = old.iloc[:0]
    width = _recorded_width(workdir, mid)
    if width and len(old) and len(old["embedding"].iloc[0]) != width:  # every image cached: nothing embeds to show
        say(f"clean: {uri} holds vectors of {len(old['embedding'].iloc[0])} numbers, {mid} gave {width} when clean "
            "last ran; it is a cache: every image is embedded again and it is written anew")  # (round 53)
        old = old.iloc[:0]
    decoded = old["decoder"] if "decoder" in old else pd.Series(1, old.index)  # unstamped: the first decode path
    older = int(rows["sha256"].isin(old.loc[decoded.ne(DECODER), "sha256"]).sum())
    old = old[decoded.eq(DECODER)]
    todo = rows[~rows["sha256"].isin(old["sha256"])]
    check = ""
    if todo.empty and len(old) and width is None:  # no record of the length: one image embedded shows it (round 54)
        todo = rows[rows["sha256"].isin(old["sha256"])].head(1)
        old = old[~old["sha256"].isin(todo["sha256"])]
        check = f"; no record of the vectors' length {mid} gives: one embedded again to check the cache"
    # a cached image's file must still be there and hold the bytes catalog hashed (local files), or the model
    # would train on another image than the one embedded, or on nothing
    errors = changed_since_catalog(rows[rows["sha256"].isin(old["sha256"])], catalogued_at(workdir))
    cached = f"{len(rows) - len(todo)} cached" + (f", {len(errors)} of them gone or changed since catalog" if errors
                                                  else "")  # a cached vector whose file changed is not usable
    if len(todo):
        again = f", {older} more cached by an older decode path: embedded again" if older else ""
        if reweighted:  # the same model named, its local weights files (a factory's module) since replaced
            where = cfg.model[len("local-dir:"):] if cfg.model.startswith("local-dir:") else \
                embedder_source(cfg.embedder) if cfg.embedder else cfg.pretrained
            again += f", {reweighted} cached with other {'code' if cfg.embedder else 'weights'} than {where} now " \
                     "holds: embedded again"
        embedder_ready(cfg)  # its failure is the first line: not after 'embedding N images'
        say(f"clean: embedding {lines.counted(len(todo), 'image')} with {mid} ({cached}{again}{check})")
        new = embed_with_ray(todo, cfg)
        failed = new[new["error"] != ""]
        errors.update(zip(failed["path"], failed["error"]))
        new = new[new["error"] == ""].assign(decoder=DECODER)[EMBEDDING_COLUMNS].copy()
        for other in sorted(set(new["model_id"]) - {mid}):  # an actor read the files after they were replaced
            weights_changed(mid, other)
        new["embedding"] = [np.asarray(v, np.float32) for v in new["embedding"]]  # stored as float32 lists
        old = _same_length(old, new, rows, cfg, uri, errors)
        old = pd.concat([old, new], ignore_index=True)
        storage.write_table(old, uri)
    else:  # the cache holds every one (an image gone or changed since catalog is said by clean, with what follows)
        gone = f", {len(errors)} of them gone or changed since catalog" if errors else ""
        say(f"clean: all {len(rows)} embeddings cached in {uri}{gone}")
        if len(old) < held:  # it held vectors of another model too: a probe search refuses those (round 73)
            storage.write_table(old, uri)
    by_hash = old.set_index("sha256")["embedding"]
    out = rows[rows["sha256"].isin(by_hash.index) & ~rows["path"].isin(errors)].copy()
    out["embedding"] = out["sha256"].map(by_hash)
    out.attrs["decode_errors"] = errors
    out.attrs["model_id"] = mid  # what clean records: the weights these embeddings came from
    return out


def _recorded_width(workdir: str, mid: str) -> int | None:
    """How many numbers model ``mid`` gave per image when clean last ran with it (its record), else None."""
    from .. import stages

    try:
        rec = stages.load(workdir, "clean") or {}
    except SpeciesfamError:  # damaged: said where clean's record is read
        return None
    width = (rec.get("summary") or {}).get("embedding_width")
    return width if (rec.get("config") or {}).get("model_id") == mid and isinstance(width, int) else None


def _same_length(old: "pd.DataFrame", new: "pd.DataFrame", rows: "pd.DataFrame", cfg: CleanConfig, uri: str,
                 errors: dict[str, str]) -> "pd.DataFrame":
    """The cached rows ``old``, or, when the model now gives vectors of another length than they hold (a cache
    written by hand or by another model under this name), those rows embedded again (a failure into
    ``errors``)."""
    if old.empty or new.empty or len(old["embedding"].iloc[0]) == len(new["embedding"].iloc[0]):
        return old
    say(f"clean: {uri} holds vectors of {len(old['embedding'].iloc[0])} numbers, {model_id(cfg)} gives "
        f"{len(new['embedding'].iloc[0])}; it is a cache: its {lines.counted(len(old), 'image')} are embedded again")
    again = embed_with_ray(rows[rows["sha256"].isin(old["sha256"]) & ~rows["path"].isin(errors)], cfg)
    failed = again[again["error"] != ""]
    errors.update(zip(failed["path"], failed["error"]))
    again = again[again["error"] == ""].copy()
    again["embedding"] = [np.asarray(v, np.float32) for v in again["embedding"]]
    return again.assign(decoder=new["decoder"].iloc[0])[EMBEDDING_COLUMNS]


def weights_changed(mid: str, now: str) -> None:
    """Raise when the local weights files of model ``mid`` now hold others (``now``): replaced while clean ran."""
    if now != mid:
        raise SpeciesfamError(f"the {'code' if mid.startswith('custom:') else 'weights'} of {split_id(mid)[0]} "
                              f"changed while clean ran (digest {split_id(mid)[1]} "
                              f"-> {split_id(now)[1] or 'none'}): run clean again once they stay put")
