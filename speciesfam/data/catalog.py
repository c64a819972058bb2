"""Catalog stage: scan a folder per family (or a CSV/Parquet manifest) into ``RUN/manifest.parquet``.

Every input row ends with a ``status``: ``ok`` (usable, has a ``split``), ``duplicate`` (same bytes as
an earlier row; it takes that row's split so no image sits in two splits), ``unreadable`` (``reason`` says
why) or ``too_small`` (its family has fewer than ``min_images`` usable images, or with ``group_split``
fewer than 3 groups, and cannot be split).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .. import storage
from ..config import CatalogConfig
from .images import DecodeError, probe

if TYPE_CHECKING:
    import pandas as pd

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST_COLUMNS = ["path", "label", "group", "sha256", "width", "height", "mode", "bytes", "status",
                    "reason", "duplicate_of", "split"]
SPLITS = ("train", "val", "test")


def read_source(source: str) -> "pd.DataFrame":
    """Rows (path, label, group) from a folder per family or a CSV/Parquet manifest.

    Manifest paths may be relative to the manifest's folder; ``group`` (e.g. species) is optional.
    """
    import pandas as pd

    if source.endswith((".csv", ".parquet")):
        df = storage.read_table(source)
        missing = {"path", "label"} - set(df.columns)
        if missing:
            raise ValueError(f"{source}: manifest lacks column(s) {sorted(missing)}; it needs 'path' and "
                             f"'label' (and optionally 'group'); found {list(df.columns)}")
        base = source.rsplit("/", 1)[0] if "/" in source else "."
        df["path"] = [p if storage.is_remote(p) or p.startswith("/") else storage.join(base, p)
                      for p in df["path"].astype(str)]
        if "group" not in df.columns:
            df["group"] = None
        return df[["path", "label", "group"]].astype({"label": str})
    if not storage.exists(source):
        raise FileNotFoundError(f"{source} does not exist: give a folder with one subfolder per family, "
                                "or a .csv/.parquet manifest with 'path' and 'label' columns")
    root = storage.filesystem(source)[1] if not storage.is_remote(source) else source.rstrip("/")
    rows = []
    for path in storage.list_files(source):
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path
        parts = rel.split("/")
        if len(parts) >= 2 and parts[-1].lower().endswith(IMAGE_SUFFIXES) and not parts[-1].startswith("."):
            rows.append({"path": path, "label": parts[0], "group": None})
    if not rows:
        raise ValueError(f"{source}: found no images in subfolders (expected FAMILY/IMAGE with suffix in "
                         f"{IMAGE_SUFFIXES})")
    return pd.DataFrame(rows)


def _inspect(path: str) -> dict:
    try:
        data = storage.read_bytes(path)
    except OSError as err:
        return {"status": "unreadable", "reason": f"cannot read file: {err}"}
    info = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    try:
        info.update(probe(data), status="ok", reason="")
    except DecodeError as err:
        info.update(status="unreadable", reason=str(err))
    return info


def _assign_splits(df: "pd.DataFrame", cfg: CatalogConfig) -> "pd.Series":
    """Per family, shuffle units (images, or groups when ``group_split``) and cut test/val/train."""
    split = np.full(len(df), None, dtype=object)
    rng = np.random.default_rng(cfg.seed)
    for _, fam in df.groupby("label", sort=True):
        units = fam["group"].fillna(fam["path"]) if cfg.group_split else fam["path"]
        order = rng.permutation(units.unique())
        sizes = units.value_counts()
        n = len(fam)
        want = {"test": max(1, round(n * cfg.test_fraction)), "val": max(1, round(n * cfg.val_fraction))}
        unit_split, filled = {}, {"test": 0, "val": 0}
        for u in order:
            target = next((s for s in ("test", "val") if filled[s] < want[s]), "train")
            unit_split[u] = target
            if target != "train":
                filled[target] += sizes[u]
        split[df.index.get_indexer(fam.index)] = units.map(unit_split).to_numpy()
    return split


def build_manifest(source: str, cfg: CatalogConfig | None = None, workers: int = 16) -> "pd.DataFrame":
    """Scan ``source`` and return the manifest DataFrame (columns ``MANIFEST_COLUMNS``)."""
    import pandas as pd
    from tqdm.auto import tqdm

    cfg = cfg or CatalogConfig()
    cfg.validate()
    df = read_source(source).drop_duplicates("path").sort_values("path").reset_index(drop=True)
    with ThreadPoolExecutor(workers) as pool:
        infos = list(tqdm(pool.map(_inspect, df["path"]), total=len(df), desc="catalog", unit="img"))
    df = pd.concat([df, pd.DataFrame(infos)], axis=1)
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df["duplicate_of"] = None
    ok = df["status"] == "ok"
    first = df[ok].groupby("sha256")["path"].transform("first")
    dup = ok & (df["path"] != first.reindex(df.index))
    df.loc[dup, "duplicate_of"] = first[dup]
    df.loc[dup, "status"] = "duplicate"
    df.loc[dup, "reason"] = "same bytes as duplicate_of"
    usable = df["status"] == "ok"
    counts = df[usable].groupby("label").size()
    small = usable & df["label"].map(counts).lt(cfg.min_images)
    df.loc[small, "status"] = "too_small"
    df.loc[small, "reason"] = f"family has fewer than min_images={cfg.min_images} usable images"
    if cfg.group_split:  # a group-disjoint split needs a group for each of train, val and test
        ok = df[df["status"] == "ok"]
        units = ok["group"].fillna(ok["path"]).groupby(ok["label"]).nunique()
        few = (df["status"] == "ok") & df["label"].map(units).lt(3)
        df.loc[few, "status"] = "too_small"
        df.loc[few, "reason"] = ("group_split needs >= 3 groups (e.g. species) per family; this family has " +
                                 df.loc[few, "label"].map(units).astype(str))
    ok = df["status"] == "ok"
    df["split"] = None
    df.loc[ok, "split"] = _assign_splits(df[ok], cfg)
    split_of = dict(zip(df.loc[ok, "path"], df.loc[ok, "split"]))
    dup = df["status"] == "duplicate"
    df.loc[dup, "split"] = df.loc[dup, "duplicate_of"].map(split_of)
    return df[MANIFEST_COLUMNS]


def class_weights(manifest: "pd.DataFrame", split: str = "train") -> dict[str, float]:
    """Balanced class weights n / (k * n_c) over the usable rows of ``split``."""
    counts = manifest[(manifest["status"] == "ok") & (manifest["split"] == split)]["label"].value_counts()
    return {lab: float(counts.sum() / (len(counts) * c)) for lab, c in sorted(counts.items())}


def report(manifest: "pd.DataFrame", source: str) -> str:
    """A short markdown report of what the catalog found."""
    status = manifest["status"].value_counts().to_dict()
    ok = manifest[manifest["status"] == "ok"]
    table = ok.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(SPLITS), fill_value=0)
    weights = class_weights(manifest)
    lines = [f"# Catalog of {source}", "", f"- rows: {len(manifest)}",
             *(f"- {k}: {v}" for k, v in sorted(status.items())),
             f"- families: {ok['label'].nunique()}", "", "| family | train | val | test | class weight |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {lab} | {r['train']} | {r['val']} | {r['test']} | {weights.get(lab, 0):.3f} |"
              for lab, r in table.iterrows()]
    bad = manifest[manifest["status"].isin(["unreadable", "too_small"])]
    if len(bad):
        lines += ["", "## Not used", "", "| path | status | reason |", "|---|---|---|"]
        lines += [f"| {r.path} | {r.status} | {r.reason} |" for r in bad.itertuples()]
    return "\n".join(lines) + "\n"


def run_catalog(source: str, workdir: str, cfg: CatalogConfig | None = None) -> "pd.DataFrame":
    """Catalog stage: write RUN/manifest.parquet, RUN/unreadable.csv and RUN/catalog.md."""
    manifest = build_manifest(source, cfg)
    storage.write_table(manifest, storage.join(workdir, "manifest.parquet"))
    bad = manifest[manifest["status"] == "unreadable"][["path", "label", "reason"]]
    storage.write_table(bad, storage.join(workdir, "unreadable.csv"))
    storage.write_text(storage.join(workdir, "catalog.md"), report(manifest, source))
    from dataclasses import asdict

    from .. import stages

    stages.finish(workdir, "catalog", config={"source": source, **asdict(cfg or CatalogConfig())},
                  summary={"rows": len(manifest), "status": manifest["status"].value_counts().to_dict()})
    return manifest


def load_manifest(uri: str, stage: str = "speciesfam catalog SOURCE --workdir RUN") -> "pd.DataFrame":
    """Read a manifest and check its columns; a missing file says which stage writes it."""
    df = storage.read_table(uri, stage_hint=stage)
    missing = [c for c in ("path", "label", "status", "split") if c not in df.columns]
    if missing:
        raise ValueError(f"{uri}: missing column(s) {missing}; was it written by `speciesfam catalog`?")
    return df
