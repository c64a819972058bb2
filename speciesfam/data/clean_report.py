"""``RUN/clean.md``: what clean found (outliers, label issues, near-duplicates), by which rule, and why."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import layout
from ..config import CleanConfig
from ..lines import counted, quoted, some
from ..markdown import cell, code, family_cell, prose, twins, visible
from .embedders import model_id
from .galleries import LABEL_ISSUES_PNG, NEAR_DUPLICATES_PNG

if TYPE_CHECKING:
    import pandas as pd

MAX_ROWS = 50  # per table in clean.md; the CSVs hold every row


def outlier_rule(cfg: CleanConfig) -> str:
    """The outlier policy in words (clean.md and the stage record)."""
    if cfg.removal == "quota":
        return (f"quota: the top {cfg.contamination:.0%} {cfg.detector} scores of every family "
                f"(min {cfg.min_per_family} kept per family)")
    return (f"threshold: {cfg.detector} score's robust z-score (median/MAD within the family) > {cfg.outlier_z:g} "
            f"(min {cfg.min_per_family} kept per family)")


def lost_lines(summary: dict[str, Any], name=quoted, alike: frozenset[str] = frozenset()) -> list[str]:
    """A line per split that families lost every image of in clean (``split_lost``), with the cause clean found
    (``split_lost_cause``: files gone or changed since catalog, or its own removals): the console's, clean.md's
    and the report's words. ``name``: how a family is written (quoted, Markdown code, plain); a family that
    renders as another does (``alike``, and any two named here: ``twins``) as its JSON string, which tells them
    apart (two NFC/NFD 'Café's read "('Café', 'Café')": hostile tester)."""
    causes = summary.get("split_lost_cause") or {}
    lost = summary.get("split_lost") or {}
    alike = alike | twins(f for fams in lost.values() for f in fams)
    shown = (lambda f: json.dumps(f) if f in alike else name(f))
    together: dict[tuple, list[str]] = {}  # splits the same families lost to the same cause: one line (round 48:
    for split, fams in lost.items():       # a family whose files were all gone had a warning per split)
        if fams:
            together.setdefault((tuple(fams), json.dumps(causes.get(split), sort_keys=True)), []).append(split)
    out = []
    for (fams, _), splits in together.items():
        split = " or ".join([", ".join(splits[:-1]), splits[-1]] if len(splits) > 1 else splits)
        cause = causes.get(splits[0])
        if isinstance(cause, dict) and len(cause) > 1:  # each cause with the families it took them from
            cause = "; ".join(f"{why} took them from {some(map(shown, took), 10)}" for why, took in cause.items())
            said = ""
        else:  # one cause for all (a record from before causes were per family: its text)
            said = f": {next(iter(cause)) if isinstance(cause, dict) else cause} took them all" if cause else ""
            cause = ""
        out.append(f"{counted(len(fams), 'family has', 'families have')} no {split} images left "
                   f"({some(map(shown, fams), 10)}){said}" + (f": {cause}" if cause else "")
                   + (", so no model learns them" if "train" in splits else f", so they count in no {split} score"))
    return out


def _table(df: "pd.DataFrame", cols: list[str], fmt: dict[str, str] | None = None,
           alike: frozenset[str] = frozenset()) -> list[str]:
    """Up to MAX_ROWS rows of ``cols``; a family column's names of ``alike`` as JSON (``family_cell``)."""
    fmt = fmt or {}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.head(MAX_ROWS).itertuples(index=False):
        vals = [format(getattr(r, c), fmt.get(c, "")) if getattr(r, c) == getattr(r, c) else "" for c in cols]
        lines.append("| " + " | ".join(family_cell(v, alike) if "family" in c else prose(v) if c == "reason" else
                                       cell(v) for c, v in zip(cols, vals)) + " |")
    if len(df) > MAX_ROWS:
        lines.append(f"\n({len(df) - MAX_ROWS} more rows in the CSV)")
    return lines


def folds_text(asked: int, used: int | None, left_out: int = 0) -> str:
    """The logistic regression's folds as run: the ones asked for, or fewer (the smallest checked family's size),
    and the one-image families it left out (nothing to cross-validate)."""
    if used is None or used == asked:
        text = f"a {asked}-fold logistic regression"
    elif not used:
        return "no logistic regression (fewer than 2 families of 2+ images: nothing to check)"
    else:
        text = (f"a {used}-fold logistic regression ({asked} folds asked for; capped at the smallest checked "
                f"family's {used} images)")
    return text + (f"; {counted(left_out, 'family', 'families')} of one image left out (nothing to cross-validate)"
                   if left_out else "")


def clean_report(before: "pd.DataFrame", after: "pd.DataFrame", removed: "pd.DataFrame", issues: "pd.DataFrame",
                 pairs: "pd.DataFrame", cfg: CleanConfig, summary: dict[str, Any]) -> str:
    """The Markdown report: rules and counts first, then every removed row, the label issues and the pairs."""
    b = before[before["status"] == layout.OK]["label"].value_counts()
    a = after[after["status"] == layout.OK]["label"].value_counts()
    dups = summary["near_duplicates"]
    folds = folds_text(cfg.label_issue_folds, summary.get("label_issue_folds"), summary.get("label_issue_left_out", 0))
    lines = [f"# Clean: {model_id(cfg)}", "",
             f"- usable before: {int(b.sum())}, after: {int(a.sum())}; taken out: {len(removed)}"
             + (f"; unreadable now (status unreadable: gone, changed or failing to decode since catalog): "
                f"{summary['failed_to_decode_in_clean']}" if summary.get("failed_to_decode_in_clean") else ""),
             f"- outliers: {summary['outliers_removed']} removed; rule {outlier_rule(cfg)}" + (
                 f"; {int((removed['detector'] == 'zero_shot').sum())} of them by the zero-shot check (CLIP's "
                 f"non-photo probability > {cfg.zero_shot_threshold:g})" if cfg.zero_shot else "") + (
                 f"; {kept} more that the rule took are kept as label issues (cleanlab flagged them too, and each "
                 "sits inside its suggested family: see Label issues)" if (kept := summary.get(
                     "outliers_kept_as_label_issues")) else "") + (
                 f"; {floor} more met the rule but are kept, so that each family keeps --min-per-family "
                 f"{cfg.min_per_family} images (status ok, the reason says so: see Kept by --min-per-family)"
                 if (floor := summary.get("outliers_kept_by_floor")) else ""),
             f"- label issues (cleanlab `find_label_issues`, filter_by={cfg.label_issue_filter}, out-of-fold "
             f"probabilities of {folds}): "
             f"{len(issues)} flagged, "
             f"{summary['label_issues_dropped']} removed"
             f"{'' if cfg.drop_label_issues else ' (report only; drop_label_issues=True removes them)'}"
             + (f"; {floor} more are kept, so that each family keeps --min-per-family {cfg.min_per_family} images "
                "(status ok, the reason says so: see Kept by --min-per-family)"
                if (floor := summary.get("label_issues_kept_by_floor")) else ""),
             f"- near-duplicates (cosine >= {cfg.near_threshold:g}): {counted(dups['pairs'], 'pair')} in "
             f"{counted(dups['groups'], 'group')}; {dups['moved_to_group_split']} images moved so no group straddles "
             f"train/val/test; {dups['dropped']} dropped (dedupe={cfg.dedupe})"
             + (f"; {counted(across, 'pair')} of two families (never dropped: which label is right is a label "
                "issue's question)" if (across := dups.get("across_families")) else "")]
    alike = twins(b.index)  # 'Café' twice, in two Unicode forms: shown as JSON, which tells them apart
    # each split's usable images, before and after, and each family's val and test images left: how much the
    # splits that score the models shrank, and which families they leave out, in full (round 62: neither said)
    ok_before, ok_after = before[before["status"] == layout.OK], after[after["status"] == layout.OK]
    lines.append("- usable images per split, before -> after: " + ", ".join(
        f"{split} {int((ok_before['split'] == split).sum())} -> {int((ok_after['split'] == split).sum())}"
        for split in layout.SPLITS))
    lines += [f"- **warning**: {line}" for line in lost_lines(summary, lambda f: code(visible(f)), alike)]
    left = {split: ok_after[ok_after["split"] == split]["label"].value_counts() for split in ("val", "test")}
    lines += ["", "| family | before | after | val after | test after |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {family_cell(fam, alike)} | {b[fam]} | {a.get(fam, 0)} | {left['val'].get(fam, 0)} | "
              f"{left['test'].get(fam, 0)} |" for fam in sorted(b.index)]
    lines += ["", "## Taken out", "", "Every row here is also in `removed.csv` with the same reason.", ""]
    lines += _table(removed, ["path", "family", "score", "z", "detector", "reason"], {"score": ".3f", "z": ".1f"}, alike)
    usable = before.loc[before["status"] == layout.OK, "path"]
    reasons = after["reason"].fillna("") if "reason" in after else after["status"].map(lambda _: "")
    spared = after[(after["status"] == layout.OK) & reasons.str.startswith("kept, though")]
    if len(spared):  # the rule took them; the floor kept them (the family read as clean: hostile tester round 33)
        lines += ["", "## Kept by --min-per-family", "", "They met the outlier rule, or are label issues "
                  "--drop-label-issues removes, but removing them would leave their family fewer than "
                  f"--min-per-family {cfg.min_per_family} images: status `ok`, this reason in "
                  f"`{layout.CLEAN_MANIFEST}`.", ""]
        lines += _table(spared.rename(columns={"label": "family", "outlier_z": "z"}), ["path", "family", "z", "reason"],
                        {"z": ".1f"}, alike)
    lost = after[(after["status"] == layout.UNREADABLE_STATUS) & after["path"].isin(usable)]
    if len(lost):  # the console points here for them (clean.md only counted them: hostile tester round 28)
        lines += ["", "## Unreadable now", "", "Usable when catalogued, not readable by clean: status `unreadable` in "
                  f"`{layout.CLEAN_MANIFEST}`, with the same reason.", ""]
        lines += _table(lost.rename(columns={"label": "family"}), ["path", "family", "reason"], alike=alike)
    lines += ["", "## Label issues", "", f"Suspects beside their suggested family: `gallery/{LABEL_ISSUES_PNG}`; all "
              f"in `{layout.LABEL_ISSUES}`." if len(issues) else "None flagged.", ""]
    lines += _table(issues, ["rank", "path", "given_family", "suggested_family", "self_confidence"],
                    {"self_confidence": ".3f"}, alike) if len(issues) else []
    lines += ["", "## Near-duplicates", "", f"Most similar pairs side by side: `gallery/{NEAR_DUPLICATES_PNG}`; all "
              f"in `{layout.NEAR_DUPLICATES}`." if len(pairs) else "None flagged.", ""]
    lines += _table(pairs, ["group", "similarity", "path_a", "path_b", "family_a", "family_b"],
                    {"similarity": ".4f"}, alike) if len(pairs) else []
    lines += ["", "## Galleries", "", "- per family, most unusual first (removed framed in red): "
              "`gallery/<family>.png` (file names via `layout.label_slug`)" if cfg.gallery_per_family else
              "- per family: none (gallery_per_family=0)"]
    return "\n".join(lines) + "\n"
