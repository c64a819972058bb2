"""``RUN/catalog.md``: what catalog found (inputs seen, counts per status, families and their splits, labels that
look alike, families with no usable file, the rows not used and why), and the balanced class weights it lists."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import layout
from ..lines import counted
from ..markdown import cell, code, family_cell, prose, twins
from ..pathtext import shown_escaped
from .text_table import named_columns

if TYPE_CHECKING:
    import pandas as pd

    from ..config import CatalogConfig

NOT_USED_SHOWN = 20  # catalog.md lists this many rows per status; the full list is in manifest.parquet


def class_weights(manifest: "pd.DataFrame", split: str = "train") -> dict[str, float]:
    """Balanced class weights n / (k * n_c) over the usable rows of ``split``."""
    counts = manifest[(manifest["status"] == layout.OK) & (manifest["split"] == split)]["label"].value_counts()
    return {lab: float(counts.sum() / (len(counts) * c)) for lab, c in sorted(counts.items())}


def look_alike_labels(labels) -> list[list[str]]:
    """Groups of two or more labels equal up to case, surrounding whitespace, Unicode compatibility forms and
    invisible format characters (``Felidae``, ``felidae``, ``Felidae ``, ``Ｆelidae``, ``Feli\u200bdae``),
    sorted."""
    groups: dict[str, set[str]] = {}
    for lab in labels:
        groups.setdefault(look_alike_key(lab), set()).add(lab)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def look_alike_key(label: str) -> str:
    """What two labels that look alike share (``look_alike_labels``' rule; evaluate's hint for a family the bundle
    lacks uses it too)."""
    import unicodedata

    visible = "".join(c for c in unicodedata.normalize("NFKC", label) if unicodedata.category(c) != "Cf")
    return visible.strip().casefold()


def no_usable_families(manifest: "pd.DataFrame") -> dict[str, str]:
    """The families (labels as written) whose every row is unusable, each with its rows' statuses counted
    ('1 too_small', '3 unreadable'). Gone from the family count, they were named nowhere (hostile tester round
    40); a family of one readable image read as one with 'no usable file' (round 48)."""
    labelled = manifest[manifest["label"].notna() & (manifest["label"].astype(str).str.strip() != "")]
    gone = sorted(set(labelled["label"]) - set(manifest.loc[manifest["status"] == layout.OK, "label"]), key=str)
    rows = labelled[labelled["label"].isin(gone)].groupby("label", sort=False)["status"]
    why = {name: ", ".join(f"{n} {status}" for status, n in counts.value_counts().items()) for name, counts in rows}
    return {name: why[name] for name in gone}


def report(manifest: "pd.DataFrame", source: str, cfg: "CatalogConfig | None" = None) -> str:
    """A short Markdown report: inputs seen = rows written, counts per status, families, what was not used;
    ``cfg``: the manifest's columns read (when not the default ones)."""
    status = manifest["status"].value_counts()
    ok = manifest[manifest["status"] == layout.OK]
    table = ok.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(layout.SPLITS), fill_value=0)
    weights = class_weights(manifest)
    attrs = manifest.attrs
    if "files_seen" in attrs:
        seen = f"- files seen: {attrs['files_seen']}, rows written: {len(manifest)} (one per file)"
    else:
        seen = f"- manifest rows read: {attrs.get('rows_read', len(manifest))}, rows written: {len(manifest)}"
        named = named_columns(cfg.columns if cfg else None)
        if named:  # --label-column family: which of the file's columns the families are
            seen += "; " + ", ".join(f"{name}s from its column {code(column)}" for name, column in named.items())
            if "group" in named and not cfg.group_split:
                seen += " (recorded, not used to split: --group-split keeps each group inside one split)"
        if "own_split" in attrs:
            seen += (f"; its column {code(attrs['own_split'])} is not used: catalog draws its own split per family "
                     "(`--val-fraction`, `--test-fraction`, `--group-split`)")
    lines = [f"# Catalog of {cell(source)}", "", seen]
    if attrs.get("aliases"):
        lines.append(f"- links to folders already listed, or files reached again through them (not listed "
                     f"again): {attrs['aliases']}")
    if attrs.get("skipped_folders"):
        lines.append("- folders at the top skipped, with their files (hidden: the name starts with '.'; a system "
                     "folder; or a speciesfam run folder): " + ", ".join(f"{code(json.dumps(name))} ({n})" for name, n in
                                            attrs["skipped_folders"].items()))
    if attrs.get("empty_folders"):
        lines.append(f"- family folders holding no file (no rows, no family): "
                     f"{', '.join(code(json.dumps(name)) for name in attrs['empty_folders'])}")
    if attrs.get("nested"):
        n = attrs["nested"]
        lines.append(f"- files in subfolders of a family folder, labelled by the family folder (the first folder level "
                     f"names the family): {n['files']}, e.g. {code(json.dumps(n['example']))} as "
                     f"{code(json.dumps(n['family']))}; to label by a deeper level, give a manifest with a `label` "
                     "column")
    if attrs.get("several_frames"):
        lines.append(f"- images of several frames (animations, multi-page TIFFs), each used as its first frame: "
                     f"{attrs['several_frames']['files']} (listed under Images of several frames)")
    gone = no_usable_families(manifest)
    if gone:
        lines.append("- families with no usable image (their rows are under Not used): "
                     + ", ".join(f"{code(json.dumps(name))} ({why})" for name, why in gone.items()))
    lines += [*(f"- {k}: {v}" for k, v in sorted(status.items())), f"- families: {ok['label'].nunique()}", "",
              "| family | train | val | test | class weight |", "|---|---:|---:|---:|---:|"]
    alike = twins(table.index)  # the same name in two Unicode forms: as JSON, which tells them apart
    lines += [f"| {family_cell(lab, alike)} | {r['train']} | {r['val']} | {r['test']} | {weights.get(lab, 0):.3f} |"
              for lab, r in table.iterrows()]
    alike = look_alike_labels(manifest.loc[manifest["status"] != layout.INVALID, "label"].dropna().unique())
    if alike:
        lines += ["", "## Labels that look alike", "", "Kept as separate families (labels are used exactly as "
                  "written); fix the source if they are one family:", ""]
        # as JSON strings with non-ASCII escaped: what tells them apart shows (surrounding spaces, a composed
        # 'é' against 'e' + an accent, a real newline against a backslash and an 'n', a backtick)
        lines += ["- " + ", ".join(code(json.dumps(lab)) for lab in group) for group in alike[:NOT_USED_SHOWN]]
    if attrs.get("several_frames"):
        frames = attrs["several_frames"]
        lines += ["", "## Images of several frames", "", "Every stage reads the first frame of these (an animation's "
                  "first picture: GIF, PNG or WebP; a multi-page TIFF's first page); convert them to use another.", "",
                  "| path | frames |", "|---|---:|"]
        lines += [f"| {cell(path)} | {n or 'several (its page list is damaged)'} |" for path, n in frames["shown"]]
        if frames["files"] > len(frames["shown"]):
            lines.append(f"| ... {frames['files'] - len(frames['shown'])} more | |")
    not_used = manifest[manifest["status"] != layout.OK]  # duplicates too, as the report shows them
    if len(not_used):
        lines += ["", "## Not used", "", f"{counted(len(not_used), 'row')}; the first {NOT_USED_SHOWN} of each status "
                  f"are below, all of them in {layout.MANIFEST} (and the unreadable ones in {layout.UNREADABLE}).", ""]
        for st, rows in not_used.groupby("status", sort=True):
            lines += [f"### {st} ({len(rows)})", "", "| path | label | reason |", "|---|---|---|"]
            lines += [f"| {prose(r.path) if shown_escaped(r.reason) else cell(r.path)} | {cell(r.label)} | "
                      f"{prose(r.reason)} |"
                      for r in rows.head(NOT_USED_SHOWN).itertuples()]
            if len(rows) > NOT_USED_SHOWN:
                lines.append(f"| ... {len(rows) - NOT_USED_SHOWN} more | | |")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
