"""`speciesfam fetch rare-species`: layout of a small fake of the hub repo, catalog on it, offline failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from PIL import Image

from speciesfam.cli import main
from speciesfam.config import CatalogConfig
from speciesfam.data.catalog import build_manifest
from speciesfam.layout import label_slug

# family -> {species: images}; Hominidae has a single species, so a species-disjoint split cannot hold it.
TAXA = {"Felidae": {"Panthera onca": 4, "Panthera pardus": 4, "Lynx pardinus": 4},
        "Ranidae": {"Rana latastei": 3, "Rana sevosa": 3, "Lithobates okaloosae": 3},
        "Hominidae": {"Pongo abelii": 6}}
HIGHER = {"Felidae": ("Chordata", "Mammalia", "Carnivora"), "Ranidae": ("Chordata", "Amphibia", "Anura"),
          "Hominidae": ("Chordata", "Mammalia", "Primates")}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """Hub layout: dataset/<taxon folder>/<content>_<page>_eol_full-size-copy.jpg plus metadata/*.csv."""
    root = tmp_path_factory.mktemp("rare-species")
    rows, n = [], 0
    for family, species in TAXA.items():
        phylum, cls, order = HIGHER[family]
        for sci, count in species.items():
            genus, epithet = sci.split()
            page = 1000 + n
            folder = root / "dataset" / "_".join(["animalia", phylum, cls, order, family, genus, epithet]).lower()
            folder.mkdir(parents=True)
            for i in range(count):
                n += 1
                content = 50000 + n
                Image.new("RGB", (40, 32), (n * 7 % 256, n * 13 % 256, n * 29 % 256)).save(
                    folder / f"{content}_{page}_eol_full-size-copy.jpg")
                rows.append({"rarespecies_id": f"rs-{n}", "eol_content_id": content, "eol_page_id": page,
                             "kingdom": "Animalia", "phylum": phylum, "class": cls, "order": order,
                             "family": family, "genus": genus, "species": epithet, "sciName": sci,
                             "common": f"common {sci}"})
    # A catalog row whose image never arrived, a stray image, and a file with a foreign name.
    rows.append({**rows[0], "rarespecies_id": "rs-lost", "eol_content_id": 99999})
    (root / "dataset" / "stray").mkdir()
    Image.new("RGB", (8, 8)).save(root / "dataset" / "stray" / "77_88_eol_full-size-copy.jpg")
    (root / "dataset" / "stray" / "notes.txt").write_text("not an image")
    (root / "metadata").mkdir()
    pd.DataFrame(rows).to_csv(root / "metadata" / "rarespecies-catalog.csv", index=False)
    pd.DataFrame({"rarespecies_id": [r["rarespecies_id"] for r in rows], "license_name": "cc-by",
                  "copyright_owner": "someone", "md5": "x"}).to_csv(root / "metadata" / "licenses.csv",
                                                                   index=False)
    return root, n


def test_manifest_accounts_for_every_catalog_row_and_file(snapshot, tmp_path, capsys):
    root, images = snapshot
    assert main(["fetch", "rare-species", "--from", str(root), "--out", str(tmp_path)]) == 0
    assert f"images in manifest.csv: {images}" in capsys.readouterr().out
    m = pd.read_csv(tmp_path / "manifest.csv")
    assert len(m) == images
    assert m.groupby("label")["group"].nunique().to_dict() == {f: len(s) for f, s in TAXA.items()}
    assert set(m["license_name"]) == {"cc-by"}
    assert all((tmp_path / p).is_file() for p in m["path"])
    # every path's folder names the same family as its label (the join used the ids in the file names)
    assert all(lab.lower() in p for p, lab in zip(m["path"], m["label"]))
    missing, unmatched = pd.read_csv(tmp_path / "missing.csv"), pd.read_csv(tmp_path / "unmatched.csv")
    assert missing["rarespecies_id"].tolist() == ["rs-lost"]
    assert sorted(os.path.basename(s) for s in unmatched["source"]) == ["77_88_eol_full-size-copy.jpg", "notes.txt"]
    assert (tmp_path / "FETCH.md").read_text().count("(missing.csv): 1") == 1


def test_laid_out_data_catalogs_with_species_held_out(snapshot, tmp_path):
    root, _ = snapshot
    main(["fetch", "rare-species", "--from", str(root), "--out", str(tmp_path)])
    per_image = build_manifest(str(tmp_path / "manifest.csv"), CatalogConfig(min_images=3))
    assert (per_image["status"] == "ok").all()
    assert (per_image.groupby("label")["split"].nunique() == 3).all()
    by_species = build_manifest(str(tmp_path / "manifest.csv"), CatalogConfig(min_images=3, group_split=True))
    ok = by_species[by_species["status"] == "ok"]
    assert (ok.groupby("group")["split"].nunique() == 1).all()
    assert (ok.groupby("label")["split"].nunique() == 3).all()
    lone = by_species[by_species["label"] == "Hominidae"]
    assert (lone["status"] == "too_small").all() and lone["reason"].str.contains("3 groups").all()


def test_folder_layout_hard_links_one_folder_per_label(snapshot, tmp_path):
    root, images = snapshot
    assert main(["fetch", "rare-species", "--from", str(root), "--out", str(tmp_path), "--layout", "folders",
                 "--label", "order"]) == 0
    families = tmp_path / "order"
    names = {label_slug(o): o for o in ("Anura", "Carnivora", "Primates")}  # folders are named by the slug
    assert sorted(p.name for p in families.iterdir()) == sorted(names)
    linked = sorted(families.rglob("*.jpg"))
    assert len(linked) == images
    original = next(root.joinpath("dataset").rglob(linked[0].name))
    assert os.path.samefile(linked[0], original)  # a hard link: no second copy on disk
    assert build_manifest(str(families), CatalogConfig(min_images=3))["label"].map(names).value_counts().to_dict() \
        == {"Carnivora": 12, "Anura": 9, "Primates": 6}
    m = pd.read_csv(tmp_path / "manifest.csv", dtype=str, keep_default_na=False)  # exact labels, slugged folders
    assert all(p.startswith(f"order/{label_slug(lab)}/") for p, lab in zip(m["path"], m["label"]))


def test_bad_inputs_name_the_fix(snapshot, tmp_path, capsys):
    root, _ = snapshot
    assert main(["fetch", "rare-species", "--from", str(root / "dataset"), "--out", str(tmp_path / "new")]) == 2
    assert "rarespecies-catalog.csv is missing" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # a refused fetch writes nothing (it left an empty --out; round 28)
    partial = tmp_path / "partial" / "metadata"  # a copy cut short: an empty catalog file (a traceback; round 29)
    partial.mkdir(parents=True)
    (partial / "rarespecies-catalog.csv").write_bytes(b"")
    assert main(["fetch", "rare-species", "--from", str(partial.parent), "--out", str(tmp_path / "new")]) == 2
    assert "rarespecies-catalog.csv: not a readable catalog (EmptyDataError: " in capsys.readouterr().err
    assert main(["fetch", "rare-species", "--from", str(root), "--out", str(tmp_path), "--label", "tribe"]) == 2
    assert "choose one of" in capsys.readouterr().err
    # --out an existing file: a FileExistsError traceback before
    assert main(["fetch", "rare-species", "--from", str(root), "--out", str(root / "metadata" / "licenses.csv")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    # a catalog without the chosen rank's column: a KeyError traceback before
    import shutil

    copy = tmp_path / "no-order"
    shutil.copytree(root, copy)
    cat = pd.read_csv(copy / "metadata" / "rarespecies-catalog.csv").drop(columns=["order"])
    cat.to_csv(copy / "metadata" / "rarespecies-catalog.csv", index=False)
    assert main(["fetch", "rare-species", "--from", str(copy), "--out", str(tmp_path / "o"), "--label", "order"]) == 2
    assert "lacks column(s) ['order'] (--label order)" in capsys.readouterr().err


def test_folder_layout_keeps_two_files_of_one_name_and_one_label(snapshot, tmp_path):
    """Two different images named alike in two folders of dataset/, one family: --layout folders placed the
    first, skipped the second (the destination existed) and listed the first's path twice."""
    import shutil

    root, images = snapshot
    copy = tmp_path / "snap"
    shutil.copytree(root, copy)
    first = next(p for p in sorted((copy / "dataset").rglob("*.jpg")) if "felidae" in str(p))
    (copy / "dataset" / "second").mkdir()
    Image.new("RGB", (40, 32), (1, 2, 3)).save(copy / "dataset" / "second" / first.name)
    out = tmp_path / "out"
    for _ in range(2):  # a re-run gives the same layout
        assert main(["fetch", "rare-species", "--from", str(copy), "--out", str(out), "--layout", "folders"]) == 0
        m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
        assert len(m) == images + 1 and m["path"].is_unique
        sources = {os.stat(out / p).st_ino for p in m["path"]}
        assert len(sources) == images + 1  # every image is its own file


@pytest.mark.parametrize("env", [{"HF_ENDPOINT": "http://127.0.0.1:9"}, {"HF_HUB_OFFLINE": "1"}],
                         ids=["unreachable", "offline-mode"])
def test_offline_fails_at_once_with_the_way_out(tmp_path, env):
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "speciesfam.cli", "fetch", "rare-species", "--out",
                          str(tmp_path / "rs")], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    assert "cannot get imageomics/rare-species" in run.stderr and "--from SNAPSHOT" in run.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "rs" / "hub" / "dataset").exists()
