"""The run folder's tables and files read back as written, and paths nothing can read fail as one clear error."""

import os

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speciesfam import storage
from speciesfam.data.images import DecodeError, read_rgb
from speciesfam.errors import SourceError


def test_names_and_ids_in_csv_tables_read_back_as_written(tmp_path):
    """A family "NA" or "null" read back as NaN (the report's per-family F1 showed `nan`), "007" as 7, and a
    trial id of digits lost its leading zero; numbers and empty cells still read as numbers and missing."""
    table = pd.DataFrame({"family": ["NA", "null", "007", "None"], "trial_id": ["01234567", "a1", "7", "nan"],
                          "f1": [0.5, None, 0.25, 1.0], "best_epoch": [1, 2, None, 4]})
    for name in ("per_class.csv", "UPPER.CSV"):  # any case of the suffix is a CSV
        storage.write_table(table, str(tmp_path / name))
        back = storage.read_table(str(tmp_path / name))
        assert back["family"].tolist() == ["NA", "null", "007", "None"]
        assert back["trial_id"].tolist() == ["01234567", "a1", "7", "nan"]
        assert back["f1"].isna().tolist() == [False, True, False, False] and back["f1"].dtype == float


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(families=st.lists(st.text(min_size=1), min_size=1, max_size=6))
def test_any_family_name_survives_a_csv_table(tmp_path, families):
    """A family 'Felidae\\r' was written unquoted: every reader split its row in two (label_issues.csv read 81
    rows of 65, evaluate's per_class.csv broke the report; hostile tester round 36)."""
    table = pd.DataFrame({"family": families, "f1": [0.5] * len(families), "support": range(len(families)),
                          "kept": [True] * len(families)})
    storage.write_table(table, str(tmp_path / "per_class.csv"))
    back = storage.read_table(str(tmp_path / "per_class.csv"))
    assert back["family"].tolist() == families and back["support"].tolist() == list(range(len(families)))
    assert back["f1"].tolist() == [0.5] * len(families) and back["kept"].all()


def test_a_link_loop_is_an_unreadable_file_not_a_crash(tmp_path):
    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    with pytest.raises(DecodeError, match=r"^broken symbolic link \(target missing, or a link loop\)$"):  # as catalog
        read_rgb(str(tmp_path / "a.jpg"))


def test_a_scheme_nothing_reads_is_one_clear_error():
    with pytest.raises(SourceError, match=r"https:// is not a storage speciesfam reads \(local paths, file://"):
        storage.exists("https://example.com/x.csv")
    with pytest.raises(DecodeError, match="https:// is not a storage"):
        read_rgb("https://example.com/x.jpg")


def test_every_spelling_of_a_local_file_uri_is_that_file(tmp_path):
    """file:/x, file://localhost/x, FILE:///x and a %20 in a file URI were taken for remote storage or for a
    relative path ('file:' became a folder in the working directory); a plain path keeps its '%' as written."""
    from speciesfam.data.sources import resolve_path

    folder = tmp_path / "my images"
    folder.mkdir()
    (folder / "a%20b.jpg").write_bytes(b"x")
    quoted = str(folder).replace(" ", "%20")
    for uri in (f"file://{quoted}", f"file://localhost{quoted}", f"FILE://{quoted}", f"file:{quoted}"):
        assert not storage.is_remote(uri) and storage.local_path(uri) == str(folder), uri
        assert storage.is_dir(uri) and storage.filesystem(uri)[1] == str(folder), uri
        assert resolve_path(f"{uri}/x.jpg", "/elsewhere") == (str(folder / "x.jpg"), ""), uri
        assert storage.within(f"{uri}/sub", str(folder)) and storage.within(str(folder), uri), uri
    assert storage.exists(str(folder / "a%20b.jpg")) and not storage.exists(str(folder / "a b.jpg"))
    path, problem = resolve_path("file://nas/share/x.jpg", "/elsewhere")
    assert storage.is_remote(path) and problem.startswith("a file:// URI of another machine (file://HOST/...)")
    home = os.path.expanduser("~")  # file://~/x.jpg: '~' is the URI's host, not the home folder (hostile tester)
    assert resolve_path("file://~/x.jpg", "/elsewhere")[1] == \
        f"a file:// URI with '~' as its host: '~' in a URI is not your home folder; give the full path ({home}/... " \
        f"or file://{home}/...)"
    for uri, why in (("file://~/imgs", "with '~' as its host"), ("file://nas/imgs", "of another machine")):
        with pytest.raises(SourceError, match=f"^{uri}: a file:// URI {why}"):  # said "file:// is not a storage
            storage.filesystem(uri)                                              # speciesfam reads (..., file://, ...)"


def test_within_compares_folders_not_text_prefixes(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "imgs")
    assert storage.within(str(tmp_path / "link" / "x"), str(tmp_path / "imgs"))
    assert storage.within(str(tmp_path / "imgs"), str(tmp_path / "imgs") + "/")
    assert not storage.within(str(tmp_path / "imgs2"), str(tmp_path / "imgs"))
    assert storage.within("s3://b/imgs/x.parquet", "s3://b/imgs/") and storage.within("s3://b/imgs", "s3://b/imgs")
    assert not storage.within("s3://b/imgs2/x", "s3://b/imgs") and not storage.within("gs://b/imgs/x", "s3://b/imgs")
    assert not storage.within(str(tmp_path / "imgs"), "s3://b" + str(tmp_path / "imgs"))


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    """A write that failed (a full disk) left its `*.tmp-XXXXXXXX` file in the run folder for good."""
    storage.write_text(str(tmp_path / "a.txt"), "old")
    with pytest.raises(OSError):  # the move onto a folder fails after the temp file was written
        storage.write_text(str(tmp_path / "a.txt" / "under-a-file"), "new")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "kept").write_text("x")
    with pytest.raises(OSError):
        storage.write_text(str(tmp_path / "folder"), "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "folder"]
    assert (tmp_path / "a.txt").read_text() == "old" and os.listdir(tmp_path / "folder") == ["kept"]


def test_a_file_that_is_a_link_is_replaced_never_written_through(tmp_path):
    """A run folder's report.html or trials.md linked to a file elsewhere: every write overwrote the link's target
    (hostile tester round 69). The write replaces the link, as mv does; a run folder that is a link is written in."""
    (tmp_path / "elsewhere.html").write_text("theirs")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.html").symlink_to(tmp_path / "elsewhere.html")
    (tmp_path / "alias").symlink_to(tmp_path / "run")
    storage.write_text(str(tmp_path / "alias" / "report.html"), "ours")
    storage.write_table(pd.DataFrame({"a": [1]}), (tmp_path / "alias" / "t.csv").as_uri())
    assert (tmp_path / "elsewhere.html").read_text() == "theirs"
    assert not (tmp_path / "run" / "report.html").is_symlink() and (tmp_path / "run" / "report.html").read_text() == \
        "ours" and (tmp_path / "run" / "t.csv").read_text() == "a\n1\n"


def test_a_failure_on_a_full_disk_is_said_as_a_full_disk(tmp_path, monkeypatch):
    """On a full disk Tune's results failed reading an empty pickled error ('EOFError: Ran out of input', a
    traceback). A search's failure is said as the disk's when the disk of its storage has (nearly) no space
    left (the disk here reports 4 KB free; a real full one is a mount this test cannot make)."""
    import collections
    import errno

    usage = collections.namedtuple("usage", "total used free")
    err = EOFError("Ran out of input")
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 4096, 4096))
    with pytest.raises(OSError) as full:
        storage.raise_if_full(str(tmp_path / "run" / "tune"), err)
    assert full.value.errno == errno.ENOSPC and full.value.__cause__ is err
    assert str(full.value) == f"[Errno 28] no space left on the disk of {tmp_path / 'run' / 'tune'} (4 KB free)"
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: usage(1 << 30, 0, 1 << 30))
    assert storage.raise_if_full(str(tmp_path / "run" / "tune"), err) is None  # not the disk: err stands
    assert storage.raise_if_full("s3://bucket/run", err) is None
