"""Where export puts a bundle: the checks on ``--out``, the swap of a finished bundle into place, and what a
killed export left beside it.

Export replaces ``--out`` whole, so a folder that holds anything else (the run, another run's files, images
catalog read, files saved beside a bundle) is refused before any work. The bundle is built in
``.<name>-new-*`` beside its destination and swapped in with two renames (the old one goes to
``.<name>-old-*`` first and is deleted last); ``recover`` restores or deletes what a killed export left.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any

from . import bundle as B
from . import console, layout, stages, storage
from .errors import SpeciesfamError
from .lines import some
from .listing import within_source


def check_out(out: str, workdir: str, replacing: bool = True) -> None:
    """Export replaces ``out`` whole: refuse a folder that holds anything but a bundle, and the run folder itself
    or any folder above it. ``replacing``: False when the bundle there is kept, whose folder may hold other files
    (a Finder's .DS_Store refused a kept bundle; round 67)."""
    run = os.path.realpath(storage.filesystem(workdir)[1]) if not storage.is_remote(workdir) else None
    real = os.path.realpath(out)
    if run and storage.within(run, real):
        where = "is the run folder" if real == run else "holds the run folder"
        raise SpeciesfamError(f"--out {out} {where} ({workdir}); the bundle would replace the run: give a new "
                              f"folder (default: {layout.path(workdir, layout.BUNDLE)})")
    other = B.run_around(os.path.dirname(real))
    if other and other != run:  # its report and evaluate read that bundle as the other run's best model
        raise SpeciesfamError(f"--out {out} is inside another run folder ({other}); a bundle there would replace or "
                              f"pass for that run's own: give a folder outside it (default: "
                              f"{layout.path(workdir, layout.BUNDLE)})")
    images = stages.image_folder(workdir)
    if images and within_source(out, images):  # the next catalog took the bundle's files for images
        raise SpeciesfamError(f"--out {out} is inside the image folder {images} that catalog read: the next catalog "
                              f"would take the bundle's files for images; give a folder outside it (default: "
                              f"{layout.path(workdir, layout.BUNDLE)})")
    inside = B.bundle_around(os.path.dirname(real))
    if inside:  # its files would become the outer bundle's foreign files (a later export there is refused)
        raise SpeciesfamError(f"--out {out} is inside the bundle {inside}; a bundle's folder holds only its own "
                              "files: give a folder outside it")
    if os.path.isdir(out) and os.listdir(out) and not B.is_bundle(out):
        raise SpeciesfamError(f"--out {out} exists and is not a speciesfam bundle (no {B.CONFIG} naming "
                              f"{B.SCHEMA!r}); export replaces the folder whole: give a new or empty folder")
    if os.path.exists(out) and not os.path.isdir(out):
        raise SpeciesfamError(f"--out {out} is a file; give a folder for the bundle")
    if os.path.ismount(out):  # the swap renames the folder: EBUSY after the whole export's work
        raise SpeciesfamError(f"--out {out} is a mount point, which cannot be renamed, and export swaps the "
                              f"finished bundle in by renaming folders: give a folder inside it, e.g. "
                              f"{os.path.join(out, layout.BUNDLE)}")
    storage.require_creatable(out, "--out", "the bundle")  # a path under a file: a FileExistsError once written
    foreign = foreign_files(out) if replacing and os.path.isdir(out) and B.is_bundle(out) else []
    if foreign:  # notes or predictions saved beside the model: replacing the bundle would delete them unsaid
        raise SpeciesfamError(f"--out {out} holds files that are not its bundle's ({some(foreign)}); export "
                              "replaces the folder whole: move them out, or give another --out")


def replaced_bundle(out: str, trial: dict[str, Any]) -> str:
    """The bundle ``out`` holds, when the new one (of ``trial``) replaces another trial's or another run's: what
    export's line says (an --out shared by two runs lost the first one's model unsaid). "" otherwise."""
    if not B.is_bundle(out):
        return ""
    try:
        with open(os.path.join(out, B.CONFIG)) as f:
            old = json.load(f).get("trial") or {}
    except (OSError, ValueError):
        return ""
    catalog = (old.get("trained_on") or {}).get("catalog")
    other_run = catalog != (trial.get("trained_on") or {}).get("catalog")
    folder = old.get("run_folder")  # a copied run folder's export replaced the original's bundle unsaid (round 68)
    elsewhere = f" of run folder {folder}" if folder and folder != trial.get("run_folder") and not storage.within(
        out, trial.get("run_folder") or "/nowhere") else ""  # not a bundle moved with its run folder
    if not other_run and str(old.get("trial_id")) == str(trial["trial_id"]):
        changed = edited(out)  # a card edited by hand was overwritten unsaid (round 67)
        clean = (old.get("trained_on") or {}).get("clean")  # its search resumed on a clean run again (round 76)
        said = elsewhere + (f", trained on clean run {str(clean)[:8]}" if clean and clean != (
            trial.get("trained_on") or {}).get("clean") else "") + (f", edited since its export ({changed})" if changed
                                                                     else "")
        return f"trial {old.get('trial_id')}{said}" if said else ""
    if other_run and catalog:
        origin = f" trained on catalog run {str(catalog)[:8]}" + (
            "" if elsewhere else " (another run folder's, or this one's before catalog ran again)")
    else:
        origin = " of another run" if other_run and not elsewhere else ""
    return f"trial {old.get('trial_id')}{elsewhere}{origin}"


def held_model(workdir: str, out: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """The config of the bundle ``out`` holds when it is already the model export would write: trial ``row`` of this
    run folder, trained on the catalog and clean runs its search read, at the same best epoch and score (a resumed
    trial that did better has another checkpoint), unchanged since (every file checked), of this schema. None
    otherwise: export writes the bundle. Writing it again would only change its id (config.json's export time),
    and the evaluations and predictions made with it would stop counting as its own (hostile testers, rounds 65
    and 67: also after an export to another --out, or a search that did not beat it)."""
    import math

    if not B.is_bundle(out):
        return None
    try:
        config = B.read_config(out)
        tune = stages.load(workdir, "tune") or {}
        with open(os.path.join(out, B.METRICS)) as f:
            metrics = json.load(f)
    except (SpeciesfamError, OSError, ValueError):  # a damaged record or bundle: export writes it anew
        return None
    trial = config.get("trial") if isinstance(config.get("trial"), dict) else {}
    score, epoch = row.get(layout.BEST_METRIC), row.get("best_epoch")
    same = (config.get("schema_version") == B.SCHEMA_VERSION and str(trial.get("trial_id")) == str(row["trial_id"])
            and trial.get("trained_on") == (tune.get("built_from") or {})
            and (trial.get("run_folder") == os.path.abspath(workdir) or storage.within(out, workdir))  # moved with
            and isinstance(metrics, dict)  # its run folder (a plain mv made export write it anew: round 70)
            and isinstance(score, (int, float)) and isinstance(metrics.get(layout.BEST_METRIC), (int, float))
            and math.isclose(metrics[layout.BEST_METRIC], score, rel_tol=1e-9)
            and isinstance(epoch, (int, float)) and epoch == epoch and metrics.get("best_epoch") == int(round(epoch)))
    return config if same else None


def edited(out: str) -> str:
    """The files of bundle ``out`` that differ from its checksums.json, or are gone ('' when none, or when it cannot
    be read): what a replacement of an edited bundle of the same trial says (it was silent; round 67)."""
    try:
        with open(os.path.join(out, B.CHECKSUMS)) as f:
            expected = json.load(f)
        changed = B.changed_files(out, expected) if isinstance(expected, dict) else []
    except (OSError, ValueError, TypeError):  # not a map of file -> sha256, a name outside the folder
        return ""
    return some(changed) + (" changed or gone" if changed else "")


def foreign_files(bundle: str) -> list[str]:
    """Files under ``bundle`` that its checksums.json does not list ([] when it cannot be read: a damaged
    bundle is replaced, as before)."""
    try:
        with open(os.path.join(bundle, B.CHECKSUMS)) as f:
            known = set(json.load(f)) | {B.CHECKSUMS}
    except (OSError, ValueError, TypeError):
        return []
    return sorted(set(B.files_in(bundle)) - known)


def recover(out: str) -> None:
    """Finish or undo what a killed export left beside ``out``: put the old bundle back when only it exists
    (killed between the two renames), then delete every ``.<name>-*`` temp folder."""
    parent, name = os.path.split(os.path.abspath(out))
    if not os.path.isdir(parent):
        return
    leftovers = sorted(os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(f".{name}-"))
    olds = [p for p in leftovers if os.path.basename(p).startswith(f".{name}-old-")]
    if olds and not os.path.exists(out):
        os.replace(olds[0], out)
        leftovers.remove(olds[0])
        console.say(f"export: restored {out} from an interrupted export")
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)


def swap_into_place(new: str, out: str) -> None:
    """Replace folder ``out`` by finished folder ``new`` (same parent) with two renames; the old one is
    deleted only once the new one is in place."""
    parent, name = os.path.split(os.path.abspath(out))
    old = None
    if os.path.exists(out):
        old = os.path.join(parent, f".{name}-old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    os.replace(new, out)
    if old:
        shutil.rmtree(old)
