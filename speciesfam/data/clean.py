"""Clean stage: Ray Data decodes images in parallel tasks, embeds them in a pool of embedder actors (one
per GPU, fp16; CPU actors when there is no GPU), then flags per-family outliers.

Reads ``RUN/manifest.parquet``; writes ``RUN/embeddings.parquet`` (reused on re-runs for the same model
and image bytes), ``RUN/clean_manifest.parquet``, ``RUN/removed.csv``, ``RUN/gallery/*.png`` and
``RUN/clean.md`` and ``RUN/class_counts.png``. Input images are never moved or deleted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from .. import storage
from ..config import CleanConfig
from .catalog import load_manifest
from .embedders import load_embedder, model_id
from .images import DecodeError, decode_rgb
from .outliers import OTHER_PROMPTS, PHOTO_PROMPTS, plan_removals, score_families, zero_shot_other

if TYPE_CHECKING:
    import pandas as pd

EMBEDDING_COLUMNS = ["path", "label", "sha256", "embedding", "model_id"]


def decode_batch(batch: "pd.DataFrame", size: int | None = None) -> "pd.DataFrame":
    """Ray Data task: read and decode each path (resized to ``size`` x ``size`` if given); failures go to the
    ``error`` column, never drop a row."""
    images, errors = [], []
    for path in batch["path"]:
        try:
            images.append(decode_rgb(storage.read_bytes(path), size=size))
            errors.append("")
        except (DecodeError, OSError) as err:
            images.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(str(err) or type(err).__name__)
    out = batch.copy()
    out["image"] = images
    out["error"] = errors
    return out


class EmbedActor:
    """Ray Data actor: holds one embedder replica, applies its own transform and encodes a batch."""

    def __init__(self, cfg: dict, threads: int = 0):
        if threads:  # CPU actor: use the cores Ray's 1-CPU reservation would limit it to one of
            from .._lazy import torch_modules

            torch_modules()[0].set_num_threads(threads)
        self.embedder = load_embedder(CleanConfig(**cfg))

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        return embed_frame(self.embedder, batch)


def embed_frame(embedder, batch: "pd.DataFrame") -> "pd.DataFrame":
    """Embed the decoded ``image`` column of a batch (rows with an ``error`` get an empty embedding)."""
    from PIL import Image

    good = [i for i, e in enumerate(batch["error"]) if not e]
    vecs: list = [[] for _ in range(len(batch))]
    if good:
        x = np.stack([embedder.preprocess(Image.fromarray(batch["image"].iloc[i])) for i in good])
        for i, v in zip(good, embedder.encode(x)):
            vecs[i] = v.astype(np.float32)
    out = batch.drop(columns=["image"])
    out["embedding"] = vecs
    out["model_id"] = embedder.model_id
    return out


def embedding_dataset(rows: "pd.DataFrame", cfg: CleanConfig):
    """The Ray Data pipeline (lazy): blocks of ``batch_size`` rows -> decode -> embedder actor pool."""
    import ray

    from ..raycluster import check_shared, init_ray

    init_ray()
    check_shared(rows["path"].iloc[0], "image path")
    gpus = int(ray.cluster_resources().get("GPU", 0))
    nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
    # GPU: one actor per GPU. CPU only: up to one actor per node, leaving at least one CPU in the cluster for
    # the decode tasks that feed the actors (an actor holding every CPU deadlocked them). Each CPU actor
    # reserves 1 CPU but uses its node's cores as torch threads: Ray would otherwise limit it to one thread
    # (measured 0.45x a plain 2-thread loop).
    total_cpus = int(sum(n["Resources"]["CPU"] for n in nodes))
    actors = cfg.num_actors or (gpus if gpus else max(1, min(len(nodes), total_cpus - 1)))
    per_node = -(-actors // max(1, len(nodes)))
    threads = 0 if gpus else max(1, int(min(n["Resources"]["CPU"] for n in nodes)) // per_node)
    df = rows[["path", "label", "sha256"]].reset_index(drop=True)
    # One input block per batch (no repartition: an all-to-all step that only added a barrier).
    ds = ray.data.from_pandas([df.iloc[i:i + cfg.batch_size] for i in range(0, len(df), cfg.batch_size)])
    ds = ds.map_batches(decode_batch, batch_format="pandas", batch_size=cfg.batch_size)
    return ds.map_batches(EmbedActor, fn_constructor_kwargs={"cfg": asdict(cfg), "threads": threads},
                          batch_format="pandas", batch_size=cfg.batch_size,
                          compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if gpus else 0)


def embed_with_ray(rows: "pd.DataFrame", cfg: CleanConfig) -> "pd.DataFrame":
    """Embed ``rows`` (path, label, sha256) with the Ray Data pipeline; returns one row per input row."""
    return embedding_dataset(rows, cfg).to_pandas()


def iter_plain(rows: "pd.DataFrame", cfg: CleanConfig):
    """The same work in one process without Ray, one batch at a time (benchmark baseline, equivalence tests)."""
    embedder = load_embedder(cfg)
    for start in range(0, len(rows), cfg.batch_size):
        chunk = rows[["path", "label", "sha256"]].iloc[start:start + cfg.batch_size]
        yield embed_frame(embedder, decode_batch(chunk))


def embed_plain(rows: "pd.DataFrame", cfg: CleanConfig) -> "pd.DataFrame":
    import pandas as pd

    return pd.concat(list(iter_plain(rows, cfg)), ignore_index=True)


def cached_embeddings(workdir: str, rows: "pd.DataFrame", cfg: CleanConfig) -> "pd.DataFrame":
    """Embeddings for ``rows``: those already in RUN/embeddings.parquet for this model and these bytes are
    reused, only the rest are computed; the union is written back."""
    import pandas as pd

    uri = storage.join(workdir, "embeddings.parquet")
    mid = model_id(cfg)
    old = storage.read_table(uri) if storage.exists(uri) else pd.DataFrame(columns=EMBEDDING_COLUMNS)
    old = old[old["model_id"] == mid].drop_duplicates("sha256")
    todo = rows[~rows["sha256"].isin(old["sha256"])]
    if len(todo):
        print(f"clean: embedding {len(todo)} images with {mid} ({len(rows) - len(todo)} cached)")
        new = embed_with_ray(todo, cfg)
        failed = new[new["error"] != ""]
        if len(failed):
            print(f"clean: {len(failed)} images failed to decode: {failed['path'].tolist()[:5]}")
        new = new[new["error"] == ""][EMBEDDING_COLUMNS]
        old = pd.concat([old, new], ignore_index=True)
        storage.write_table(old, uri)
    else:
        print(f"clean: all {len(rows)} embeddings cached in {uri}")
    by_hash = old.set_index("sha256")["embedding"]
    out = rows[rows["sha256"].isin(by_hash.index)].copy()
    out["embedding"] = out["sha256"].map(by_hash)
    return out


def gallery(rows: "pd.DataFrame", out_dir: str, per_family: int, thumb: int = 96) -> list[str]:
    """One PNG per family in folder URI ``out_dir``: its most-flagged images, highest score first, removed ones
    framed in red."""
    import io

    from PIL import Image, ImageDraw

    written = []
    for fam, grp in rows.sort_values("score", ascending=False).groupby("label", sort=True):
        top = grp.head(per_family)
        sheet = Image.new("RGB", (thumb * len(top), thumb + 14), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for i, r in enumerate(top.itertuples()):
            sheet.paste(Image.fromarray(decode_rgb(storage.read_bytes(r.path), size=thumb)), (i * thumb, 14))
            if r.removed:
                draw.rectangle([i * thumb, 14, (i + 1) * thumb - 1, thumb + 13], outline=(220, 0, 0), width=3)
            draw.text((i * thumb + 2, 1), f"{r.score:.2f}{' REMOVED' if r.removed else ''}", fill=(0, 0, 0))
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
        written.append(storage.join(out_dir, f"{fam}.png"))
        storage.write_bytes(written[-1], buf.getvalue())
    return written


def _encode_prompts(cfg: dict, prompts: tuple[str, ...]) -> np.ndarray:
    embedder = load_embedder(CleanConfig(**cfg))
    if embedder.encode_text is None:
        raise ValueError(f"zero_shot needs a CLIP model with a text tower; embedder {embedder.model_id!r} has none")
    return embedder.encode_text(list(prompts))


def prompt_embeddings(cfg: CleanConfig, prompts: tuple[str, ...]) -> np.ndarray:
    """Text embeddings of ``prompts``, computed in a Ray task (the driver never imports torch)."""
    import ray

    from ..raycluster import init_ray

    init_ray()
    return ray.get(ray.remote(num_cpus=1)(_encode_prompts).remote(asdict(cfg), prompts))


def run_clean(workdir: str, cfg: CleanConfig | None = None) -> "pd.DataFrame":
    """Clean stage: embeddings, per-family outlier scores, cleaned manifest and reports. Returns the cleaned
    manifest (every catalog row, with ``status`` ``removed`` and a ``reason`` for outliers)."""
    cfg = cfg or CleanConfig()
    cfg.validate()
    manifest = load_manifest(storage.join(workdir, "manifest.parquet"))
    ok = manifest[manifest["status"] == "ok"]
    emb = cached_embeddings(workdir, ok, cfg)
    x = np.stack(emb["embedding"].to_numpy()).astype(np.float32)
    labels = emb["label"].to_numpy()
    emb["score"] = score_families(labels, x, cfg.detector)
    zs_prob = None
    if cfg.zero_shot:
        zs_prob, zs_idx = zero_shot_other(x, prompt_embeddings(cfg, PHOTO_PROMPTS + OTHER_PROMPTS), len(PHOTO_PROMPTS))
        emb["nonphoto_prob"] = zs_prob
    emb["removed"] = plan_removals(labels, emb["score"].to_numpy(), cfg.contamination, cfg.min_per_family,
                                   zs_prob, cfg.zero_shot_threshold)
    emb["detector"] = cfg.detector
    emb["reason"] = f"{cfg.detector} outlier: top {cfg.contamination:.0%} score in family"
    if zs_prob is not None:
        nonphoto = emb["removed"] & (zs_prob > cfg.zero_shot_threshold)
        emb.loc[nonphoto, "detector"] = "zero_shot"
        emb.loc[nonphoto, "reason"] = [f"zero-shot: looks like {OTHER_PROMPTS[i]!r} (p={p:.2f})"
                                       for i, p in zip(zs_idx[nonphoto], zs_prob[nonphoto])]
    cleaned = manifest.copy()
    removed = emb[emb["removed"]]
    reasons = dict(zip(removed["path"], removed["reason"]))
    hit = cleaned["path"].isin(removed["path"])
    cleaned.loc[hit, "status"] = "removed"
    cleaned.loc[hit, "reason"] = cleaned.loc[hit, "path"].map(reasons)
    lost = ok["path"][~ok["path"].isin(emb["path"])]  # decode failed at clean time (file changed since catalog)
    cleaned.loc[cleaned["path"].isin(lost), ["status", "reason"]] = ["unreadable", "failed to decode in clean"]
    cleaned["outlier_score"] = cleaned["path"].map(emb.set_index("path")["score"])
    storage.write_table(cleaned, storage.join(workdir, "clean_manifest.parquet"))
    table = removed[["path", "label", "score", "detector", "reason"]].rename(columns={"label": "family"})
    storage.write_table(table, storage.join(workdir, "removed.csv"))
    gallery(emb, storage.join(workdir, "gallery"), cfg.gallery_per_family)
    from ..plots import class_counts

    usable = lambda df: df[df["status"] == "ok"]["label"].value_counts()  # noqa: E731
    class_counts(usable(manifest), usable(cleaned), storage.join(workdir, "class_counts.png"))
    storage.write_text(storage.join(workdir, "clean.md"), clean_report(manifest, cleaned, table, cfg))
    from .. import stages

    stages.finish(workdir, "clean", config={**asdict(cfg), "model_id": model_id(cfg)},
                  summary={"status": cleaned["status"].value_counts().to_dict(), "removed": len(table)})
    return cleaned


def clean_report(before: "pd.DataFrame", after: "pd.DataFrame", removed: "pd.DataFrame", cfg: CleanConfig) -> str:
    b = before[before["status"] == "ok"]["label"].value_counts()
    a = after[after["status"] == "ok"]["label"].value_counts()
    lines = [f"# Clean: {model_id(cfg)}, detector {cfg.detector}, contamination {cfg.contamination}", "",
             f"- usable before: {int(b.sum())}, after: {int(a.sum())}, removed: {len(removed)}", "",
             "| family | before | after |", "|---|---:|---:|"]
    lines += [f"| {fam} | {b[fam]} | {a.get(fam, 0)} |" for fam in sorted(b.index)]
    lines += ["", "## Removed", "", "| path | family | score |", "|---|---|---:|"]
    lines += [f"| {r.path} | {r.family} | {r.score:.3f} |" for r in removed.itertuples()]
    return "\n".join(lines) + "\n"
