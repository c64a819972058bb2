"""Contact sheets of what clean found, written to ``RUN/gallery/``.

- ``<family slug>.png``: each family's most unusual images (highest outlier score first; removed ones framed
  in red, with their robust z-score). File names come from ``layout.label_slug``: a label from the data is
  never a path.
- ``label_issues.png``: each suspected mislabel (framed in orange) beside images of the family cleanlab
  suggests, so a person sees at a glance whether the label or the suggestion is right.
- ``near_duplicates.png``: the most similar pairs side by side, with their cosine similarity.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from .. import layout, storage
from .images import read_rgb

if TYPE_CHECKING:
    import pandas as pd

LABEL_ISSUES_PNG = "label_issues.png"
NEAR_DUPLICATES_PNG = "near_duplicates.png"
CAPTION = 14  # px of text above each row of thumbnails


def _sheet(rows: list[list[tuple[str, str, tuple[int, int, int] | None]]], thumb: int):
    """A PNG of rows of (path, caption, frame colour or None) thumbnails."""
    from PIL import Image, ImageDraw

    width = thumb * max((len(r) for r in rows), default=1)
    sheet = Image.new("RGB", (max(width, thumb), max(1, len(rows)) * (thumb + CAPTION)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for y, row in enumerate(rows):
        top = y * (thumb + CAPTION)
        for x, (path, caption, frame) in enumerate(row):
            try:
                sheet.paste(Image.fromarray(read_rgb(path, size=thumb)), (x * thumb, top + CAPTION))
            except Exception as err:  # a file that changed since clean read it: say so on the sheet, go on
                caption = f"unreadable: {type(err).__name__}"
            if frame:
                draw.rectangle([x * thumb, top + CAPTION, (x + 1) * thumb - 1, top + CAPTION + thumb - 1],
                               outline=frame, width=3)
            draw.text((x * thumb + 2, top + 1), caption[: thumb // 6], fill=(0, 0, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def clear(out_dir: str) -> None:
    """Delete the sheets an earlier clean wrote (the PNGs directly in ``out_dir``), so that a re-run leaves only
    its own: a family gone since, or a sheet not asked for now (`--gallery-per-family 0`), kept the old one."""
    from pyarrow import fs as pafs

    if not storage.is_dir(out_dir):
        return
    fs, path = storage.filesystem(out_dir)
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".png"):
            fs.delete_file(info.path)


def outlier_galleries(rows: "pd.DataFrame", out_dir: str, per_family: int, thumb: int = 96,
                      label_issues: frozenset[str] = frozenset()) -> list[str]:
    """One PNG per family: its ``per_family`` highest-scoring images (columns label, path, score, z, removed): those
    removed framed red (OUT), the outliers kept as label issues (``label_issues``, their paths) orange (ISSUE: they
    showed as any kept image, round 62); none with ``per_family`` 0 (it wrote blank ones: hostile tester)."""
    written = []
    if per_family <= 0:
        return written
    for fam, grp in rows.sort_values("score", ascending=False).groupby("label", sort=True):
        cells = [(r.path, f"z={r.z:.1f}{' OUT' if r.removed else ' ISSUE' if r.path in label_issues else ''}",
                  (220, 0, 0) if r.removed else (255, 140, 0) if r.path in label_issues else None)
                 for r in grp.head(per_family).itertuples()]
        written.append(storage.join(out_dir, f"{layout.label_slug(fam)}.png"))
        storage.write_bytes(written[-1], _sheet([cells], thumb))
    return written


def label_issue_gallery(issues: "pd.DataFrame", emb: "pd.DataFrame", out_dir: str, max_rows: int = 12,
                        examples: int = 3, thumb: int = 96) -> str | None:
    """Each suspect (orange frame) beside ``examples`` clean images of its suggested family."""
    if issues.empty:
        return None
    flagged = set(issues["path"])
    by_family = emb[~emb["path"].isin(flagged)].sort_values("z").groupby("label")["path"].apply(list).to_dict()
    rows = []
    for r in issues.head(max_rows).itertuples():
        row = [(r.path, f"{r.given_family}?", (255, 140, 0))]
        row += [(p, f"{r.suggested_family}", None) for p in by_family.get(r.suggested_family, [])[:examples]]
        rows.append(row)
    uri = storage.join(out_dir, LABEL_ISSUES_PNG)
    storage.write_bytes(uri, _sheet(rows, thumb))
    return uri


def near_duplicate_gallery(pairs: "pd.DataFrame", out_dir: str, max_rows: int = 12, thumb: int = 96) -> str | None:
    """The ``max_rows`` most similar pairs, side by side."""
    if pairs.empty:
        return None
    rows = [[(r.path_a, f"{r.similarity:.5f}", (0, 90, 220)), (r.path_b, f"group {r.group}", (0, 90, 220))]
            for r in pairs.head(max_rows).itertuples()]
    uri = storage.join(out_dir, NEAR_DUPLICATES_PNG)
    storage.write_bytes(uri, _sheet(rows, thumb))
    return uri
