"""Where evaluate may write its reports (``--out``): never inside a bundle, another run folder, an image folder a
catalog read, or a folder holding anything but an earlier evaluation's reports; and what its console lines say."""

from __future__ import annotations

import json
import os
from typing import Any

from . import storage
from .console import say, say_err
from .errors import SpeciesfamError
from .lines import counted, some
from .listing import within_source

REPORTS = ("metrics.json", "per_class.csv", "confused_pairs.csv", "rows.csv", "confusion.png", "per_class_f1.png")
ROWS_COLUMNS = ("path", "label", "predicted", "probability", "status", "reason")  # rows.csv
NOT_SCORED = ("unreadable", "changed", "unlabelled", "duplicate", "conflict", "unknown_family",  # rows.csv, unscored
              "skipped",  # a hidden or system file listed (.DS_Store, Thumbs.db): left out as catalog does, no failure
              "seen")  # an image the model was trained on or chosen by (seen.py): left out of a score, no failure
QUIET = ("skipped", "seen")  # left out by design, said on a line of their own; not a failed row (exit 0)


def refuse_out(out: str, bundle: str, manifest_uri: str | None) -> None:
    """Refuse an --out evaluate must not write to (``manifest_uri``: a catalog's manifest whose run's image folder
    counts too). The image folders first: nothing is made there, not even to check that --out can be created."""
    _refuse_out_in_source(out, manifest_uri, bundle)
    _refuse_out_in_bundle(out, bundle)


def _refuse_out_in_bundle(out: str, bundle: str) -> None:
    """An --out in a bundle (this one or any other) would overwrite its metrics.json: its checksums then fail.
    One in another run folder would replace that run's evaluations; one holding other files, those files."""
    from .bundle import bundle_around, run_around

    # file: URIs are these folders too (tester)
    said, out, bundle = out, storage.filesystem(out)[1], storage.filesystem(bundle)[1]
    inside = storage.within(out, bundle)
    around = bundle if inside else bundle_around(out)
    if around:
        which = f"the bundle {bundle}" if inside else f"a bundle ({around})"
        raise SpeciesfamError(f"--out {said} is inside {which}: evaluate's reports would change the bundle's files "
                              "(predict then refuses it as damaged); choose a folder outside it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise SpeciesfamError(f"--out {said} is a file; give a folder for the reports")
    storage.require_creatable(said, "--out", "the reports")  # under a file, /proc, a read-only mount
    other = run_around(out)
    if other and other != run_around(bundle):
        raise SpeciesfamError(f"--out {said} is inside another run folder ({other}) than the bundle's: it would "
                              "replace or pass for that run's own evaluations; give a folder outside it")
    foreign = _not_reports(out) if os.path.isdir(out) else []
    if foreign:  # the user's own files (or images: the next catalog would take the plots for images)
        raise SpeciesfamError(f"--out {said} holds files that are not an earlier evaluation's reports "
                              f"({some(foreign)}); evaluate writes "
                              f"{', '.join(REPORTS)} there: give a new or empty folder")


def _refuse_out_in_source(out: str, manifest_uri: str | None, bundle: str) -> None:
    """An --out inside an image folder a catalog read (the manifest's run's, the bundle's run's: recorded at export,
    or the run folder holding the bundle) would be taken by the next catalog: the plots as a family's images. (A
    labelled set's images may lie anywhere; only a catalog record says which folder is one.)"""
    from . import stages

    from .bundle import recorded_trial

    folders = [stages.image_folder(storage.parent(manifest_uri)) if manifest_uri else None,
               recorded_trial(bundle).get("image_folder"), stages.image_folder(bundle_folder(bundle))]
    for source in folders:
        if isinstance(source, str) and source and within_source(out, source):
            raise SpeciesfamError(f"--out {out} is inside the image folder {source} that catalog read: the next "
                                  "catalog would take the reports for images; choose a folder outside it")


def _not_reports(folder: str) -> list[str]:
    """Entries of ``folder`` that evaluate did not write: other names, and every entry unless the folder holds an
    earlier evaluation (a user's confusion.png or per_class.csv shares a report's name)."""
    names = sorted(os.listdir(folder))
    foreign = [n for n in names if n not in REPORTS or not os.path.isfile(os.path.join(folder, n))]
    # an earlier evaluation's folder has evaluate's metrics.json, or (nothing scored) only its rows.csv
    if "metrics.json" in names:
        earlier = earlier_metrics(folder) is not None
    else:
        try:
            with open(os.path.join(folder, "rows.csv"), encoding="utf-8") as f:
                earlier = f.readline().strip() == ",".join(ROWS_COLUMNS)
        except (OSError, ValueError):  # missing, unreadable: not evaluate's
            earlier = False
    return foreign if earlier or not names else names


def earlier_metrics(folder: str) -> dict | None:
    """The metrics.json of an evaluation ``folder`` holds from before (it names its bundle and split), or None:
    none there, unreadable, not JSON, or not evaluate's."""
    try:
        with open(os.path.join(folder, "metrics.json")) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and {"bundle_id", "split"} <= set(metrics) else None


def bundle_folder(bundle: str) -> str:
    """The folder the bundle lies in (its run folder for RUN/bundle), links resolved."""
    return os.path.dirname(os.path.realpath(bundle))


def _families_line(m: dict[str, Any]) -> str:
    """What the macro-F1 averages when not every family of the bundle had an image in the set: the families with
    images, and those predicted though absent (each an F1 of 0 in it)."""
    have, families = m.get("families_with_images", 0), m.get("families", 0)
    absent = m.get("families_predicted_absent", 0)
    if have >= families:
        return ""
    return (f"; {have} of its {families} families had images here" + (
        f", {absent} more predicted though absent count{'s' if absent == 1 else ''} as F1 0" if absent else ""))


def say_result(m: dict[str, Any]) -> bool:
    """The console's lines for an evaluation's metrics ``m``: its scores, and on stderr the rows it left out
    (a duplicate row is an image scored once). True when some were."""
    split, whole = m["split"], m.get("whole_set")  # a labelled set without splits: scored whole (named test_*)
    say(f"evaluate: {'the whole set' if whole else split}: macro-F1 {m[f'{split}_macro_f1']:.3f}, accuracy "
        f"{m[f'{split}_accuracy']:.3f} on {counted(m['images'], 'image')} ({m['kind']} bundle"
        + _families_line(m) + f"); reports in {m['out']}"
        + (f"; they replaced the reports of another bundle (id {m['replaced']})" if m.get("replaced") else ""))
    left_out = {status: m[status] for status in NOT_SCORED if m.get(status) and status not in QUIET}
    if m.get("skipped"):  # as predict says it: no failure (they were 'unreadable', exit 1: round 56)
        say_err(f"evaluate: {counted(m['skipped'], 'hidden or system file')} skipped (each row's reason: "
                f"{os.path.join(m['out'], 'rows.csv')})")
    if m.get("seen"):  # a "new" set holding training images scored them as new, unsaid
        one = m["seen"] == 1
        say_err(f"evaluate: {counted(m['seen'], 'image')} of the set {'is' if one else 'are'} not scored: the model "
                f"was trained on {'it or it' if one else 'them or they'} chose it (its run's train or val split, by "
                f"content), so the score is of images it has not seen (each row's reason: "
                f"{os.path.join(m['out'], 'rows.csv')})")
    if left_out:
        total = sum(left_out.values())
        what = ("row of the set is" if whole else f"{split} row is") if total == 1 else \
            ("rows of the set are" if whole else f"{split} rows are")
        say_err(f"evaluate: {total} {what} not scored ({', '.join(f'{n} {s}' for s, n in left_out.items())}; "
                f"each row's reason: {os.path.join(m['out'], 'rows.csv')})")
    return bool(left_out)
