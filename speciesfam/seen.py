"""The images a bundle has seen: those it was trained on (the train split) and those that chose it (the val split:
its best epoch and trial), by content. ``export`` writes their sha256 into the bundle (``seen.parquet``: sha256,
split; no paths, so a shipped bundle names none of the user's files); ``evaluate`` leaves such an image out of the
score of any other set of images, so that a score on "new" images is one on images the model has not seen."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import layout, storage

if TYPE_CHECKING:
    import pandas as pd

SEEN = "seen.parquet"
STATUS = "seen"
WHY = {"train": "the model was trained on this image (the same bytes are in its run's train split)",
       "val": "this image chose the model (the same bytes are in its run's val split, which picked its best epoch "
              "and trial)"}


def write(workdir: str, folder: str) -> str:
    """Write ``folder/seen.parquet`` from the run's cleaned manifest (its catalog manifest when clean never ran):
    the usable rows of train and val, one row per image. Returns '', or why it could not (no manifest, or one
    that cannot be read): the bundle is then made without it, and evaluate cannot tell."""
    import pandas as pd

    from .errors import SpeciesfamError

    cleaned = layout.path(workdir, layout.CLEAN_MANIFEST)
    uri = cleaned if storage.exists(cleaned) else layout.path(workdir, layout.MANIFEST)
    try:
        manifest = storage.read_table(uri)
        used = manifest[(manifest["status"] == layout.OK) & manifest["split"].isin(list(WHY))]
        used["sha256"]
    except (OSError, SpeciesfamError, KeyError) as err:
        return f"{uri} cannot be read ({type(err).__name__}: {err})"
    table = pd.DataFrame({"sha256": used["sha256"].astype(str), "split": used["split"].astype(str)})
    table = table.sort_values(["split", "sha256"]).drop_duplicates("sha256").reset_index(drop=True)  # train first
    table.to_parquet(os.path.join(folder, SEEN), index=False)
    return ""


def mark(rows: "pd.DataFrame", content: "pd.Series", bundle: str) -> int | None:
    """Give the usable rows whose image (``content``: sha256 per row, '' where unknown) the bundle has seen the
    status ``seen`` and the reason; returns how many, or None for a bundle without seen.parquet (exported before
    it existed, or from a run whose manifest could not be read): it cannot tell."""
    import pandas as pd

    path = os.path.join(bundle, SEEN)
    if not os.path.exists(path):
        return None
    split = pd.read_parquet(path).set_index("sha256")["split"]
    hit = (rows["status"] == "ok") & content.isin(split.index)
    rows.loc[hit, "status"] = STATUS
    rows.loc[hit, "reason"] = content[hit].map(split).map(WHY)
    return int(hit.sum())
