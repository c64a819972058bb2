"""The typed shape of each stage record (``RUN/stages/<stage>.json``), checked when a record is read.

A record's config is the stage's typed config (``config.py``: CatalogConfig, CleanConfig, TuneConfig) plus the
fields the stage adds; its summary is the TypedDict below. A field present with a value of another type (a hand
edit: catalog's ``status`` counts as text, clean's ``near_duplicates`` a list) makes the record damaged, said by
``stages.load`` with the command that rewrites it, rather than a traceback in whichever reader met it first
(export's model card, the report; hostile tester round 60). Fields missing are allowed (older records); fields no
reader knows are not checked.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Optional, TypedDict, Union

from . import layout


class Nested(TypedDict, total=False):
    files: int
    example: str
    family: str


class CatalogSummary(TypedDict, total=False):
    rows: int
    status: dict[str, int]
    files_seen: int
    rows_read: int
    aliases: int
    empty_folders: list[str]
    nested: Optional[Nested]
    skipped_folders: dict[str, int]


class NearDuplicates(TypedDict, total=False):
    pairs: int
    groups: int
    moved_to_group_split: int
    dropped: int
    across_families: int


class CleanSummary(TypedDict, total=False):
    status: dict[str, int]
    removed: int
    outlier_rule: str
    outliers_removed: int
    outliers_kept_as_label_issues: int
    outliers_kept_by_floor: int
    label_issues_kept_by_floor: int
    label_issues: int
    label_issues_dropped: int
    label_issue_folds: int
    label_issue_left_out: int
    near_duplicate_threshold: float
    near_duplicates: NearDuplicates
    failed_to_decode_in_clean: int
    embedding_width: int
    split_lost: dict[str, list[str]]
    split_lost_cause: dict[str, Union[dict[str, list[str]], str]]  # a line of text before cause -> families


TuneSummary = TypedDict("TuneSummary", {
    "experiment": str, "kind": str, "trials": int, "ok": int, "planned": Optional[int], "time_budget_hit": bool,
    "interrupted": bool, "seconds": Optional[float], "resumable": bool, "best_trial": str,
    layout.BEST_METRIC: float, "best_epoch": Optional[int]}, total=False)

ExportSummary = TypedDict("ExportSummary", {
    "trial_id": str, "search": Optional[str], "kind": str, "model": str, layout.BEST_METRIC: float, "reason": str,
    "bundle": str, "replaced": str, "kept": bool}, total=False)


class CatalogAdds(TypedDict, total=False):
    source: str


class CleanAdds(TypedDict, total=False):
    model_id: str


class ExportConfig(TypedDict, total=False):
    trial: Optional[str]
    out: Optional[str]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """``cls``'s field types, resolved once (they were resolved again on every record read: most of its time)."""
    return typing.get_type_hints(cls)


@functools.cache
def _config(stage: str) -> dict[str, Any]:
    """The field types of ``stage``'s recorded config: its typed config's, and the fields the stage adds."""
    from .config import CatalogConfig, CleanConfig, TuneConfig

    typed = {"catalog": (CatalogConfig, CatalogAdds), "clean": (CleanConfig, CleanAdds), "tune": (TuneConfig,),
             "export": (ExportConfig,)}[stage]
    return {k: v for cls in typed for k, v in _hints(cls).items()}


SUMMARY = {"catalog": CatalogSummary, "clean": CleanSummary, "tune": TuneSummary, "export": ExportSummary}
WORDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false", type(None): "null",
         list: "a list", dict: "a record of fields"}


def wrong_field(stage: str, rec: dict[str, Any]) -> str:
    """The first field of ``stage``'s record whose value is not of its recorded type, as 'FIELD is VALUE, not
    TYPE' ('summary.status['ok'] is 'x', not a whole number'); '' when every field is of its type."""
    fields = _config(stage)
    for where, value, hint in (("config", rec.get("config"), fields), ("summary", rec.get("summary"), SUMMARY[stage]),
                               ("built_from", rec.get("built_from"), dict[str, str])):
        found = _wrong(where, value, hint) if value is not None else ""
        if found:
            return found
    if stage == "tune":
        searches = rec.get("searches")
        if searches is not None and not isinstance(searches, dict):
            return _said("searches", searches, dict)
        for name, search in (searches or {}).items():
            where = f"searches[{name!r}]"
            if not isinstance(search, dict):
                return _said(where, search, dict)
            for key, hint in (("config", fields), ("summary", TuneSummary), ("built_from", dict[str, str]),
                              ("finished_at", str)):
                found = _wrong(f"{where}.{key}", search[key], hint) if search.get(key) is not None else ""
                if found:
                    return found
    return ""


def _wrong(where: str, value: Any, hint: Any) -> str:
    """'' when ``value`` is of type ``hint`` (a class, X | None, list[X], dict[str, X], a TypedDict or a dict of
    field types), else where it is not, first."""
    if isinstance(hint, dict) or typing.is_typeddict(hint):
        fields = hint if isinstance(hint, dict) else _hints(hint)
        if not isinstance(value, dict):
            return _said(where, value, dict)
        return next((found for key, sub in fields.items() if key in value
                     for found in [_wrong(f"{where}.{key}", value[key], sub)] if found), "")
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        found = [_wrong(where, value, option) for option in options]
        if not all(found):
            return ""
        alike = [f for option, f in zip(options, found) if isinstance(value, _container(option))]
        return alike[0] if len(alike) == 1 else _said(where, value, *options)  # the field inside it that is not
    if origin in (list, dict):
        if not isinstance(value, origin):
            return _said(where, value, origin)
        args = typing.get_args(hint)
        items = enumerate(value) if origin is list else value.items()
        for key, item in items:
            found = (_wrong(f"{where}[{key!r}]", key, args[0]) if origin is dict else "") or \
                _wrong(f"{where}[{key!r}]", item, args[-1])
            if found:
                return found
        return ""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float
          else isinstance(value, int) and not isinstance(value, bool) if hint is int
          else hint is Any or isinstance(value, hint))
    return "" if ok else _said(where, value, hint)


def _container(hint: Any) -> type | tuple:
    """The Python type of a hint's values, for a record of fields or a list (() for a plain value's)."""
    kind = dict if typing.is_typeddict(hint) else typing.get_origin(hint) or hint
    return kind if kind in (dict, list) else ()


def _said(where: str, value: Any, *hints: Any) -> str:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    words = ["a record of fields" if typing.is_typeddict(h) else WORDS.get(typing.get_origin(h) or h, str(h))
             for h in hints]
    return f"{where} is {shown}, not " + " or ".join(words)
