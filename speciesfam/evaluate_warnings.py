"""Which manifest a bundle was trained from, and the warnings of an evaluation whose score may be too high: splits
drawn by another catalog run, images clean took out of the run still listed, images clean moved into train."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import layout, storage
from .errors import SpeciesfamError
from .evaluate_out import bundle_folder
from .lines import counted

if TYPE_CHECKING:
    import pandas as pd


def _manifest_record(config: dict[str, Any], manifest_uri: str) -> tuple[dict, str | None, Any]:
    """What split_warning and trained_from compare: the bundle's ``trained_on`` run ids, which stage wrote the
    manifest (catalog for manifest.parquet, clean for clean_manifest.parquet, None for any other file) and that
    stage's record in the manifest's run folder (None if none; the StageOrderError when it is damaged)."""
    from . import stages
    from .errors import StageOrderError

    trained_on = (config.get("trial") or {}).get("trained_on") or {}
    wrote = {layout.CLEAN_MANIFEST: "clean", layout.MANIFEST: "catalog"}.get(os.path.basename(manifest_uri))
    if wrote is None:
        return trained_on, None, None
    try:
        return trained_on, wrote, stages.load(storage.parent(manifest_uri), wrote)
    except StageOrderError as err:
        return trained_on, wrote, err


def split_warning(config: dict[str, Any], manifest_uri: str, seen: int | None = None) -> str:
    """Why a catalog manifest's splits may not be the ones the bundle was trained on ('' when they are, or when
    unknown: a manifest outside a run folder, a bundle exported before this was recorded). ``seen``: how many of
    its rows the bundle's seen.parquet left out (None: it has none, so they may be scored)."""
    # Splits are drawn by catalog: the catalog run that drew this file's is catalog's own for manifest.parquet,
    # and the one clean read for clean_manifest.parquet (unchanged by a catalog run since, or a clean re-run)
    trained_on, wrote, record = _manifest_record(config, manifest_uri)
    if wrote is None or "catalog" not in trained_on:
        return ""
    if isinstance(record, Exception):
        return f"the splits cannot be checked against the ones this model was trained on: {record}"
    drew = record and (record["run_id"] if wrote == "catalog" else record["built_from"].get("catalog"))
    if drew and drew != trained_on["catalog"]:
        return (f"{manifest_uri}'s splits were drawn by catalog run {drew[:8]}, not by the one this model was trained "
                f"on ({trained_on['catalog'][:8]}: catalog ran again since, or this is another run folder): " + (
                    "these images may include its training images and the score may be too high" if seen is None else
                    "none of these images is one the model was trained on or chosen by (checked by content)" if not seen
                    else f"{counted(seen, 'image')} of them the model was trained on or chosen by, left out of the "
                    "score (status seen in rows.csv)"))
    return ""


def recleaned_warning(config: dict[str, Any], manifest_uri: str, bundle: str) -> str:
    """A clean_manifest.parquet of the model's catalog run written by another clean run whose usable train and val
    images are not the model's (its settings changed): it may have taken out other test images too, and the score
    is not comparable ('' otherwise; a clean run again with the same settings makes the same choices). A stricter
    re-clean dropped a hard test image and the score rose, with no word (hostile tester round 65)."""
    from .seen import SEEN, used_rows

    trained_on, wrote, record = _manifest_record(config, manifest_uri)
    seen_uri = os.path.join(bundle, SEEN)
    if wrote != "clean" or not trained_on.get("clean") or not isinstance(record, dict) or \
            record.get("run_id") == trained_on["clean"] or not os.path.exists(seen_uri) or \
            (record.get("built_from") or {}).get("catalog") != trained_on.get("catalog"):  # split_warning's case
        return ""
    import pandas as pd

    table = pd.read_parquet(seen_uri)
    model = set(table.loc[~table["copy"].astype(bool), "sha256"]) if "copy" in table else set(table["sha256"])
    rows = storage.read_table(manifest_uri)
    now = set(rows.loc[used_rows(rows), "sha256"])
    if now == model:
        return ""
    kept = counted(len(now - model), "train or val image")
    return (f"{manifest_uri} was written by clean run {record['run_id'][:8]}, not by the one this model was trained "
            f"from ({trained_on['clean'][:8]}), and chose otherwise: it keeps {kept} that run took out and took out "
            f"{len(model - now)} that it kept, so it may have taken out other test images too: this score is not "
            "comparable with the model's own (tune and export again on this clean for a model of it)")


def trained_from(config: dict[str, Any], manifest_uri: str, exact: bool = True) -> bool:
    """Whether the manifest is the one the bundle's search trained from, wherever the bundle lies (an export
    to --out elsewhere): the clean_manifest.parquet of the clean run its search read, or the manifest.parquet
    of its catalog run when it read no clean run. ``exact=False``: or the catalog manifest of that cleaned run
    (the model's splits, but clean moved or took out some images: moved_warning). A damaged record is neither
    (said by split_warning)."""
    trained_on, wrote, record = _manifest_record(config, manifest_uri)
    last = "clean" if "clean" in trained_on else "catalog"
    return (wrote == last or not exact) and wrote in trained_on and isinstance(record, dict) and \
        record.get("run_id") == trained_on[wrote]


def own_run(bundle: str, manifest_uri: str, catalog: bool) -> bool:
    """Whether the manifest is the one the run folder the bundle lies in (RUN/bundle) trained from: its
    clean_manifest.parquet, or its manifest.parquet where clean never ran. The run's manifest.parquet after
    clean still lists the images clean took out: scored into eval_SPLIT, it replaced the run's own score."""
    if not catalog or storage.is_remote(manifest_uri) or \
            os.path.realpath(storage.parent(manifest_uri)) != bundle_folder(bundle):
        return False
    return os.path.basename(manifest_uri) == layout.CLEAN_MANIFEST or \
        not os.path.exists(os.path.join(bundle_folder(bundle), layout.CLEAN_MANIFEST))


def removed_warning(bundle: str, manifest_uri: str, this_run: bool) -> str:
    """The run's catalog manifest after clean: the score counts the images clean took out ('' otherwise)."""
    folder = bundle_folder(bundle)
    if this_run or storage.is_remote(manifest_uri) or os.path.realpath(manifest_uri) != \
            os.path.join(folder, layout.MANIFEST) or not os.path.exists(os.path.join(folder, layout.CLEAN_MANIFEST)):
        return ""
    return (f"{manifest_uri} still lists the images clean took out of the run; the run's own score (the one the "
            f"report shows) is with --manifest {os.path.join(os.path.dirname(manifest_uri), layout.CLEAN_MANIFEST)}")


def moved_warning(manifest_uri: str, rows: "pd.DataFrame", split: str) -> str:
    """A run's manifest.parquet lists each image in the split catalog drew; clean moves near-duplicate groups
    into one split, often train: those images trained the model, yet were scored as val or test ('' if none)."""
    from . import stages

    cleaned = storage.join(storage.parent(manifest_uri), layout.CLEAN_MANIFEST)
    if os.path.basename(manifest_uri) != layout.MANIFEST or not storage.exists(cleaned):
        return ""
    try:  # a clean of an older catalog run: its splits are another draw, not clean's moves (split_warning says so)
        if stages.is_stale(storage.parent(manifest_uri), "clean"):
            return ""
    except SpeciesfamError:  # a damaged record: said by split_warning
        return ""
    now = storage.read_table(cleaned)[["path", "split"]].drop_duplicates("path").set_index("path")["split"]
    moved = rows["path"].map(now).dropna()
    moved = moved[moved != split]
    if not len(moved):
        return ""
    trained = int((moved == "train").sum())
    return (f"{counted(len(moved), 'image')} of these {split} rows {'is' if len(moved) == 1 else 'are'} in "
            f"another split of {cleaned} (clean moved near-duplicate groups into one split"
            + (f"; {trained} into train: the model trained on {'it' if trained == 1 else 'them'}" if trained else "")
            + f"): score --manifest {cleaned} instead")
