"""A catalog run again on a run folder: what a catalog that finds no usable image keeps (the run's catalog, its
record and reports) and where it says its own findings."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_messy_input import SMALL, png

from speciesfam import layout
from speciesfam.data.catalog import run_catalog


def test_a_recatalog_that_finds_nothing_usable_keeps_the_run_catalog(tmp_path):
    """A re-catalog of a wrong or emptied folder replaced a run's catalog with rows of nothing usable, and every
    later stage refused the run; its reports go to logs/ now, said, and a good catalog later clears them."""
    from speciesfam import stages
    from speciesfam.data.catalog import FAILED_CATALOG
    from speciesfam.errors import SourceError

    run = tmp_path / "run"
    for fam in ("Alpha", "Beta"):
        for i in range(4):
            png(tmp_path / "src" / fam / f"{i}.png", 20 * len(fam) + i)
    run_catalog(str(tmp_path / "src"), str(run), SMALL)
    manifest, record = (run / layout.MANIFEST).read_bytes(), stages.load(str(run), "catalog")
    (tmp_path / "wrong" / "Gamma").mkdir(parents=True)
    (tmp_path / "wrong" / "Gamma" / "notes.txt").write_text("x")
    failed = run / layout.LOGS / FAILED_CATALOG
    with pytest.raises(SourceError, match=rf"no usable image among 1 row \(1 unreadable\).*; see {failed}/catalog.md; "
                                          rf"{run} keeps its catalog of {tmp_path / 'src'} as it was \(this "
                                          rf"attempt's manifest and report are in {failed}\)"):
        run_catalog(str(tmp_path / "wrong"), str(run), SMALL)
    assert (run / layout.MANIFEST).read_bytes() == manifest and stages.load(str(run), "catalog") == record
    bad = pd.read_parquet(failed / layout.MANIFEST)
    assert bad["path"].tolist() == [str(tmp_path / "wrong/Gamma/notes.txt")] and bad["bytes"].tolist() == [1]
    assert bad["width"].isna().all()  # sizes are whole numbers, empty where unread (they were floats, NaN)
    schema = pq.read_schema(failed / layout.MANIFEST)
    assert [schema.field(c).type for c in ("width", "height", "bytes")] == [pa.int64()] * 3
    assert "unreadable: 1" in (failed / layout.CATALOG_MD).read_text()
    from speciesfam.report import render  # the report of the kept catalog says so (it said nothing: round 68)

    assert f"A later catalog of this run folder found no usable image, so this catalog was kept: see <code>{failed}/" \
           "catalog.md</code>" in render(str(run))
    outside = tmp_path / "outside.parquet"  # a link left in the failed attempt's folder: removed, not written
    outside.write_bytes(b"theirs")           # through (round 68)
    (failed / layout.MANIFEST).unlink()
    (failed / layout.MANIFEST).symlink_to(outside)
    with pytest.raises(SourceError, match="keeps its catalog"):
        run_catalog(str(tmp_path / "wrong"), str(run), SMALL)
    assert outside.read_bytes() == b"theirs" and not (failed / layout.MANIFEST).is_symlink()
    run_catalog(str(tmp_path / "src"), str(run), SMALL)  # a catalog that succeeds replaces the run's, and
    assert not failed.exists() and "A later catalog" not in render(str(run))  # the failed attempt's reports go
    shutil.rmtree(run / layout.LOGS)  # logs/ a file: the error still says the source has nothing usable
    (run / layout.LOGS).write_text("x")
    with pytest.raises(SourceError, match=rf"no usable image among 1 row .*; {run} keeps its catalog of .* as it was "
                                          rf"\(this attempt's manifest and report are in {failed} \(they could not be "
                                          r"written there: "):
        run_catalog(str(tmp_path / "wrong"), str(run), SMALL)
    assert (run / layout.MANIFEST).read_bytes() != b""
    (run / layout.LOGS).unlink()
    (run / "stages" / "catalog.json").unlink()  # a run folder known by its manifest alone: kept as well (round 68)
    with pytest.raises(SourceError, match=r"keeps its catalog \(no record names its source\) as it was"):
        run_catalog(str(tmp_path / "wrong"), str(run), SMALL)
    nothing = tmp_path / "nothing"  # a run whose catalog has nothing usable: the next attempt replaces it
    for source in ("wrong", "wrong2"):
        (tmp_path / source / "Gamma").mkdir(parents=True, exist_ok=True)
        (tmp_path / source / "Gamma" / "notes.txt").write_text("x")
        with pytest.raises(SourceError, match=rf"; see {nothing}/catalog.md$"):
            run_catalog(str(tmp_path / source), str(nothing), SMALL)
    assert stages.load(str(nothing), "catalog")["config"]["source"] == str(tmp_path / "wrong2")
