"""Clean on collections that changed or were never usable, and with user embedders that do not fit: each ends in
a status per row or in one line, never a traceback (hostile tester, 2026-12-03). The user embedder here is the
package's colour-histogram one (no weights), through the real Ray Data pipeline."""

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from speciesfam import layout
from speciesfam.config import CleanConfig
from speciesfam.data.catalog import run_catalog
from speciesfam.data.clean import run_clean
from speciesfam.errors import SpeciesfamError

from noise_families import HIST, noise_families


def test_images_that_changed_after_catalog_become_unreadable_rows(tmp_path, ray_session, capsys):
    """A file deleted and one truncated after catalog, in the middle of an embedding batch: clean crashed with
    an IndexError (NumPy vectors beside an empty list in one Ray block). Now each is `unreadable` with the
    decode error, and every other row goes on."""
    noise_families(tmp_path / "img", {"A": 8, "B": 8, "C": 8})
    manifest = run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    (tmp_path / "img" / "B" / "3.png").unlink()
    cut = tmp_path / "img" / "C" / "5.png"
    cut.write_bytes(cut.read_bytes()[:60])
    cleaned = run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, batch_size=8, min_per_family=1))
    assert len(cleaned) == len(manifest)
    bad = cleaned[cleaned["status"] == layout.UNREADABLE_STATUS].set_index("path")["reason"]
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in bad.index) == ["B/3.png", "C/5.png"]
    assert bad.str.startswith("failed to decode in clean: ").all(), bad.tolist()
    assert (cleaned["status"].isin([layout.OK, layout.REMOVED_STATUS])).sum() == len(manifest) - 2
    # an image whose embedding is cached goes too: it stayed `ok` and the search crashed on it later
    (tmp_path / "img" / "A" / "2.png").unlink()
    capsys.readouterr()
    again = run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, batch_size=8, min_per_family=1))
    # 24 images: the 2 that failed are tried again, the gone one's cached embedding is not counted as usable
    said = capsys.readouterr().out
    assert "clean: embedding 2 images with " in said and "(22 cached, 1 of them gone or changed since catalog)" \
        in said, said
    row = again[again["path"].str.endswith("A/2.png")].iloc[0]
    assert row["status"] == layout.UNREADABLE_STATUS and "no longer exists" in row["reason"], row.to_dict()
    md = (tmp_path / "run" / "clean.md").read_text()
    assert "unreadable now (status unreadable: gone, changed or failing to decode since catalog): 3" in md, md[:500]
    # each of them with its reason, where the console line points (clean.md only counted them; round 28)
    table = md.split("## Unreadable now", 1)[1]
    for path, reason in again.loc[again["status"] == layout.UNREADABLE_STATUS, ["path", "reason"]].itertuples(False):
        assert path in table and reason.split(":")[0] in table, (path, table)
    # every image gone: clean fails, its line counts the cache as it is and points at no clean.md (the last
    # clean's, not this one's: round 70)
    shutil.rmtree(tmp_path / "img")
    capsys.readouterr()
    with pytest.raises(SpeciesfamError, match="none of the 24 usable images .* could be decoded now"):
        run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, batch_size=8, min_per_family=1))
    said = capsys.readouterr().out
    assert "(22 cached, 22 of them gone or changed since catalog)" in said and "clean.md" not in said, said


def test_an_image_replaced_since_catalog_is_not_embedded_as_the_catalogued_one(tmp_path, ray_session):
    """A file replaced after catalog (another picture, same name) took the cached embedding of the old bytes, or
    put the new image's embedding in the cache under the old bytes' hash; the model then trained on an image
    catalog never checked (hostile tester). Now its row is `unreadable`, 'changed since catalog', cached or not,
    and the cache keeps only the bytes catalog hashed."""
    noise_families(tmp_path / "img", {"A": 6, "B": 6})
    manifest = run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    cfg = CleanConfig(embedder=HIST, batch_size=4, min_per_family=1)
    first, cached = tmp_path / "img" / "A" / "1.png", tmp_path / "img" / "B" / "2.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(first)  # before the first clean: not cached
    run_clean(str(tmp_path / "run"), cfg)
    sha = manifest.set_index("path")["sha256"]
    before = pd.read_parquet(tmp_path / "run" / layout.EMBEDDINGS)
    assert set(before["sha256"]) == set(sha) - {sha[str(first)]}
    same_size = cached.read_bytes()  # the same size, other bytes: found by its modification time, then its hash
    cached.write_bytes(same_size[:-20] + bytes(20))
    again = run_clean(str(tmp_path / "run"), cfg).set_index("path")
    for path in (first, cached):
        assert again.loc[str(path), "status"] == layout.UNREADABLE_STATUS, again.loc[str(path)].to_dict()
        assert again.loc[str(path), "reason"].startswith("changed since catalog (its sha256 is not the one "
                                                         "catalog recorded") and again.loc[str(path), "reason"].endswith(
            f"re-run `speciesfam catalog {tmp_path / 'img'} --workdir {tmp_path / 'run'}` to take the new image")
    assert (again["status"] == layout.UNREADABLE_STATUS).sum() == 2
    assert set(pd.read_parquet(tmp_path / "run" / layout.EMBEDDINGS)["sha256"]) == set(before["sha256"])


@pytest.mark.slow  # ~35 s: eleven clean runs over one cache; the default run stays near 5 minutes
def test_embeddings_cached_by_an_older_decode_path_are_computed_again(tmp_path, ray_session, capsys):
    """Cached embeddings had no version of the decode path: after it changed, images whose pixels it now gives
    otherwise kept the embeddings of the old pixels. Rows cached by another version, or by a clean that stamped
    none, are embedded again and stamped; the others stay cached."""
    from speciesfam.data.images import DECODER

    noise_families(tmp_path / "img", {"A": 6, "B": 6})
    run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    cfg = CleanConfig(embedder=HIST, batch_size=4, min_per_family=1)
    run_clean(str(tmp_path / "run"), cfg)
    path = tmp_path / "run" / layout.EMBEDDINGS
    emb = pd.read_parquet(path)
    assert len(emb) == 12 and set(emb["decoder"]) == {DECODER}
    right = {sha: list(v) for sha, v in zip(emb["sha256"], emb["embedding"])}
    emb.loc[:2, "embedding"] = pd.Series([np.zeros(len(right[emb["sha256"][0]]), np.float32)] * 3)
    emb.loc[:2, "decoder"] = DECODER - 1  # what the old pixels gave, under the old version
    emb.to_parquet(path)
    capsys.readouterr()
    run_clean(str(tmp_path / "run"), cfg)
    out = capsys.readouterr().out
    assert "clean: embedding 3 images with " in out and "(9 cached, 3 more cached by an older decode path: " \
        "embedded again)" in out, out
    again = pd.read_parquet(path)
    assert len(again) == 12 and set(again["decoder"]) == {DECODER}
    assert {sha: list(v) for sha, v in zip(again["sha256"], again["embedding"])} == right
    again.drop(columns="decoder").to_parquet(path)  # a clean before versions: every row unstamped
    run_clean(str(tmp_path / "run"), cfg)
    assert "(0 cached, 12 more cached by an older decode path: embedded again)" in capsys.readouterr().out
    assert set(pd.read_parquet(path)["decoder"]) == {DECODER}
    # a damaged cache (a disk that filled): clean said to 'give the Parquet file speciesfam wrote, or another path',
    # which no flag takes (round 48); it is a cache: everything embedded again, the file written anew
    path.write_bytes(path.read_bytes()[:500])
    run_clean(str(tmp_path / "run"), cfg)
    out = capsys.readouterr().out
    assert f"clean: {path} cannot be read (ArrowInvalid); it is a cache: every image is embedded again" in out, out
    assert "clean: embedding 12 images with " in out and len(pd.read_parquet(path)) == 12
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)  # another table of that name: a KeyError traceback (round 49)
    run_clean(str(tmp_path / "run"), cfg)
    assert f"clean: {path} lacks column(s) ['embedding', 'label', 'model_id', 'path', 'sha256']; it is a cache: " \
        "every image is embedded again" in capsys.readouterr().out and len(pd.read_parquet(path)) == 12
    for null in (None, float("nan")):  # every column, no vector: a traceback (round 50; a float column's NaN: 51)
        pd.read_parquet(path).assign(embedding=null).to_parquet(path)
        run_clean(str(tmp_path / "run"), cfg)
        assert "clean: embedding 12 images with " in capsys.readouterr().out
    # vectors of another length than the model's were reused silently (round 51): a mix is a damaged cache; one
    # other length (another model's file under this name) shows when the rest are embedded, and is done again
    emb = pd.read_parquet(path)
    width = len(emb["embedding"][0])
    emb.loc[:5, "embedding"] = pd.Series([np.ones(2, np.float32)] * 6)
    emb.to_parquet(path)
    run_clean(str(tmp_path / "run"), cfg)
    assert f"clean: {path} holds vectors of 2 lengths for " in capsys.readouterr().out
    emb = pd.read_parquet(path)
    emb["embedding"] = [np.ones(2, np.float32)] * 12
    emb.iloc[:10].to_parquet(path)
    (tmp_path / "run" / layout.STAGES / "clean.json").unlink()  # no record of the width the model gave
    run_clean(str(tmp_path / "run"), cfg)
    assert f"clean: {path} holds vectors of 2 numbers, {emb['model_id'][0]} gives {width}; it is a cache: its " \
        "10 images are embedded again" in capsys.readouterr().out
    assert set(pd.read_parquet(path)["embedding"].map(len)) == {width}
    emb = pd.read_parquet(path)  # every image cached, with 2 numbers: reused, and predict failed (round 53)
    emb.assign(embedding=[np.ones(2, np.float32)] * 12).to_parquet(path)
    run_clean(str(tmp_path / "run"), cfg)
    assert f"clean: {path} holds vectors of 2 numbers, {emb['model_id'][0]} gave {width} when clean last ran; " \
        "it is a cache: every image is embedded again" in capsys.readouterr().out
    assert set(pd.read_parquet(path)["embedding"].map(len)) == {width}
    emb.assign(embedding=[np.ones(2, np.float32)] * 12).to_parquet(path)  # the same, and clean's record gone:
    (tmp_path / "run" / layout.STAGES / "clean.json").unlink()  # 'all 12 embeddings cached' (round 54)
    run_clean(str(tmp_path / "run"), cfg)
    out = capsys.readouterr().out
    assert f"clean: embedding 1 image with {emb['model_id'][0]} (11 cached; no record of the vectors' length " in out
    assert f"clean: {path} holds vectors of 2 numbers, {emb['model_id'][0]} gives {width}; it is a cache: its " \
        "11 images are embedded again" in out, out
    assert set(pd.read_parquet(path)["embedding"].map(len)) == {width} and len(pd.read_parquet(path)) == 12
    (tmp_path / "run" / layout.STAGES / "clean.json").unlink()  # a right cache: one image embedded, the rest kept
    run_clean(str(tmp_path / "run"), cfg)
    assert "clean: embedding 1 image with " in capsys.readouterr().out
    aside = path.with_name("aside.parquet")
    path.rename(aside)
    path.mkdir()  # a folder in its place: 'written anew' was promised, then the write failed after the work
    with pytest.raises(SpeciesfamError, match=rf"^{path} is a folder, where clean writes its embeddings.parquet: "
                                              r"move it away \(or remove it\), then run clean again$"):
        run_clean(str(tmp_path / "run"), cfg)
    assert "embedding" not in capsys.readouterr().out
    path.rmdir()
    aside.rename(path)
    gallery = tmp_path / "run" / layout.GALLERY  # a file where clean makes a folder: it failed after its writes
    shutil.rmtree(gallery)
    gallery.write_text("mine")
    with pytest.raises(SpeciesfamError, match=rf"^{gallery} is a file, where clean makes its gallery/ folder"):
        run_clean(str(tmp_path / "run"), cfg)
    gallery.unlink()
    gallery.symlink_to(tmp_path / "gone")  # a link to nothing was called 'a file' (round 51); a link is refused
    with pytest.raises(SpeciesfamError, match=rf"'gallery' is a link \(gallery -> {tmp_path / 'gone'}\); a run "
                                              "writes its own files"):  # as any link among its files (round 70)
        run_clean(str(tmp_path / "run"), cfg)
    gallery.unlink()
    from speciesfam.config import TuneConfig
    from speciesfam.tune.search import run_search

    (tmp_path / "run" / layout.TRIALS).mkdir()  # tune failed on it after the whole search (round 50)
    with pytest.raises(SpeciesfamError, match=r"trials.csv is a folder, where tune writes its trials.csv"):
        run_search(str(tmp_path / "run"), TuneConfig(kind="probe"))
    (tmp_path / "run" / layout.TRIALS).rmdir()
    # clean's own table damaged: tune and evaluate said to run catalog, or to give another manifest (round 49)
    from speciesfam.config import TuneConfig
    from speciesfam.data.text_table import read_text_table
    from speciesfam.tune.search import run_search

    cleaned = tmp_path / "run" / layout.CLEAN_MANIFEST
    cleaned.write_bytes(cleaned.read_bytes()[:300])
    again = rf"run `speciesfam clean --workdir {tmp_path / 'run'} .*` again to write it anew$"
    with pytest.raises(SpeciesfamError, match=rf"{cleaned} cannot be read as a Parquet table .*; {again}"):
        run_search(str(tmp_path / "run"), TuneConfig(kind="probe"))
    with pytest.raises(SpeciesfamError, match=rf"{cleaned} cannot be read as Parquet .*; {again}"):
        read_text_table(str(cleaned))  # evaluate --manifest RUN/clean_manifest.parquet reads it so
    manifest = tmp_path / "run" / layout.MANIFEST  # catalog's own table damaged: run catalog again, as its record says
    manifest.write_bytes(manifest.read_bytes()[:500])
    with pytest.raises(SpeciesfamError, match=rf"{manifest} cannot be read as a Parquet table \(ArrowInvalid: .*\); "
                                              r"run `speciesfam catalog .* --workdir .*` again to write it anew$"):
        run_clean(str(tmp_path / "run"), cfg)


def test_a_re_run_leaves_only_its_own_gallery_sheets(tmp_path, ray_session):
    """A re-run of clean left the sheets of an earlier one in RUN/gallery/: a family's PNG after
    `--gallery-per-family 0`, or after the family was gone, beside the new ones."""
    noise_families(tmp_path / "img", {"A": 6, "B": 6})
    run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, batch_size=4, min_per_family=1))
    gallery = tmp_path / "run" / layout.GALLERY
    sheets = {f"{layout.label_slug(family)}.png" for family in ("A", "B")}
    assert sheets <= {p.name for p in gallery.iterdir()}
    run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST, batch_size=4, min_per_family=1,
                                                 gallery_per_family=0))
    assert not {p.name for p in gallery.iterdir()} & sheets
    assert "per family: none" in (tmp_path / "run" / "clean.md").read_text()


def test_an_embedder_that_gives_too_few_vectors_is_an_error_not_a_cached_gap():
    """An encode that dropped rows: zip() truncated, empty vectors went into embeddings.parquet, and every later
    clean crashed on them."""
    from speciesfam.data.embedding import embed_frame
    from speciesfam.data.embedders import Embedder

    batch = pd.DataFrame({"path": ["a", "b"], "label": "A", "sha256": ["1", "2"], "error": "",
                          "image": [np.zeros((4, 4, 3), np.uint8)] * 2})
    one_row = Embedder("custom:x", lambda img: np.zeros(3, np.float32), lambda b: np.asarray(b)[:1])
    with pytest.raises(ValueError, match=r"gave an array of shape \(1, 3\) for 2 images; it must give one finite"):
        embed_frame(one_row, batch)
    nan = Embedder("custom:x", lambda img: np.zeros(3, np.float32), lambda b: np.full((len(b), 3), np.nan))
    with pytest.raises(ValueError, match=r"gave non-finite values for 2 of 2 images \(e\.g\. a\)"):
        embed_frame(nan, batch)
    # the count is of the images given non-finite values, not of the batch (hostile tester: '1 image', no file)
    some = Embedder("custom:x", lambda img: np.zeros(3, np.float32),
                    lambda b: np.array([[0.0, 1.0, 2.0], [np.inf, 0.0, 0.0]])[:len(b)])
    with pytest.raises(ValueError, match=r"gave non-finite values for 1 of 2 images \(e\.g\. b\); it must"):
        embed_frame(some, batch)
    from speciesfam.data.embedding import checked_vectors

    with pytest.raises(ValueError, match=r"gave non-finite values for a plain grey test image; it must"):  # clean's
        checked_vectors(np.full((1, 3), np.nan), 1, "custom:x")  # first check, in one task: no file of the user's


def test_clean_of_a_run_with_no_usable_image_says_so_in_one_line(tmp_path):
    (tmp_path / "img" / "F").mkdir(parents=True)
    for k in range(7):
        (tmp_path / "img" / "F" / f"{k}.png").write_text("junk")
    with pytest.raises(SpeciesfamError):  # catalog refuses, but it has written its manifest
        run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    with pytest.raises(SpeciesfamError, match="has no usable image .* re-run `speciesfam catalog`"):
        run_clean(str(tmp_path / "run"), CleanConfig(embedder=HIST))


def test_a_user_embedder_that_does_not_fit_fails_in_one_line(tmp_path, ray_session, capsys):
    """`--embedder os:getcwd` printed every actor's traceback (60 lines) with the reason buried among them; and
    'clean: embedding 12 images with ...' came before the line saying the embedder cannot be built."""
    noise_families(tmp_path / "img", {"A": 6, "B": 6})
    run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    with pytest.raises(SpeciesfamError) as err:
        run_clean(str(tmp_path / "run"), CleanConfig(embedder="os:getcwd"))
    assert str(err.value).startswith("--embedder os:getcwd: TypeError: embedder factory 'os:getcwd' must return "
                                     "(preprocess, encode) callables") and "\n" not in str(err.value)
    assert not (tmp_path / "run" / layout.CLEAN_MANIFEST).exists()
    assert "clean: embedding" not in capsys.readouterr().out


def test_the_catalog_time_the_cache_check_uses_is_read_in_its_own_time_zone(tmp_path, monkeypatch):
    """The record's UTC offset was dropped and the time read as local: in a time zone west of the catalog's the
    cutoff fell hours after it, and a file replaced (same size) in between kept its old embedding (hostile tester).
    The cutoff is when catalog started reading, not when it finished (a file changed mid-catalog is hashed)."""
    import json
    import time
    from datetime import datetime, timezone

    from speciesfam import stages
    from speciesfam.data.embedding import catalogued_at

    noise_families(tmp_path / "img", {"A": 6, "B": 6})
    before = time.time()
    run_catalog(str(tmp_path / "img"), str(tmp_path / "run"))
    assert int(before) <= catalogued_at(str(tmp_path / "run")) <= time.time()
    record = stages.record_uri(str(tmp_path / "run"), "catalog")
    rec = json.loads(open(record).read())
    rec["started_at"] = "2026-12-04T05:00:00+0100"
    open(record, "w").write(json.dumps(rec))
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert catalogued_at(str(tmp_path / "run")) == datetime(2026, 12, 4, 4, tzinfo=timezone.utc).timestamp()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
