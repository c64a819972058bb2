"""Messy input (issue 12), folders and files: each observation of a collection losing, merging or mislabelling
files is a case here: symlink loops and linked folders, hidden files and folders, files at the root, images named
by the wrong extension, non-images, empty family folders, a messy bucket. Manifests: test_messy_manifests.py.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from speciesfam import layout
from speciesfam.config import CatalogConfig
from speciesfam.data.catalog import build_manifest, run_catalog

SMALL = CatalogConfig(min_images=3)


def png(path, seed: int, fmt: str = "PNG") -> str:
    """An 8x8 image with bytes of its own (distinct seeds never collide as content duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (8, 8), (seed % 256, seed // 256 % 256, 7))
    img.putpixel((0, 0), (seed * 7 % 256, seed * 13 % 256, seed * 29 % 256))
    img.save(path, format=fmt)
    return str(path)


def family(root, name: str, n: int, start: int) -> list[str]:
    return [png(root / name / f"img{i}.png", start + i) for i in range(n)]


def by_status(m: pd.DataFrame) -> dict[str, int]:
    return m["status"].value_counts().to_dict()


def test_symlink_loop_and_linked_folders_list_each_real_file_once(tmp_path):
    """Observed: Beta/loop -> .. turned 29 files into 1,229 rows, other families' images labelled Beta."""
    src = tmp_path / "src"
    files = {"Alpha": family(src, "Alpha", 10, 0), "Beta": family(src, "Beta", 9, 100),
             "Gamma": family(src, "Gamma", 10, 200)}
    (src / "Beta" / "loop").symlink_to("..")
    (src / "Alpha" / "again").symlink_to("../Alpha")  # a second way to Alpha's files (from another family's
    # folder, a link labels them twice: test_a_folder_linked_into_another_family_...)
    (src / "Alpha" / "self.png").symlink_to("img0.png")  # a link to a file already listed
    (src / "Alpha" / "0-link.png").symlink_to("img1.png")  # ... listed before it: still the link is the copy
    outside = family(tmp_path / "elsewhere", "delta", 4, 300)
    (src / "Delta").symlink_to(tmp_path / "elsewhere" / "delta")  # a family that lives outside the tree
    m = run_catalog(str(src), str(tmp_path / "run"), SMALL)
    assert len(m) == 29 + 4 + 2 and by_status(m) == {"ok": 33, "duplicate": 2}
    ok = m[m["status"] == "ok"]
    for fam, paths in files.items():
        assert sorted(ok.loc[ok["label"] == fam, "path"]) == sorted(paths)
    assert sorted(m.loc[m["label"] == "Delta", "path"].str.rsplit("/", n=1).str[-1]) == sorted(
        os.path.basename(p) for p in outside)
    links = m[m["status"] == "duplicate"].set_index("path")  # a file link gets a row of its own, its own name
    assert links["duplicate_of"].to_dict() == {str(src / "Alpha" / "self.png"): files["Alpha"][0],
                                               str(src / "Alpha" / "0-link.png"): files["Alpha"][1]}
    md = (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert "files seen: 35, rows written: 35" in md
    assert "not listed again): 2" in md  # loop, again


def test_a_file_linked_into_another_family_is_a_label_conflict_like_a_copy(tmp_path):
    """A link Beta/x.png -> ../Alpha/img1.png labels one image twice; it was counted as an alias and the image
    silently kept its first label. Now: as for a copy of its bytes, both rows ``conflict``, naming both labels."""
    src = tmp_path / "src"
    alpha = family(src, "Alpha", 4, 0)
    family(src, "Beta", 4, 10)
    (src / "Beta" / "borrowed.png").symlink_to("../Alpha/img1.png")
    png(tmp_path / "elsewhere" / "shared.png", 99)
    (src / "Alpha" / "shared.png").symlink_to(tmp_path / "elsewhere" / "shared.png")  # outside the tree,
    (src / "Beta" / "shared.png").symlink_to(tmp_path / "elsewhere" / "shared.png")  # linked from two families
    m = build_manifest(str(src), SMALL)
    assert len(m) == m.attrs["files_seen"] == 11 and m.attrs["aliases"] == 0
    got = {r.path: (r.status, r.reason) for r in m.itertuples()}
    for path in (alpha[1], str(src / "Beta" / "borrowed.png"), str(src / "Alpha" / "shared.png"),
                 str(src / "Beta" / "shared.png")):
        assert got[path][0] == "conflict" and "'Alpha', 'Beta'" in got[path][1], (path, got[path])
    assert by_status(m) == {"ok": 7, "conflict": 4}


def test_a_folder_linked_into_another_family_is_a_label_conflict_like_a_copy(tmp_path):
    """A family folder that links to another (Lynx -> Felidae), two family folders that link to one folder outside,
    a family's subfolder that links to another family: the second family's name vanished with only a count in
    catalog.md ('links to folders already listed'), its images labelled by the first (hostile tester round 66).
    As for a file linked into another family, or a copy of its bytes, each such image is a conflict of both."""
    src = tmp_path / "src"
    felidae = family(src, "Felidae", 4, 0)
    family(src, "Canidae", 4, 10)
    family(src, "Ranidae", 4, 20)
    outside = family(tmp_path / "ext", "Outside", 4, 30)
    (src / "Lynx").symlink_to("Felidae")
    (src / "Bears").symlink_to(tmp_path / "ext" / "Outside")
    (src / "Ursidae").symlink_to(tmp_path / "ext" / "Outside")
    (src / "Ranidae" / "frogs").symlink_to("../Canidae")
    (src / "Ranidae" / "loop").symlink_to("..")  # the folder of all families: a loop, still not listed again
    (src / "Canidae" / "itself").symlink_to(".")  # the family's own folder: its own label, not listed again
    m = build_manifest(str(src), SMALL)
    assert len(m) == m.attrs["files_seen"] == 28 and m.attrs["aliases"] == 2
    got = m.set_index("path")[["status", "reason"]]
    for path, labels in [*((p, "'Felidae', 'Lynx'") for p in felidae),
                         *((str(src / "Lynx" / os.path.basename(p)), "'Felidae', 'Lynx'") for p in felidae),
                         *((str(src / f / os.path.basename(p)), "'Bears', 'Ursidae'") for p in outside
                           for f in ("Bears", "Ursidae")),
                         *((str(src / "Ranidae" / "frogs" / f"img{i}.png"), "'Canidae', 'Ranidae'") for i in range(4))]:
        assert got.at[path, "status"] == "conflict" and labels in got.at[path, "reason"], (path, got.loc[path])
    assert by_status(m) == {"conflict": 24, "ok": 4}  # Ranidae's own images


def test_every_file_of_a_folder_gets_a_row_and_a_reason(tmp_path):
    """Observed: root files, hidden files, a PNG named .heic and notes.txt got no row; .cache/ became a family."""
    src = tmp_path / "src"
    family(src, "Alpha", 4, 0)
    family(src, "Beta", 4, 10)
    png(src / "Alpha" / "phone.heic", 50)  # a PNG with the wrong extension: recognised by content
    png(src / "Alpha" / "scan", 51, fmt="JPEG")  # no extension at all
    (src / "Alpha" / "notes.txt").write_text("field notes, not an image")
    (src / "Beta" / "empty.jpg").write_bytes(b"")
    png(src / ".cache" / "thumb.png", 60)
    png(src / "Beta" / ".hidden.png", 61)
    png(src / "Beta" / ".thumbs" / "t.png", 62)
    png(src / "root.png", 70)
    (src / "README").write_text("about this collection")
    (src / "Beta" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(src / "Beta" / "pipe")  # reading it would block forever: never opened
    # a NAS's thumbnails (JPEG copies of the photos) and a Windows download's mark copied through WSL (round 48)
    png(src / "Alpha" / "@eaDir" / "img0.png" / "SYNOPHOTO_THUMB_S.jpg", 80, fmt="JPEG")
    png(src / "@eaDir" / "Alpha" / "SYNOPHOTO_THUMB_M.jpg", 81, fmt="JPEG")
    png(src / "Beta" / "$RECYCLE.BIN" / "deleted.png", 82)
    (src / "Beta" / "img10.png:Zone.Identifier").write_text("[ZoneTransfer]\nZoneId=3\n")
    m = build_manifest(str(src), SMALL)
    files = [p for p in src.rglob("*") if not p.is_dir()]
    assert len(m) == len(files) == m.attrs["files_seen"]
    name = lambda p: p.rsplit("/", 1)[-1]  # noqa: E731
    got = {name(r.path): (r.status, r.reason) for r in m.itertuples()}
    assert got["phone.heic"][0] == got["scan"][0] == "ok"
    assert got["notes.txt"] == ("unreadable", "not an image file (format not recognised)")
    assert got["empty.jpg"] == ("unreadable", "empty file (0 bytes)")
    for hidden in ("thumb.png", ".hidden.png", "t.png"):
        assert got[hidden][0] == "skipped" and got[hidden][1].startswith("hidden")
    assert got["root.png"][0] == got["README"][0] == "no_family"
    assert got["gone.jpg"][0] == "unreadable" and "broken symbolic link" in got["gone.jpg"][1]
    assert got["pipe"] == ("unreadable", "not a regular file (a FIFO)")
    assert got["SYNOPHOTO_THUMB_S.jpg"] == got["SYNOPHOTO_THUMB_M.jpg"] == (
        "skipped", "in a system folder (Synology's thumbnails), not an image of the collection")
    assert got["deleted.png"] == ("skipped", "in a system folder (Windows' recycle bin), not an image of the collection")
    assert got["img10.png:Zone.Identifier"] == ("skipped", "system file (Windows' download mark), not an image")
    assert set(m.loc[m["status"] == "ok", "label"]) == {"Alpha", "Beta"}  # .cache and .thumbs are no family
    assert set(m["label"].dropna()) == {"Alpha", "Beta"}  # nor is a NAS's @eaDir beside the family folders
    assert (m.loc[m["status"] != "ok", "reason"].str.len() > 0).all()


def test_a_file_name_that_is_not_utf8_is_unreadable_and_catalog_md_shows_it_as_the_manifest_does(tmp_path):
    """catalog.md showed 'caf\\\\xe9.png' (rendered with two backslashes) for the manifest's 'caf\\xe9.png'."""
    from speciesfam.data.catalog import report

    src = tmp_path / "src"
    family(src, "Alpha", 4, 0)
    family(src, "Beta", 4, 10)
    png(Path(os.fsdecode(os.fsencode(str(src / "Beta")) + b"/caf\xe9.png")), 20)
    m = build_manifest(str(src), SMALL)
    bad = m[m["status"] == "unreadable"]
    assert bad["path"].tolist() == [f"{src}/Beta/caf\\xe9.png"] and bad["reason"].iloc[0].startswith(
        "file name is not valid UTF-8 (a byte of another encoding): rename it to UTF-8")
    row = next(line for line in report(m, str(src), SMALL).splitlines() if "caf" in line)
    assert row.startswith(f"| {src}/Beta/caf\\\\xe9.png | Beta | file name is not valid UTF-8"), row  # renders 'caf\\xe9'


def test_images_of_several_frames_are_used_by_their_first_and_said(tmp_path):
    """An animated GIF or a multi-page TIFF was read from its first frame, unsaid (round 67)."""
    from speciesfam.data.images import read_rgb
    from speciesfam.summaries import summary_line

    src = tmp_path / "src"
    family(src, "Alpha", 4, 0)
    family(src, "Beta", 4, 10)
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 255 - 40 * i)) for i in range(3)]
    frames[0].save(src / "Alpha" / "moving.gif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "Beta" / "pages.tif", save_all=True, append_images=frames[1:2])
    whole = io.BytesIO()  # a TIFF whose later pages are cut off: its count unknown, said (round 69)
    frames[0].save(whole, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    (src / "Beta" / "torn.tif").write_bytes(whole.getvalue()[:len(whole.getvalue()) * 2 // 3])
    run_catalog(str(src), str(tmp_path / "run"), SMALL)
    assert (read_rgb(str(src / "Beta" / "pages.tif")) == np.asarray(frames[0])).all()
    md = (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert "- images of several frames (animations, multi-page TIFFs), each used as its first frame: 3 " \
           "(listed under Images of several frames)" in md
    assert f"| {src}/Alpha/moving.gif | 3 |\n| {src}/Beta/pages.tif | 2 |\n| {src}/Beta/torn.tif | several (its page " \
           "list is damaged) |\n" in md  # each, to find them (round 68)
    assert summary_line(str(tmp_path / "run"), "catalog").endswith(
        "; 3 images of several frames (animations, multi-page TIFFs): their first frames are used (see catalog.md)")
    (src / "Beta" / "pages.tif").unlink()
    (src / "Beta" / "torn.tif").unlink()
    (src / "Alpha" / "moving.gif").unlink()
    run_catalog(str(src), str(tmp_path / "run"), SMALL)
    assert "frames" not in summary_line(str(tmp_path / "run"), "catalog")


def test_a_family_folder_named_only_whitespace_is_invalid_like_such_a_manifest_label(tmp_path):
    """A folder '   ' or '\r' was a family trained as any other, while the same label in a manifest is invalid
    (round 56): the same collection gave two sets of families by its layout."""
    src = tmp_path / "src"
    family(src, "Alpha", 4, 0)
    blank = family(src, "   ", 3, 10) + family(src, "\r", 3, 20)
    blank.append(png(src / "   " / "sub" / "nested.png", 30))  # not said to take the name '   ' (round 57)
    m = build_manifest(str(src), SMALL)
    assert m.attrs["nested"] is None
    rows = m.set_index("path")
    assert (rows.loc[blank, "status"] == "invalid").all() and set(rows.loc[blank, "label"]) == {"   ", "\r"}
    assert (rows.loc[blank, "reason"] == "family folder name is only whitespace: rename it to the family's name").all()
    assert set(m.loc[m["status"] == "ok", "label"]) == {"Alpha"}
    listed = pd.DataFrame({"path": blank, "label": ["   "] * 3 + ["\r"] * 3 + ["   "]})  # as a manifest: invalid too
    listed.to_csv(tmp_path / "m.csv", index=False)
    assert set(build_manifest(str(tmp_path / "m.csv"), SMALL)["status"]) == {"invalid"}


def test_a_run_folder_given_as_the_image_folder_is_refused(tmp_path):
    """A run folder catalogued as images: its logs/ and stages/ became families (round 49)."""
    from speciesfam.errors import SourceError

    family(tmp_path / "src", "Alpha", 3, 0)
    family(tmp_path / "src", "Beta", 3, 10)
    run_catalog(str(tmp_path / "src"), str(tmp_path / "run"), SMALL)
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'run'} is a speciesfam run folder, not a folder of images"
                                          r".*, or its manifest.parquet as a manifest$"):  # the one it holds
        run_catalog(str(tmp_path / "run"), str(tmp_path / "run2"), SMALL)
    assert len(run_catalog(str(tmp_path / "run" / layout.MANIFEST), str(tmp_path / "run2"), SMALL)) == 6  # a manifest


def test_a_family_folder_holding_no_file_is_named(tmp_path):
    """An empty family folder (or one holding only empty folders) is no file, so no row: it left no trace in
    catalog.md or on the console, and the family was simply missing."""
    from speciesfam.summaries import summary_line

    src = tmp_path / "src"
    family(src, "Alpha", 4, 0)
    family(src, "Beta", 4, 10)
    (src / "Gamma").mkdir()
    (src / "Delta" / "2024").mkdir(parents=True)
    (src / ".trash").mkdir()  # hidden: no family either way
    (src / "Alias").symlink_to(src / "Alpha", target_is_directory=True)  # a link to a folder listed: an alias
    run_catalog(str(src), str(tmp_path / "run"), SMALL)
    md = (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert '- family folders holding no file (no rows, no family): `"Delta"`, `"Gamma"`' in md
    assert summary_line(str(tmp_path / "run"), "catalog").endswith(
        "; 2 family folders holding no file (see catalog.md): 'Delta', 'Gamma'")
    # a family folder named '...' is hidden: its files skipped, said only as '2 skipped' (round 48)
    family(src, "...", 2, 20)
    png(src / "@eaDir" / "Alpha" / "SYNOPHOTO_THUMB_S.jpg", 30, fmt="JPEG")
    run_catalog(str(src), str(tmp_path / "run"), SMALL)
    # and an old run folder kept beside the families: it was a family of its PNGs (round 50)
    family(tmp_path / "other", "A", 3, 40)
    family(tmp_path / "other", "B", 3, 50)
    run_catalog(str(tmp_path / "other"), str(src / "oldrun"), SMALL)
    m = run_catalog(str(src), str(tmp_path / "run"), SMALL)
    assert set(m.loc[m["path"].str.contains("/oldrun/"), "status"]) == {"skipped"}
    line, md = summary_line(str(tmp_path / "run"), "catalog"), (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert "; 3 folders at the top skipped as hidden, system or run folders (see catalog.md): " in line, line
    assert "subfolders" not in line  # its files took no family's name (it said they did: round 51)
    assert all(said in line for said in ("'...' (2 files)", "'@eaDir' (1 file)", "'oldrun' (4 files)")), line
    assert "(hidden: the name starts with '.'; a system folder; or a speciesfam run folder): " in md
    assert all(said in md for said in ('`"..."` (2)', '`"@eaDir"` (1)', '`"oldrun"` (4)')), md


def test_files_in_a_family_folders_subfolders_are_said_to_take_its_name(tmp_path):
    """A taxonomy tree as folders (Order/Family/image): every image took its order's name as family, and neither
    the console nor catalog.md said so (hostile tester round 42)."""
    from speciesfam.summaries import summary_line

    src = tmp_path / "tax"
    family(src / "Carnivora", "Felidae", 3, 0)
    family(src / "Carnivora", "Canidae", 3, 10)
    family(src, "Rodentia", 3, 20)  # directly in its folder: no subfolder
    (src / "Rodentia" / ".cache").mkdir()
    png(src / "Rodentia" / ".cache" / "thumb.png", 30)  # hidden: skipped, not counted as labelled
    m = run_catalog(str(src), str(tmp_path / "run"), SMALL)
    assert sorted(m.loc[m["status"] == layout.OK, "label"].unique()) == ["Carnivora", "Rodentia"]
    md = (tmp_path / "run" / layout.CATALOG_MD).read_text()
    assert ('- files in subfolders of a family folder, labelled by the family folder (the first folder level names '
            'the family): 6, e.g. `"Carnivora/Canidae/img0.png"` as `"Carnivora"`') in md, md
    assert summary_line(str(tmp_path / "run"), "catalog").endswith(
        "; 6 files in subfolders of a family folder take its name (e.g. 'Carnivora/Canidae/img0.png' as "
        "'Carnivora'; see catalog.md)")
    family(tmp_path / "flat", "Alpha", 3, 40)
    family(tmp_path / "flat", "Beta", 3, 50)
    run_catalog(str(tmp_path / "flat"), str(tmp_path / "run2"), SMALL)
    assert "subfolders" not in summary_line(str(tmp_path / "run2"), "catalog")
    assert "subfolders" not in (tmp_path / "run2" / layout.CATALOG_MD).read_text()


def test_non_image_larger_than_the_limit_is_not_read_whole(tmp_path, monkeypatch):
    from speciesfam.data import catalog

    monkeypatch.setattr(catalog, "MAX_UNKNOWN_BYTES", 1000)
    family(tmp_path / "src", "Alpha", 3, 0)
    (tmp_path / "src" / "Alpha" / "video.jpg").write_bytes(b"\x00" * 5000)
    png(tmp_path / "src" / "Alpha" / "big.png", 9)
    with open(tmp_path / "src" / "Alpha" / "big.png", "ab") as f:
        f.write(b"\x00" * 5000)  # a real PNG larger than the limit: its magic bytes say image, so it is read
    m = build_manifest(str(tmp_path / "src"), SMALL)
    got = dict(zip(m["path"].str.rsplit("/", n=1).str[-1], m["reason"]))
    assert "larger than 1000 bytes" in got["video.jpg"] and got["big.png"] == ""


def test_heic_photos_decode_and_damaged_ones_get_a_reason_that_names_the_format(monkeypatch):
    """Phones' HEIC photos were all 'unreadable', with advice (install pillow-heif) that changed nothing: Pillow
    reads HEIC once pillow-heif registers its opener, which speciesfam does (round 48)."""
    from speciesfam.data.images import DecodeError, decode_rgb, open_image, sniff

    import pillow_heif

    buf = io.BytesIO()  # a phone's photo, written by pillow-heif itself (not through Pillow: opening it is tested)
    pillow_heif.from_pillow(Image.new("RGB", (40, 30), (200, 30, 60))).save(buf)
    assert sniff(buf.getvalue()[:16]) == "HEIC"
    pixels = decode_rgb(buf.getvalue())
    assert pixels.shape == (30, 40, 3) and np.abs(pixels[5, 5].astype(int) - (200, 30, 60)).max() <= 3
    heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    assert sniff(heic[:16]) == "HEIC"
    with pytest.raises(DecodeError, match="^corrupt or truncated HEIC image"):
        open_image(heic)
    with pytest.raises(DecodeError, match="^corrupt or truncated HEIC image: ") as cut:  # the decoder's own words,
        open_image(buf.getvalue()[:-20])  # which ended in a newline (round 49)
    assert "\n" not in str(cut.value), cut.value
    from speciesfam.data import images

    monkeypatch.setattr(images, "_heif", lambda: False)  # installed without its dependencies: no HEIF opener
    monkeypatch.delitem(Image.OPEN, "HEIF")
    monkeypatch.setattr(Image, "ID", [name for name in Image.ID if name != "HEIF"])
    with pytest.raises(DecodeError, match=r"HEIC image, but pillow-heif is not installed \(`pip install pillow-heif`"):
        open_image(heic)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="WEBP")
    assert sniff(buf.getvalue()[:16]) == "WEBP"
    # a damaged file of a format Pillow reads is no missing plugin (a cut GIF read 'this Pillow cannot decode
    # GIF (a plugin such as pillow-heif adds HEIC/AVIF)': hostile tester round 42)
    for fmt, keep in (("GIF", 20), ("PNG", 30), ("TIFF", 100)):
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (9, 9, 9)).save(buf, format=fmt)
        with pytest.raises(DecodeError, match=f"^corrupt or truncated {fmt} image, or a {fmt} variant Pillow"):
            open_image(buf.getvalue()[:keep])


def test_a_messy_bucket_is_accounted_like_a_folder(tmp_path, monkeypatch):
    """s3:// (pyarrow, no links): hidden keys, root keys, a PNG named .heic, a text file; a manifest in the
    bucket whose relative paths become s3:// URIs."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for k, v in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                     "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                     "AWS_EC2_METADATA_DISABLED": "true"}.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="messy")
        keys = {f"src/{fam}/{i}.png": png(tmp_path / f"{fam}{i}.png", seed)
                for seed, (fam, i) in enumerate((f, i) for f in ("Alpha", "Beta") for i in range(3))}
        keys["src/Alpha/phone.heic"] = png(tmp_path / "heic", 99)
        keys["src/Alpha/notes.txt"] = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("not an image")
        keys["src/.cache/t.png"] = png(tmp_path / "t.png", 98)
        keys["src/root.png"] = png(tmp_path / "root.png", 97)
        for key, local in keys.items():
            s3.upload_file(local, "messy", key)
        m = run_catalog("s3://messy/src", "s3://messy/run", SMALL)
        got = {r.path.removeprefix("s3://messy/src/"): r.status for r in m.itertuples()}
        expected = {k.removeprefix("src/"): "ok" for k in keys}  # phone.heic included: a PNG by content
        expected.update({"Alpha/notes.txt": "unreadable", ".cache/t.png": "skipped", "root.png": "no_family"})
        assert got == expected
        body = io.BytesIO()
        pd.DataFrame({"path": ["Alpha/0.png", "./Alpha/1.png", "Beta/../Alpha/2.png", "Alpha/0.png"],
                      "label": ["007", "007", "007", "7"]}).to_csv(body, index=False)
        s3.put_object(Bucket="messy", Key="src/list.csv", Body=body.getvalue())
        m = build_manifest("s3://messy/src/list.csv", SMALL)
        assert sorted(m["path"]) == ["s3://messy/src/Alpha/0.png"] * 2 + ["s3://messy/src/Alpha/1.png",
                                                                          "s3://messy/src/Alpha/2.png"]
        assert by_status(m) == {"conflict": 2, "too_small": 2}
    finally:
        server.stop()
