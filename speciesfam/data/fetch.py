"""``speciesfam fetch rare-species``: the reference dataset from the Hugging Face hub, ready for ``catalog``.

The hub repo ``imageomics/rare-species`` holds ``dataset/<taxon folder>/<eol_content_id>_<eol_page_id>_eol_
full-size-copy.jpg`` (400 species x 30 EOL images), ``metadata/rarespecies-catalog.csv`` (``rarespecies_id``,
``eol_content_id``, ``eol_page_id``, ``kingdom`` .. ``species``, ``sciName``, ``common``) and
``metadata/licenses.csv`` (license and copyright owner per ``rarespecies_id``). Images are matched to their
catalog row by the two EOL ids in the file name, so the layout never depends on how the taxon folders are
spelled. Every catalog row and every image file ends up in ``manifest.csv``, ``missing.csv`` (a catalog row
whose image is absent) or ``unmatched.csv`` (an image no catalog row names): nothing is dropped silently.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .. import storage
from ..errors import SpeciesfamError
from ..layout import label_slug

if TYPE_CHECKING:
    import pandas as pd

REPO_ID = "imageomics/rare-species"
DOWNLOAD_PATTERNS = ["dataset/**", "metadata/*.csv", "README.md"]
CATALOG_CSV = "metadata/rarespecies-catalog.csv"
LICENSES_CSV = "metadata/licenses.csv"
RANKS = ("phylum", "class", "order", "family", "genus", "species")
FILE_NAME = re.compile(r"^(\d+)_(\d+)_eol_full-size-copy\.jpe?g$", re.IGNORECASE)


class FetchError(SpeciesfamError, RuntimeError):
    """The dataset could not be downloaded or laid out; the message says what to do (the CLI: one line, exit 2)."""


def download(out: Path, revision: str | None = None) -> Path:
    """Download the hub repo's images and metadata into ``out/hub``; re-running skips finished files."""
    from huggingface_hub import HfApi, snapshot_download

    hub = out / "hub"
    try:
        info = HfApi().dataset_info(REPO_ID, revision=revision, timeout=20)
    except Exception as err:  # offline, DNS, proxy, gated, missing revision: all end the same way
        name = type(err).__name__
        if "Gated" in name or "NotFound" in name:
            hint = ("check the repo id/revision, and if the hub asks for it, accept the dataset's terms on "
                    "huggingface.co and set HF_TOKEN")
        else:
            hint = ("this machine cannot reach the hub (offline?). Download it where the hub is reachable "
                    f"(`speciesfam fetch rare-species --out DIR`, or `hf download {REPO_ID} --repo-type "
                    "dataset --local-dir SNAPSHOT`), copy it here and run `speciesfam fetch rare-species "
                    "--from SNAPSHOT --out DIR`")
        raise FetchError(f"cannot get {REPO_ID} from the Hugging Face hub ({name}: {err}); {hint}") from err
    print(f"fetch: downloading {REPO_ID} at revision {info.sha} into {hub} (~12k images; re-running resumes)",
          flush=True)
    try:
        snapshot_download(REPO_ID, repo_type="dataset", revision=info.sha, local_dir=hub,
                          allow_patterns=DOWNLOAD_PATTERNS)
    except Exception as err:
        raise FetchError(f"download of {REPO_ID} stopped ({type(err).__name__}: {err}); run the same command "
                         "again: files already downloaded are kept and skipped") from err
    (hub / "source.json").write_text(json.dumps({"repo_id": REPO_ID, "revision": info.sha}) + "\n")
    return hub


def _ids(values: "pd.Series") -> "pd.Series":
    """EOL ids as plain digit strings (a CSV read may turn ``123`` into ``123.0``)."""
    return values.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)


def read_catalog(snapshot: Path, label: str = "family") -> "pd.DataFrame":
    """The taxonomy catalog joined with the licenses file (when present), one row per image; it must hold the
    ``label`` rank's column."""
    import pandas as pd

    path = snapshot / CATALOG_CSV
    if not path.is_file():
        raise FetchError(f"{snapshot} is not a copy of {REPO_ID}: {CATALOG_CSV} is missing (give the folder "
                         "that holds dataset/ and metadata/)")
    # names as written: no NA guessing (a taxon spelled 'NA' is a name; an empty cell is caught as no label)
    try:
        cat = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:  # a partial copy
        raise FetchError(f"{path}: not a readable catalog ({type(err).__name__}: {err}); copy the dataset again "
                         "(a download cut short?)") from None
    need = {"eol_content_id", "eol_page_id", "genus", "species"} | ({label} if label != "species" else set())
    if need - set(cat.columns):
        raise FetchError(f"{path}: lacks column(s) {sorted(need - set(cat.columns))} (--label {label}); found "
                         f"{list(cat.columns)}")
    cat["eol_content_id"], cat["eol_page_id"] = _ids(cat["eol_content_id"]), _ids(cat["eol_page_id"])
    if "sciName" not in cat.columns:
        cat["sciName"] = cat["genus"] + " " + cat["species"]
    lic = snapshot / LICENSES_CSV
    if lic.is_file() and "rarespecies_id" in cat.columns:
        wanted = {"rarespecies_id", "license_name", "copyright_owner"}
        licenses = pd.read_csv(lic, dtype=str, keep_default_na=False, usecols=lambda c: c in wanted)
        if "rarespecies_id" in licenses.columns and len(licenses.columns) > 1:
            cat = cat.merge(licenses.drop_duplicates("rarespecies_id"), on="rarespecies_id", how="left")
    return cat


def scan_images(snapshot: Path) -> "pd.DataFrame":
    """Every file under ``dataset/`` with the EOL ids parsed from its name (NaN when the name differs)."""
    import pandas as pd

    root = snapshot / "dataset"
    if not root.is_dir():
        raise FetchError(f"{snapshot} has no dataset/ folder: the images of {REPO_ID} are missing")
    rows = []
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            m = FILE_NAME.match(name)
            rows.append({"source": str(Path(dirpath) / name), "eol_content_id": m and m.group(1),
                         "eol_page_id": m and m.group(2)})
    return pd.DataFrame(rows, columns=["source", "eol_content_id", "eol_page_id"])


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk), copying where links are impossible; a ``dst`` left by an
    earlier fetch stays when it holds the same bytes and is replaced otherwise."""
    if dst.exists():
        if os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False):
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def layout(snapshot: Path, out: Path, label: str = "family", folders: bool = False) -> "pd.DataFrame":
    """Write ``out/manifest.csv`` (path, label, group = species, taxonomy, license) from a hub snapshot.

    With ``folders``, images are also placed as ``out/<label>/<slug of VALUE>/<file>`` (hard links, e.g.
    ``out/family/Felidae-1a2b3c4d/``; ``layout.label_slug``, so a value such as ``../x`` never names a path
    outside ``out``) and the manifest, which keeps the exact value as ``label``, points there; otherwise it
    points at the snapshot's own files.
    """
    import numpy as np
    import pandas as pd

    cat, files = read_catalog(snapshot, label), scan_images(snapshot)  # a folder that is no copy: refused first
    out.mkdir(parents=True, exist_ok=True)  # (it left an empty --out: hostile tester round 28)
    keys = ["eol_content_id", "eol_page_id"]
    joined = files.merge(cat, on=keys, how="outer", indicator=True)
    found = joined[joined["_merge"] == "both"].drop(columns="_merge").copy()
    missing = joined[joined["_merge"] == "right_only"].drop(columns=["_merge", "source"])
    unmatched = joined[joined["_merge"] == "left_only"][["source", *keys]]
    unmatched = unmatched.assign(reason=np.where(
        unmatched["eol_content_id"].isna(), "file name is not <eol_content_id>_<eol_page_id>_eol_full-size-copy.jpg",
        "no catalog row has these EOL ids"))
    found["label"] = found["sciName"] if label == "species" else found[label]
    found["group"] = found["sciName"]
    no_label = found["label"].isna() | (found["label"].str.strip() == "")
    if no_label.any():
        unmatched = pd.concat([unmatched, found[no_label][["source", *keys]].assign(
            reason=f"catalog row has no {label}")], ignore_index=True)
        found = found[~no_label]
    if folders:
        paths, taken = [], set()
        found = found.sort_values("source")  # the same names on every run
        for src, lab in zip(found["source"], found["label"]):
            dst = out / label / label_slug(lab) / Path(src).name
            if dst in taken:  # two files of one name under one label (other folders of dataset/): keep both
                dst = dst.with_name(f"{dst.stem}-{hashlib.sha256(src.encode()).hexdigest()[:8]}{dst.suffix}")
            taken.add(dst)
            _place(Path(src), dst)
            paths.append(_rel(dst, out))
        found["path"] = paths
    else:
        found["path"] = [_rel(s, out) for s in found["source"]]
    front = ["path", "label", "group"]
    found = found[front + [c for c in found.columns if c not in front and c != "source"]]
    found = found.sort_values("path").reset_index(drop=True)
    for name, table in (("manifest.csv", found), ("missing.csv", missing), ("unmatched.csv", unmatched)):
        storage.write_table(table, str(out / name))
    storage.write_text(str(out / "FETCH.md"), _report(snapshot, out, found, missing, unmatched, label))
    return found


def _rel(path, out: Path) -> str:
    """Path relative to ``out`` when inside it (the folder stays movable), else absolute."""
    path = Path(path)
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)


def _report(snapshot: Path, out: Path, found, missing, unmatched, label: str) -> str:
    per = found["label"].value_counts()
    source = snapshot / "source.json"
    rev = json.loads(source.read_text())["revision"] if source.is_file() else "unknown (local copy)"
    licenses = found["license_name"].value_counts().to_dict() if "license_name" in found else {}
    lines = [f"# {REPO_ID} laid out for speciesfam", "", f"- snapshot: {snapshot}, revision: {rev}",
             f"- images in manifest.csv: {len(found)}", f"- {label} labels: {len(per)} "
             f"({per.min() if len(per) else 0} to {per.max() if len(per) else 0} images each)",
             f"- species (group column): {found['group'].nunique()}",
             f"- catalog rows without an image (missing.csv): {len(missing)}",
             f"- files not in the catalog (unmatched.csv): {len(unmatched)}",
             f"- image licenses: {licenses or 'see metadata/licenses.csv'} (CC0 to CC BY-NC-SA: check before "
             "redistributing a model or images)", "",
             "Next: `speciesfam catalog " + str(out / "manifest.csv") + " --workdir RUN` (add `--group-split` to "
             "hold whole species out of training; families with fewer than 3 species are then excluded).", ""]
    return "\n".join(lines)


def fetch_rare_species(out: str, source: str | None = None, label: str = "family", folders: bool = False,
                       revision: str | None = None) -> "pd.DataFrame":
    """Download (or take the local copy ``source`` of) ``imageomics/rare-species`` and lay it out in ``out``."""
    if storage.is_remote(out):
        raise FetchError(f"--out {out}: give a local folder; copy it to shared storage after the fetch")
    if label not in RANKS:
        raise FetchError(f"label={label!r} is not a rank of the catalog; choose one of {list(RANKS)}")
    dest = Path(out).resolve()
    if dest.exists() and not dest.is_dir():
        raise FetchError(f"--out {out}: is a file, not a folder; give a new or existing folder for the download")
    if source:
        snapshot = Path(source).resolve()
        if not snapshot.is_dir():
            raise FetchError(f"--from {source}: no such folder (a local copy of {REPO_ID})")
    else:
        snapshot = download(dest, revision)
    return layout(snapshot, dest, label=label, folders=folders)
