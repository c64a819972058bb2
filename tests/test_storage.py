"""The run folder's tables and files read back as written, and paths nothing can read fail as one clear error."""

import os

import pandas as pd
import pytest

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


def test_a_link_loop_is_an_unreadable_file_not_a_crash(tmp_path):
    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    with pytest.raises(DecodeError, match="cannot read file"):
        read_rgb(str(tmp_path / "a.jpg"))


def test_a_scheme_nothing_reads_is_one_clear_error():
    with pytest.raises(SourceError, match=r"https:// is not a storage speciesfam reads \(local paths, file://"):
        storage.exists("https://example.com/x.csv")
    with pytest.raises(DecodeError, match="https:// is not a storage"):
        read_rgb("https://example.com/x.jpg")
