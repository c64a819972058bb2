"""A manifest whose columns have names of its own (the reference data's catalog: file_path, family, sciName):
catalog, evaluate and predict read them with --path-column, --label-column and --group-column, record which, and
refuse a column the file lacks, one named twice, or a flag that would be ignored; and a speciesfam run's own
manifest catalogued again, told from a user's table that has its columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from speciesfam.errors import ConfigError, SourceError, SpeciesfamError


@pytest.fixture(scope="module")
def metadata(collection, tmp_path_factory):
    """A copy of conftest's collection listed as a metadata CSV: paths under 'file_path', families under
    'family', species under 'sciName', and a 'label' column that is not the family (it must not be read)."""
    root = tmp_path_factory.mktemp("metadata")
    rows = []
    for fam in sorted(p for p in Path(collection[0]).iterdir() if p.is_dir()):
        for i, f in enumerate(sorted(f for f in fam.iterdir() if f.is_file())):
            (root / "images").mkdir(exist_ok=True)
            shutil.copy(f, root / "images" / f"{fam.name}_{f.name}")
            rows.append({"id": f"{fam.name}{i}", "file_path": f"images/{fam.name}_{f.name}",
                         "family": f" {fam.name}" if fam.name == "Felidae" else fam.name,  # as written: kept
                         "sciName": f"{fam.name} sp{i % 3}", "label": "not the family"})
    table = pd.DataFrame(rows)
    table.to_csv(root / "metadata.csv", index=False)
    return root, table


def test_catalog_reads_the_named_columns_and_records_them(metadata, tmp_path, capsys):
    from speciesfam import cli, stages
    from speciesfam.data.catalog import load_manifest
    from speciesfam.reproduce import command

    root, table = metadata
    run = tmp_path / "run"
    assert cli.main(["catalog", str(root / "metadata.csv"), "--workdir", str(run), "--path-column", "file_path",
                     "--label-column", "family", "--group-column", "sciName", "--group-split"]) == 0
    manifest = load_manifest(str(run / "manifest.parquet"))
    by_path = table.assign(path=[str(root / p) for p in table["file_path"]]).set_index("path")
    assert len(manifest) == len(table)
    assert (manifest.set_index("path")["label"] == by_path["family"]).all()  # ' Felidae' as written, not 'label'
    assert (manifest.set_index("path")["group"] == by_path["sciName"]).all()
    # --group-split by the chosen column: each species inside one split
    ok = manifest[manifest["status"] == "ok"]
    assert (ok.groupby("group")["split"].nunique() == 1).all()
    record = stages.load(str(run), "catalog")
    assert (record["config"]["path_column"], record["config"]["label_column"], record["config"]["group_column"]) \
        == ("file_path", "family", "sciName")
    again = command("catalog", record, str(run))  # the report's and logs' command to re-run it
    assert "--path-column file_path --label-column family --group-column sciName" in again, again
    assert "paths from its column `file_path`, labels from its column `family`, groups from its column `sciName`" \
        in (run / "catalog.md").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--path-column", "File_path", "--label-column", "family"],
     r"has no column 'File_path' \(--path-column File_path\); its columns: 'id', 'file_path', 'family', 'sciName', "
     r"'label' \(column names are exact: did you mean 'file_path'\?\)$"),
    (["--path-column", "file_path", "--label-column", "species"], r"has no column 'species' \(--label-column "),
    (["--path-column", "file_path", "--label-column", "file_path"],
     r"column 'file_path' is named as both path and label \(--path-column, --label-column\): give each its own"),
    (["--path-column", "file_path", "--group-column", "label", "--label-column", "sciName"], None),  # all distinct
])
def test_catalog_refuses_a_column_the_file_lacks_or_one_named_twice(metadata, tmp_path, flags, message):
    from speciesfam.data.catalog import build_manifest
    from speciesfam.flags import config_from_args
    from speciesfam.cli_args import build_parser
    from speciesfam.config import CatalogConfig

    root, _ = metadata
    args = build_parser().parse_args(["catalog", str(root / "metadata.csv"), "--workdir", str(tmp_path), *flags])
    cfg = config_from_args(CatalogConfig, args)
    if message is None:
        assert set(build_manifest(str(root / "metadata.csv"), cfg)["group"]) == {"not the family"}
        return
    with pytest.raises(SourceError, match=message):
        build_manifest(str(root / "metadata.csv"), cfg)


def test_column_flags_that_would_be_ignored_or_are_empty_are_refused(collection, metadata, tmp_path, capsys):
    from speciesfam import cli
    from speciesfam.config import CatalogConfig

    # a folder's families are its subfolders: the flag would be ignored
    assert cli.main(["catalog", str(collection[0]), "--workdir", str(tmp_path / "r"),
                     "--label-column", "family"]) == 2
    assert "--label-column family names a column of a manifest, and " in capsys.readouterr().err
    with pytest.raises(ConfigError, match="label_column=''"):
        CatalogConfig(label_column="").validate()
    # the default names' absence is said with the flags that name other columns
    root, _ = metadata
    with pytest.raises(SourceError, match=r"lacks column\(s\) \['path'\]; it needs 'path' and 'label' .*or "
                                          r"--path-column/--label-column naming the columns that hold them"):
        from speciesfam.data.sources import read_manifest

        read_manifest(str(root / "metadata.csv"))
    # a header that differs in case: the flag to give, quoted for the shell
    pd.DataFrame({"Path": ["a.jpg"], "label ": ["x"]}).to_csv(tmp_path / "case.csv", index=False)
    with pytest.raises(SourceError, match=r"column names are exact: give --path-column Path, --label-column 'label '"):
        read_manifest(str(tmp_path / "case.csv"))
    # after that flag, the columns found are the file's own names ('Path' was shown as 'path': round 64)
    pd.DataFrame({"Path": ["a.jpg"], "FAMILY": ["x"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(SourceError, match=r"lacks column\(s\) \['label'\];.* found \['Path', 'FAMILY'\]$"):
        read_manifest(str(tmp_path / "other.csv"), {"path": "Path"})
    # predict reads --path-column only from --manifest
    assert cli.main(["predict", str(tmp_path / "bundle"), str(collection[0]), "--path-column", "file"]) == 2
    assert "--path-column file names a column of --manifest, and none is given" in capsys.readouterr().err


def test_a_parquet_manifests_named_column_is_read_and_a_nested_one_refused_by_its_name(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from speciesfam.data.text_table import read_text_table

    pq.write_table(pa.table({"file": ["a.jpg", "b.jpg"], "family": ["X", None], "path": ["p", "q"]}),
                   tmp_path / "m.parquet")
    read = read_text_table(str(tmp_path / "m.parquet"), {"path": "file", "label": "family"})
    assert (read["path"], read["label"]) == (["a.jpg", "b.jpg"], ["X", None])
    assert "family" not in read and "file" not in read  # a column named for a role is read as that role only
    pq.write_table(pa.table({"file": ["a.jpg"], "taxa": [["X"]]}), tmp_path / "n.parquet")
    with pytest.raises(SourceError, match=r"column 'taxa' holds list<\w+: string>, not one value per row; give it "
                                          r"as a column of text \(one label per row\)"):
        read_text_table(str(tmp_path / "n.parquet"), {"path": "file", "label": "taxa"})


def test_evaluate_and_predict_read_a_labelled_set_by_its_named_columns(probe_run, probe_bundle, tmp_path, capsys):
    """The same labelled set with its own column names scores as with path/label, in a folder of its own (labels
    read from another column are another scoring); predict --manifest reads the named path column."""
    from speciesfam import cli
    from speciesfam.evaluate import evaluate
    from speciesfam.predict import input_rows

    cleaned = pd.read_parquet(probe_run / "clean_manifest.parquet")
    usable = cleaned[(cleaned["status"] == "ok") & (cleaned["split"] == "test")]
    pd.DataFrame({"path": usable["path"], "label": usable["label"]}).to_csv(tmp_path / "plain.csv", index=False)
    pd.DataFrame({"file_path": usable["path"], "family": usable["label"], "label": "Nope"}).to_csv(
        tmp_path / "named.csv", index=False)
    plain = evaluate(str(probe_bundle), str(tmp_path / "plain.csv"), out=str(tmp_path / "plain"))
    named = evaluate(str(probe_bundle), str(tmp_path / "named.csv"), columns={"path": "file_path", "label": "family"})
    assert named["test_macro_f1"] == plain["test_macro_f1"] and named["images"] == plain["images"] == len(usable)
    assert named["columns"] == {"path": "file_path", "label": "family"} and "columns" not in plain
    with pytest.raises(SpeciesfamError, match=rf"{len(usable)} unknown_family; .*the bundle has no family 'Nope'; "
                                              r"all in .*eval_named-") as wrong:  # the file's own 'label' column
        evaluate(str(probe_bundle), str(tmp_path / "named.csv"), columns={"path": "file_path"})
    assert named["out"] not in str(wrong.value)  # its own folder: the scores read from 'family' are kept
    assert json.loads((Path(named["out"]) / "metrics.json").read_text())["columns"]["label"] == "family"
    with pytest.raises(SpeciesfamError, match=r"a labelled set needs 'path' and 'label' columns, or "
                                              r"--path-column/--label-column naming the ones that hold them"):
        evaluate(str(probe_bundle), str(tmp_path / "named.csv"))
    rows = input_rows(manifest=str(tmp_path / "named.csv"), columns={"path": "file_path"})
    assert list(rows["path"]) == list(usable["path"]) and set(rows["label"]) == {"Nope"}  # carried as written
    assert cli.main(["predict", str(probe_bundle), "--manifest", str(tmp_path / "named.csv"), "--out",
                     str(tmp_path / "p.parquet")]) == 2
    assert "has no 'path' column (columns: ['file_path', 'family', 'label']) (--path-column names the one that " \
           "holds the image paths)" in capsys.readouterr().err


def test_a_column_named_for_a_role_is_that_role_only_and_spreadsheet_headers_are_read(tmp_path):
    """Evaluate took a file's 'split' column given as the paths for the split to score too; a spreadsheet's
    trailing empty header cells ('path,label,,') and a repeated column no one reads were refused; a column
    typed with composed accents where the file's are decomposed was 'did you mean' the same-looking name."""
    from speciesfam.data.text_table import read_text_table

    (tmp_path / "s.csv").write_text("split,family\na.jpg,X\n")
    assert read_text_table(str(tmp_path / "s.csv"), {"path": "split", "label": "family"}) == \
        {"path": ["a.jpg"], "label": ["X"]}
    (tmp_path / "trailing.csv").write_text("path,label,notes,notes,,\na.jpg,X,1,2,,\n")
    assert read_text_table(str(tmp_path / "trailing.csv"))["label"] == ["X"]
    (tmp_path / "twice.csv").write_text("path,label,label\na.jpg,X,Y\n")
    with pytest.raises(SourceError, match="more than one column named 'label'"):
        read_text_table(str(tmp_path / "twice.csv"))
    (tmp_path / "nfd.csv").write_text("path,Famille\u0301\na.jpg,X\n")
    with pytest.raises(SourceError, match=r'did you mean "Famille\\u0301" \(its accents are written as separate '):
        read_text_table(str(tmp_path / "nfd.csv"), {"label": "Famill\u00e9"})


def test_group_split_without_any_group_is_refused(metadata, collection, tmp_path):
    """--group-split over a manifest with no group column (or no group named), or a folder, split image by image
    as if not given, unsaid (hostile tester round 63)."""
    from speciesfam.config import CatalogConfig
    from speciesfam.data.catalog import build_manifest

    root, _ = metadata
    cfg = CatalogConfig(path_column="file_path", label_column="family", group_split=True)
    with pytest.raises(SourceError, match=r"--group-split: no row of .*metadata.csv has a group \(it has no column "
                                          r"'group', or every cell of it is empty\); give --group-column"):
        build_manifest(str(root / "metadata.csv"), cfg)
    with pytest.raises(SourceError, match=r"\(a folder's files have none\); give a manifest with a column of groups"):
        build_manifest(str(collection[0]), CatalogConfig(group_split=True))


def test_a_files_own_split_column_is_said_to_be_unused(metadata, tmp_path, capsys):
    """Catalog draws its own splits; a metadata file's 'Split' column was replaced with no word (round 64)."""
    from speciesfam import cli

    root, table = metadata
    table.assign(Split="test").to_csv(root / "with_split.csv", index=False)
    assert cli.main(["catalog", str(root / "with_split.csv"), "--workdir", str(tmp_path / "run"), "--path-column",
                     "file_path", "--label-column", "family"]) == 0
    err = capsys.readouterr().err
    assert f"catalog: note: {root / 'with_split.csv'}'s column 'Split' is not used: catalog draws its own " \
           "train/val/test split per family" in err, err
    assert "its column `Split` is not used" in (tmp_path / "run" / "catalog.md").read_text()
    assert cli.main(["catalog", str(root / "metadata.csv"), "--workdir", str(tmp_path / "run2"), "--path-column",
                     "file_path", "--label-column", "family"]) == 0
    assert "not used" not in capsys.readouterr().err + (tmp_path / "run2" / "catalog.md").read_text()


def test_a_speciesfam_run_manifest_keeps_out_what_its_run_left_out(collection, tmp_path, capsys):
    """Catalogued again, a clean_manifest.parquet brought back as ok every outlier clean removed and every file
    catalog skipped (its status column was not read; hostile tester round 28)."""
    from speciesfam.data.catalog import build_manifest, run_catalog

    root, _ = collection
    first = run_catalog(str(root), str(tmp_path / "run"))
    cleaned = first.copy()
    removed = cleaned.index[cleaned["status"] == "ok"][:3]
    cleaned.loc[removed, ["status", "reason"]] = ["removed", "outlier: a map, not a photo"]
    cleaned.to_parquet(tmp_path / "clean_manifest.parquet")
    capsys.readouterr()
    again = build_manifest(str(tmp_path / "clean_manifest.parquet"))
    assert len(again) == len(cleaned)  # every row of it, each with one status
    by_path = again.set_index("path")
    for path in cleaned.loc[removed, "path"]:
        assert by_path.loc[path, "status"] == "skipped", by_path.loc[path].to_dict()
        assert by_path.loc[path, "reason"] == ("'removed' in the run manifest it comes from: outlier: a map, "
                                               "not a photo")
    before = cleaned.set_index("path")["status"]
    out_before = set(before.index[before != "ok"])
    assert set(again.loc[again["status"] == "skipped", "path"]) == out_before
    assert set(again.loc[again["status"] == "ok", "path"]) == set(before.index[before == "ok"])
    n = len(out_before)
    assert f"manifest: its {n} rows not 'ok' there (removed, skipped, ...) stay out" in capsys.readouterr().out
    # a user's own table with those columns, but statuses of its own: a manifest of theirs (all rows were
    # 'skipped' as left out by a run: round 68); evaluate reads it as a labelled set
    mine = first[["path", "label", "split", "sha256", "reason"]].assign(status="trusted")
    mine.loc[mine.index[:2], "status"] = "unreviewed"
    mine.to_csv(tmp_path / "eolmeta.csv", index=False)
    theirs = build_manifest(str(tmp_path / "eolmeta.csv"))
    assert set(theirs["status"]) == set(first["status"]) and "skipped" not in set(theirs["status"])
    assert ("catalog: note: " + str(tmp_path / "eolmeta.csv") + " has the columns of a speciesfam run's manifest, but "
            "statuses of its own ('trusted', 'unreviewed'): read as a manifest of yours, its column 'status' not "
            "used") in capsys.readouterr().err
    from speciesfam.evaluate import evaluation_rows

    assert not evaluation_rows(str(tmp_path / "eolmeta.csv"), None).attrs.get("catalog")
    # 'ok' rows without catalog's sha256, or no status at all: a user's table too (evaluate scored the first as a
    # run's test split, its model's training images among them: round 69)
    for status, why in (("ok", "'ok' rows without the sha256 catalog gives each"), ("", "no status in its column "
                                                                                     "'status'")):
        mine.assign(status=status, sha256="").to_csv(tmp_path / "eolmeta.csv", index=False)
        build_manifest(str(tmp_path / "eolmeta.csv"))
        assert f"has the columns of a speciesfam run's manifest, but {why}: read as a manifest of yours" in \
            capsys.readouterr().err
        assert not evaluation_rows(str(tmp_path / "eolmeta.csv"), None).attrs.get("catalog")
