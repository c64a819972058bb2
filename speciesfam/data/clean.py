"""Clean stage: embeds the usable images (``embedding.py``: Ray Data decode tasks and a pool of embedder actors,
one per GPU), then finds three kinds of dirt on the embeddings:
per-family outliers (calibrated threshold, ``outliers.py``), label issues (cleanlab, ``label_issues.py``) and
near-duplicates (blockwise cosine search, ``near_duplicates.py``).

Reads ``RUN/manifest.parquet``; writes ``RUN/embeddings.parquet`` (reused on re-runs for the same model
and image bytes), ``RUN/clean_manifest.parquet``, ``RUN/removed.csv``, ``RUN/label_issues.csv``,
``RUN/near_duplicates.csv``, ``RUN/gallery/*.png``, ``RUN/clean.md`` and ``RUN/class_counts.png``. Input
images are never moved or deleted.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from .. import layout, lines, storage
from ..console import say
from ..markdown import twins
from ..config import CleanConfig
from ..locks import say_running
from .catalog import follow_originals, load_manifest
from .embedders import load_embedder, model_id
from .embedding import cached_embeddings, weights_changed
from . import near_duplicates as nd
from .clean_report import clean_report, lost_lines, outlier_rule
from .galleries import clear, label_issue_gallery, near_duplicate_gallery, outlier_galleries
from .label_issues import find_label_issues
from .outliers import (OTHER_PROMPTS, PHOTO_PROMPTS, centroid_z_against, plan_removals, rule_hits,
                       score_families, zero_shot_other)

if TYPE_CHECKING:
    import pandas as pd


LABEL_ISSUE = "label issue: "  # how the reason of a row removed as a label issue starts

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


def flag_outliers(emb: "pd.DataFrame", x: np.ndarray, cfg: CleanConfig) -> "pd.DataFrame":
    """Adds ``score``, ``z``, ``removed``, ``detector`` and ``reason`` columns: the outlier policy of ``cfg``."""
    labels = emb["label"].to_numpy()
    emb["score"] = score_families(labels, x, cfg.detector)
    zs_prob = zs_idx = None
    if cfg.zero_shot:
        zs_prob, zs_idx = zero_shot_other(x, prompt_embeddings(cfg, PHOTO_PROMPTS + OTHER_PROMPTS), len(PHOTO_PROMPTS))
        emb["nonphoto_prob"] = zs_prob
    emb["removed"], emb["z"] = plan_removals(
        labels, emb["score"].to_numpy(), removal=cfg.removal, outlier_z=cfg.outlier_z,
        contamination=cfg.contamination, min_keep=cfg.min_per_family, zs_prob=zs_prob,
        zs_threshold=cfg.zero_shot_threshold)
    # met the rule, yet kept so that the family keeps min_per_family rows: said, never silently "ok"
    met = rule_hits(labels, emb["score"].to_numpy(), emb["z"].to_numpy(), removal=cfg.removal,
                    outlier_z=cfg.outlier_z, contamination=cfg.contamination)
    if zs_prob is not None:
        met |= zs_prob > cfg.zero_shot_threshold
    emb["spared"] = met & ~emb["removed"].to_numpy()
    emb["detector"] = cfg.detector
    if cfg.removal == "quota":
        emb["reason"] = [f"{cfg.detector} outlier: in the top {cfg.contamination:.0%} scores of its family "
                         f"(robust z {z:.1f})" for z in emb["z"]]
    else:
        emb["reason"] = [f"{cfg.detector} outlier: robust z-score {above(z, cfg.outlier_z)} > {cfg.outlier_z:g} "
                         "within its family" for z in emb["z"]]
    if zs_prob is not None:
        nonphoto = (emb["removed"].to_numpy() | emb["spared"].to_numpy()) & (zs_prob > cfg.zero_shot_threshold)
        emb.loc[nonphoto, "detector"] = "zero_shot"
        emb.loc[nonphoto, "reason"] = [f"zero-shot: looks like {OTHER_PROMPTS[i]!r} (p={p:.2f})"
                                       for i, p in zip(zs_idx[nonphoto], zs_prob[nonphoto])]
    return emb


def label_issue_table(emb: "pd.DataFrame", x: np.ndarray, cfg: CleanConfig) -> "pd.DataFrame":
    """cleanlab's suspects, and the outlier/label-issue split between them (updates ``emb``).

    An image flagged by both the outlier policy and cleanlab is a label issue when it sits inside its suggested
    family (robust z-score there <= ``outlier_z``): it is kept (reported) unless ``drop_label_issues``.
    Otherwise it fits no family: it stays an outlier and leaves the label-issue table."""
    import pandas as pd

    if not cfg.label_issues:
        return find_label_issues(np.array([]), np.array([]), np.zeros((0, 1)))
    issues = find_label_issues(emb["path"].to_numpy(), emb["label"].to_numpy(), x, folds=cfg.label_issue_folds,
                               filter_by=cfg.label_issue_filter)
    row = pd.Index(emb["path"]).get_indexer(issues["path"])
    both = emb["removed"].to_numpy()[row] & (emb["detector"].to_numpy()[row] != "zero_shot")
    fits = centroid_z_against(emb["label"].to_numpy(), x, row, issues["suggested_family"].to_numpy())
    relabel = both & (fits <= cfg.outlier_z)
    emb.loc[emb.index[row[relabel]], ["removed", "reason"]] = [False, ""]
    attrs = dict(issues.attrs)
    issues = issues[~both | relabel].reset_index(drop=True)
    issues["rank"] = np.arange(1, len(issues) + 1)
    # the outlier rule's, kept as label issues: said in clean.md (unless --drop-label-issues then removes them)
    issues.attrs.update(attrs, outliers_kept=emb["path"].to_numpy()[row[relabel]].tolist())
    return issues


def drop_label_issues(emb: "pd.DataFrame", issues: "pd.DataFrame", min_keep: int) -> dict[str, str]:
    """Mark label issues removed (most suspicious first), never taking a family below ``min_keep``; returns
    path -> reason of those the floor keeps (they were status ok with no reason, unsaid: round 39). One removed
    already (a zero-shot non-photo) is left as it is: it was said 'kept, though label issue' in removed.csv."""
    kept = emb[~emb["removed"]].groupby("label").size().to_dict()
    row_of = {p: i for i, p in zip(emb.index, emb["path"])}
    floor_kept: dict[str, str] = {}
    alike = twins(emb["label"])  # 'Café' composed and decomposed: as JSON strings, or the reason names one twice
    fam = lambda name: json.dumps(name) if name in alike else name  # noqa: E731 (round 48)
    for r in issues.itertuples():
        if emb.at[row_of[r.path], "removed"]:  # taken out already (zero-shot: not a photo): its reason stands
            continue
        why = (f"{LABEL_ISSUE}given {fam(r.given_family)}, looks like {fam(r.suggested_family)} (self-confidence "
               f"{r.self_confidence:.2f}, rank {r.rank})")
        if kept[r.given_family] <= min_keep:
            floor_kept[r.path] = why
            continue
        kept[r.given_family] -= 1
        emb.loc[row_of[r.path], ["removed", "detector", "reason"]] = [True, "cleanlab", why]
    return floor_kept


def near_duplicates(emb: "pd.DataFrame", x: np.ndarray, cleaned: "pd.DataFrame", embedded: "pd.Series",
                    cfg: CleanConfig) -> tuple["pd.DataFrame", dict]:
    """Find near-duplicate groups, move each group into one split in ``cleaned`` (exact duplicates follow
    their original) and with ``dedupe="near"`` keep one image per group. ``embedded``: the rows of ``cleaned``
    that were usable before cleaning (unique paths; the rows ``emb`` holds). Returns the pair table and counts."""
    import pandas as pd

    paths, labels = emb["path"].to_numpy(), emb["label"].to_numpy()
    i, j, sim = nd.similar_pairs(x, cfg.near_threshold)
    groups = nd.group_ids(len(emb), i, j)
    pairs = nd.pair_table(paths, labels, i, j, sim, groups)
    rows = np.flatnonzero(embedded.to_numpy())
    at = rows[pd.Index(cleaned["path"].to_numpy()[rows]).get_indexer(paths)]  # embedded rows in the manifest
    cleaned["near_duplicate_group"] = -1
    cleaned.iloc[at, cleaned.columns.get_loc("near_duplicate_group")] = groups
    splits = cleaned["split"].to_numpy()[at]
    target = nd.group_split(groups, splits)
    moved = 0
    for pos, g, old in zip(at, groups, splits):
        if g >= 0 and target[g] != old:
            cleaned.iloc[pos, cleaned.columns.get_loc("split")] = target[g]
            moved += 1
    follow_originals(cleaned, embedded)
    dropped = 0
    if cfg.dedupe == "near" and len(pairs):
        ok = (cleaned["status"].to_numpy()[at] == layout.OK)
        live = np.where(ok, groups, -1)  # choose among rows still usable
        pixels = (cleaned["width"].fillna(0) * cleaned["height"].fillna(0)).to_numpy()[at]
        left = cleaned.loc[cleaned["status"] == layout.OK, "label"].value_counts().to_dict()
        for r, k, s in nd.copies(live, i, j, sim, pixels, paths, labels):
            if left[labels[r]] > cfg.min_per_family:  # never below min_per_family: keep the copy
                left[labels[r]] -= 1
                cleaned.iloc[at[r], [cleaned.columns.get_loc(c) for c in ("status", "reason", "duplicate_of")]] = [
                    layout.DUPLICATE, f"near-duplicate of {paths[k]} (group {live[r]}, cosine {s:.3f})", paths[k]]
                dropped += 1
    counts = {"pairs": len(pairs), "groups": int(groups.max() + 1) if len(pairs) else 0,
              "moved_to_group_split": moved, "dropped": dropped,
              "across_families": int((pairs["family_a"] != pairs["family_b"]).sum()) if len(pairs) else 0}
    return pairs, counts


def above(z: float, limit: float) -> str:
    """``z`` with the fewest decimals (one at least) that still show it above ``limit`` (5.04 read '5.0 > 5')."""
    for digits in range(1, 7):
        text = f"{z:.{digits}f}"
        if not z > limit or float(text) > limit:
            return text
    return repr(float(z))


def run_clean(workdir: str, cfg: CleanConfig | None = None) -> "pd.DataFrame":
    """Clean stage: embeddings, outliers, label issues, near-duplicates, the cleaned manifest and reports.

    Returns the cleaned manifest: every catalog row; outliers (and label issues with ``drop_label_issues``)
    get status ``removed``, dropped near-duplicates status ``duplicate``, each with a ``reason``."""
    from .. import stages
    from ..errors import SpeciesfamError

    cfg = cfg or CleanConfig()
    cfg.validate()
    read = stages.check_upstream(workdir, "clean")
    stages.refuse_folders_in_place(workdir, "clean")
    say_running(workdir, "clean")
    manifest = load_manifest(layout.path(workdir, layout.MANIFEST))
    ok = manifest[manifest["status"] == layout.OK]
    if not len(ok):
        raise SpeciesfamError(f"{layout.path(workdir, layout.MANIFEST)} has no usable image (status ok; "
                              f"{len(manifest)} rows): see catalog.md for why, fix the images, then re-run "
                              f"`speciesfam catalog`")
    emb = cached_embeddings(workdir, ok, cfg)
    errors, mid = emb.attrs["decode_errors"], emb.attrs["model_id"]
    emb = emb.reset_index(drop=True)
    if not len(emb):
        raise SpeciesfamError(f"none of the {len(ok)} usable images of {layout.path(workdir, layout.MANIFEST)} "
                              f"could be decoded now (the first: {next(iter(errors.values()), '?')}): they changed since "
                              f"catalog; fix them, then {stages.rerun(workdir, 'catalog')}")
    if errors:  # clean.md lists them once clean is done (a failed clean leaves the last one's: round 70)
        say(f"clean: {lines.counted(len(errors), 'image')} gone, changed or failing to decode since catalog (now "
            f"unreadable, see clean.md): {lines.some(errors)}")
    x = np.stack(emb["embedding"].to_numpy()).astype(np.float32)
    emb = flag_outliers(emb, x, cfg)
    issues = label_issue_table(emb, x, cfg)
    outliers = int(emb["removed"].sum())
    issue_kept = drop_label_issues(emb, issues, cfg.min_per_family) if cfg.drop_label_issues else {}
    cleaned = manifest.copy()
    removed = emb[emb["removed"]]
    # Only the usable rows were embedded: a manifest may list the same path again as a duplicate or conflict row,
    # which keeps its own status.
    usable = cleaned["status"] == layout.OK
    hit = usable & cleaned["path"].isin(removed["path"])
    cleaned.loc[hit, "status"] = layout.REMOVED_STATUS
    cleaned.loc[hit, "reason"] = cleaned.loc[hit, "path"].map(dict(zip(removed["path"], removed["reason"])))
    spared = emb[emb["spared"] & ~emb["removed"]]  # (label issues dropped since are removed)
    kept = usable & cleaned["path"].isin(spared["path"])
    # what the rules took and the floor kept: an outlier, a label issue --drop-label-issues would remove, or both
    whys = dict(zip(spared["path"], spared["reason"]))
    for path, why in issue_kept.items():
        whys[path] = f"{whys[path]}; {why}" if path in whys else why
    floor_kept = usable & cleaned["path"].isin(list(whys))
    cleaned.loc[floor_kept, "reason"] = cleaned.loc[floor_kept, "path"].map(whys).map(
        lambda why: f"kept, though {why}: --min-per-family {cfg.min_per_family} keeps that many of its family")
    lost = usable & ~cleaned["path"].isin(emb["path"])  # decode failed at clean time (file changed since catalog)
    cleaned.loc[lost, "status"] = layout.UNREADABLE_STATUS
    cleaned.loc[lost, "reason"] = [lost_reason(errors.get(p, ""), workdir) for p in cleaned.loc[lost, "path"]]
    by_path = emb.set_index("path")
    cleaned["outlier_score"] = cleaned["path"].map(by_path["score"])
    cleaned["outlier_z"] = cleaned["path"].map(by_path["z"])
    cleaned["label_issue"] = cleaned["path"].isin(issues["path"])
    cleaned["suggested_family"] = cleaned["path"].map(dict(zip(issues["path"], issues["suggested_family"])))
    # an outlier of its family kept as a label issue (it fits its suggested one): ok with no reason, as any good
    # image, though its z-score reached 4243 (round 62): its reason says so, and what removes it
    relabel = (cleaned["status"] == layout.OK) & cleaned["path"].isin(issues.attrs.get("outliers_kept", [])) & \
        (cleaned["reason"].fillna("") == "")
    cleaned.loc[relabel, "reason"] = [
        f"kept as a label issue: an outlier of its family (robust z-score {z:.1f}) that fits "
        f"{lines.quoted(s, None)}: fix its label, or --drop-label-issues removes it"
        for z, s in zip(cleaned.loc[relabel, "outlier_z"], cleaned.loc[relabel, "suggested_family"])]
    pairs, dups = near_duplicates(emb, x, cleaned, usable, cfg)
    weights_changed(mid, model_id(cfg))  # replaced while clean ran: its outputs would name other weights
    storage.write_table(cleaned, layout.path(workdir, layout.CLEAN_MANIFEST))
    table = removed_table(emb, cleaned)
    storage.write_table(table, layout.path(workdir, layout.REMOVED))
    storage.write_table(issues, layout.path(workdir, layout.LABEL_ISSUES))
    storage.write_table(pairs, layout.path(workdir, layout.NEAR_DUPLICATES))
    gallery_dir = layout.path(workdir, layout.GALLERY)
    clear(gallery_dir)
    outlier_galleries(emb, gallery_dir, cfg.gallery_per_family,
                      label_issues=frozenset(cleaned.loc[relabel, "path"]))
    label_issue_gallery(issues, emb, gallery_dir)
    near_duplicate_gallery(pairs, gallery_dir)
    from ..plots import class_counts

    families = lambda df: df[df["status"] == layout.OK]["label"].value_counts()  # noqa: E731
    class_counts(families(manifest), families(cleaned), layout.path(workdir, layout.CLASS_COUNTS))
    summary = {"status": cleaned["status"].value_counts().to_dict(), "removed": int((cleaned["status"] == layout.REMOVED_STATUS).sum()),
               "outlier_rule": outlier_rule(cfg), "outliers_removed": outliers,
               # kept: not removed since by --drop-label-issues (they were said kept, though in removed.csv)
               "outliers_kept_as_label_issues": int((emb["path"].isin(issues.attrs.get("outliers_kept", []))
                                                     & ~emb["removed"]).sum()),
               # each image once: an outlier that is also a label issue the floor keeps counts as the latter
               "outliers_kept_by_floor": int((kept & ~cleaned["path"].isin(list(issue_kept))).sum()),
               "label_issues_kept_by_floor": len(issue_kept),
               "label_issues": len(issues), "label_issues_dropped": int((emb["detector"] == "cleanlab").sum()),
               "label_issue_folds": int(issues.attrs.get("folds", 0)),  # the folds used: capped by the smallest family
               "label_issue_left_out": int(issues.attrs.get("left_out", 0)),  # one-image families: not checked
               "near_duplicate_threshold": cfg.near_threshold, "near_duplicates": dups,
               "failed_to_decode_in_clean": int(lost.sum()),
               "embedding_width": int(len(emb["embedding"].iloc[0])),  # the cache's check (data.embedding)
               "split_lost": split_lost(manifest, cleaned)}
    summary["split_lost_cause"] = {split: lost_cause(split, set(fams), manifest, cleaned, lost)
                                   for split, fams in summary["split_lost"].items()}
    for line in lost_lines(summary, alike=twins(manifest.loc[manifest["status"] == layout.OK, "label"])):
        say(f"clean: warning: {line}; see clean.md")
    if dups["moved_to_group_split"] and cfg.random_weights:  # 91 families lost their val images (round 62)
        say(f"clean: warning: {lines.counted(dups['moved_to_group_split'], 'image')} moved split with "
            f"{lines.counted(dups['groups'], 'near-duplicate group')}, found with random weights (--pretrained none),"
            f" under which unlike images look alike: give the model's pretrained weights, or a "
            f"--near-duplicate-threshold nearer 1 than {cfg.near_threshold:g}")
    storage.write_text(layout.path(workdir, layout.CLEAN_MD), clean_report(manifest, cleaned, table, issues, pairs,
                                                                           cfg, summary))
    stages.finish(workdir, "clean", config={**asdict(cfg), "model_id": mid, "near_duplicate_threshold": cfg.near_threshold}, summary=summary,
                  built_from=read)  # the same again (its manifest too): the search stays current
    return cleaned


def lost_reason(error: str, workdir: str) -> str:
    """The reason of a usable row clean could not embed: its file changed since catalog (re-run catalog on
    ``workdir`` to take the new image: the command named), is gone, or no longer decodes."""
    from .. import stages

    if error.startswith("changed since catalog"):
        return f"{error}: {stages.rerun(workdir, 'catalog')} to take the new image"
    return "failed to decode in clean" + (f": {error}" if error else "")


def lost_cause(split: str, families: set[str], before: "pd.DataFrame", after: "pd.DataFrame",
               unreadable: "pd.Series") -> dict[str, list[str]]:
    """What took every image of ``split`` from ``families``: cause -> the families it took them from, from what
    became of each family's usable rows there (rows aligned in ``before``/``after``; ``unreadable``: rows clean
    could not decode), each cause with the setting that keeps them. A family's val rows moved with their
    near-duplicate group to train and then dropped count as moved. It named all causes for all families
    (raise --outlier-z for a family whose files were deleted; round 38)."""
    rows = (before["status"] == layout.OK) & (before["split"] == split)
    moved = rows & (after["split"] != split)
    removed = rows & (after["status"] == layout.REMOVED_STATUS)
    as_issue = after["reason"].astype(str).str.startswith(LABEL_ISSUE)  # apart: each has its own setting (round 48)
    causes = {"images gone, changed or undecodable since catalog (re-run catalog)": rows & unreadable,
              "outlier removals (raise --outlier-z, or --min-per-family)": removed & ~as_issue,
              "label-issue removals (leave out --drop-label-issues, or raise --min-per-family)": removed & as_issue,
              # a group goes whole to the split most of it is in: other fractions rarely move it (round 62)
              "near-duplicate groups moved to another split (raise --near-duplicate-threshold: each group goes "
              "whole to the split most of it was in)": moved,
              "near-duplicate drops (raise --near-duplicate-threshold, or --dedupe none)":
                  rows & ~moved & (after["status"] == layout.DUPLICATE)}
    out: dict[str, list[str]] = {}
    for cause, hit in causes.items():
        took = sorted(families & set(before.loc[hit, "label"]))
        if took:
            out[cause] = took
    return out


def split_lost(before: "pd.DataFrame", after: "pd.DataFrame") -> dict[str, list[str]]:
    """Per split: the families that had usable images in it before cleaning and have none after (with no train
    image no model learns the family; with no val or test image it counts in no score of that split)."""
    out = {}
    for split in ("train", "val", "test"):
        had = set(before.loc[(before["status"] == layout.OK) & (before["split"] == split), "label"])
        has = set(after.loc[(after["status"] == layout.OK) & (after["split"] == split), "label"])
        if had - has:
            out[split] = sorted(had - has)
    return out


def removed_table(emb: "pd.DataFrame", cleaned: "pd.DataFrame") -> "pd.DataFrame":
    """removed.csv: every row clean took out of use (outliers, dropped label issues, dropped near-duplicates)."""
    import pandas as pd

    out = cleaned[cleaned["status"].isin([layout.REMOVED_STATUS]) |
                  ((cleaned["status"] == layout.DUPLICATE) & cleaned["near_duplicate_group"].ge(0))]
    by_path = emb.set_index("path")
    det = out["path"].map(by_path["detector"]).where(out["status"] == layout.REMOVED_STATUS, "near_duplicate")
    return pd.DataFrame({"path": out["path"], "family": out["label"], "score": out["outlier_score"],
                         "z": out["outlier_z"], "detector": det, "reason": out["reason"]}).reset_index(drop=True)
