"""The images a bundle has seen: those it was trained on (the train split) and those that chose it (the val split:
its best epoch and trial), by content, and the near-duplicate copies of them that clean dropped. ``export`` writes
their sha256 into the bundle (``seen.parquet``: sha256, split, copy; no paths, so a shipped bundle names none of
the user's files); ``evaluate`` leaves such an image out of the score of any other set of images, so that a score
on "new" images is one on images the model has not seen."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import layout, storage

if TYPE_CHECKING:
    import pandas as pd

SEEN = "seen.parquet"
STATUS = "seen"
WHY = {"train": "the model was trained on this image (the same bytes are in its run's train split)",
       "val": "this image chose the model (the same bytes are in its run's val split, which picked its best epoch "
              "and trial)"}
COPY = {"train": "a near-duplicate of an image the model was trained on (clean dropped this copy of it from its "
                 "run's train split)",
        "val": "a near-duplicate of an image that chose the model (clean dropped this copy of it from its run's val "
               "split)"}


def used_rows(manifest: "pd.DataFrame") -> "pd.Series":
    """The rows of a run's manifest whose images a model of it is trained on or chosen by: usable train and val."""
    return manifest["split"].isin(list(WHY)) & (manifest["status"] == layout.OK)


def write(workdir: str, folder: str, trained_on: dict[str, Any]) -> str:
    """Write ``folder/seen.parquet`` from the manifest the search trained on (``trained_on``: the tune record's
    catalog and clean runs): clean's when it read one, else catalog's; its usable train and val rows and the
    near-duplicate copies clean dropped from them, one row per image. Returns '', or why it could not (the
    manifest gone, or unreadable): the bundle is then made without it, and evaluate says it cannot tell."""
    import pandas as pd

    from .errors import SpeciesfamError

    name = layout.CLEAN_MANIFEST if "clean" in trained_on or not trained_on and \
        storage.exists(layout.path(workdir, layout.CLEAN_MANIFEST)) else layout.MANIFEST
    uri = layout.path(workdir, name)
    try:
        manifest = storage.read_table(uri)
        kept = manifest["split"].isin(list(WHY))
        used = manifest[used_rows(manifest)]
        group = manifest["near_duplicate_group"] if "near_duplicate_group" in manifest else pd.Series(-1, manifest.index)
        copies = manifest[kept & (manifest["status"] == layout.DUPLICATE) & group.ge(0)]
        table = pd.concat([pd.DataFrame({"sha256": rows["sha256"].astype(str), "split": rows["split"].astype(str),
                                         "copy": copy}) for rows, copy in ((used, False), (copies, True))])
    except (OSError, SpeciesfamError, KeyError) as err:
        return f"{uri} cannot be read ({type(err).__name__}: {err})"
    # an image's own row first (over a copy's), and train over val
    table = table.sort_values(["copy", "split", "sha256"]).drop_duplicates("sha256").reset_index(drop=True)
    table.to_parquet(os.path.join(folder, SEEN), index=False)
    return ""


CANNOT_TELL = (f"this bundle cannot tell which images it was trained on (no {SEEN}: exported before it existed, or "
               "from a run whose manifest was gone)")


def splits(bundle: str) -> dict[str, str] | None:
    """sha256 -> the split ('train' or 'val') of each image the bundle has seen, near-duplicate copies clean dropped
    included; None for a bundle without seen.parquet (it cannot tell)."""
    import pandas as pd

    path = os.path.join(bundle, SEEN)
    if not os.path.exists(path):
        return None
    table = pd.read_parquet(path, columns=["sha256", "split"])
    return dict(zip(table["sha256"].astype(str), table["split"].astype(str)))


def predict_note(splits_seen: "pd.Series", where: str = "column 'seen'") -> str:
    """predict's line on the images of its input that the model has seen ('' when none): ``splits_seen`` holds
    each such row's split, from ``splits``; ``where`` says which they are."""
    if not len(splits_seen):
        return ""
    from .lines import counted

    each = ", ".join(f"{n} {split}" for split, n in splits_seen.value_counts().sort_index(
        key=lambda s: s.map({"train": 0, "val": 1})).items())
    return (f"predict: note: {counted(len(splits_seen), 'image')} the model was trained on or chosen by ({each}; "
            f"{where}): {'its prediction says' if len(splits_seen) == 1 else 'their predictions say'} nothing of how it "
            "does on images it has not seen")


def of_rows(rows: "pd.DataFrame", bundle: str) -> "pd.Series":
    """Column ``seen`` for predictions that lack it (rows of an output written before it existed, which a resume
    keeps): each readable row's file hashed again ('' for a row in error; None where the bundle cannot tell)."""
    import hashlib

    import pandas as pd

    known = splits(bundle)

    def one(path: str, error: str) -> str | None:
        if known is None:
            return None
        if error:
            return ""
        try:
            return known.get(hashlib.sha256(storage.read_bytes(path)).hexdigest(), "")
        except (OSError, ValueError):  # gone since: its row stays as it was written
            return None
    return pd.Series([one(p, e) for p, e in zip(rows["path"], rows["error"].fillna(""))], index=rows.index,
                     dtype=object)


def files_note(results: list[dict[str, Any]]) -> str:
    """``predict_note`` of image files predicted in this process (``predict_files``' results), naming a few."""
    import pandas as pd

    from .lines import some
    from .markdown import visible

    hits = [r for r in results if r.get("seen")]  # names on one line: a newline in one broke it (round 69)
    return predict_note(pd.Series([r["seen"] for r in hits], dtype=object), some(visible(r["path"]) for r in hits)) \
        if hits else ""


def mark(rows: "pd.DataFrame", content: "pd.Series", bundle: str) -> int | None:
    """Give the first row to score of each image the bundle has seen (``content``: sha256 per row, '' where
    unknown; ``ok``, or ``duplicate`` where the set lists the image only as a repeat) the status ``seen`` and the
    reason; a later row listing it again stays ``duplicate``, its reason naming the seen row, as a repeat of a new
    image does (one image, one row of status). Returns how many are seen, or None for a bundle without
    seen.parquet (exported before it existed, or from a run whose manifest could not be read): it cannot tell."""
    import pandas as pd

    path = os.path.join(bundle, SEEN)
    if not os.path.exists(path):
        return None
    table = pd.read_parquet(path).set_index("sha256")
    hit = rows["status"].isin(["ok", "duplicate"]) & content.isin(table.index)
    first = hit & ~content.where(hit).duplicated()
    again = hit & ~first
    why = {(split, copy): (COPY if copy else WHY)[split] for split in WHY for copy in (False, True)}
    rows.loc[first, "status"] = STATUS
    rows.loc[first, "reason"] = [why[(table.at[c, "split"], bool(table.at[c, "copy"]) if "copy" in table else False)]
                                 for c in content[first]]
    path_of = pd.Series(rows.loc[first, "path"].to_numpy(), index=content[first].to_numpy())
    rows.loc[again, "status"] = "duplicate"
    rows.loc[again, "reason"] = [f"the same image as {path_of[c]} (seen: not scored)" for c in content[again]]
    return int(first.sum())
