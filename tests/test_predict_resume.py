"""predict into an output that exists: what it resumes, what it refuses as another input or bundle, and the
output it leaves (one row per input row, in the input's order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speciesfam.errors import SpeciesfamError


def test_predict_resumes_only_the_same_input_into_its_output(tmp_path, capsys):
    """A second `predict --manifest OTHER --out P` "resumed" into P: the first input's rows stayed beside the new
    ones, and rows of both kept the first manifest's label and split. A file deleted since its row was written
    is not another input: its row is left out (that blocked every resume until the output was deleted)."""
    import pandas as pd

    from speciesfam.predict_resume import check_resume

    a, b, c = (str(tmp_path / n) for n in ("a.png", "b.png", "c.png"))
    for path in (a, b, c):
        Path(path).write_bytes(b"x")
    done = pd.DataFrame({"path": [a, b], "label": ["Felidae", "Ranidae"], "bundle_id": "x"})
    same = pd.DataFrame({"path": [a, b, c], "label": ["Felidae", "Ranidae", "Felidae"]})
    check_resume(done, same, "p.parquet", "x")  # a killed run of the same input: resumed
    check_resume(done.iloc[:0], same, "p.parquet", "x")  # nothing done yet
    assert capsys.readouterr().out == ""
    with pytest.raises(SpeciesfamError, match="another bundle"):
        check_resume(done, same, "p.parquet", "y")
    with pytest.raises(SpeciesfamError, match=rf"another input \(1 row not this input's as given now, e.g. '{b}'"):
        check_resume(done, same.iloc[[0, 2]], "p.parquet", "x")
    with pytest.raises(SpeciesfamError, match=rf"another input \(1 row not this input's as given now, e.g. '{b}'"):
        check_resume(done, same.assign(label=["Felidae", " Ranidae", "Felidae"]), "p.parquet", "x")
    Path(b).unlink()
    check_resume(done, same.iloc[[0, 2]], "p.parquet", "x")
    assert capsys.readouterr().out == \
        f"predict: 1 row in p.parquet of files deleted since (e.g. '{b}'): left out of it\n"
    # a is there: another input
    with pytest.raises(SpeciesfamError, match=rf"another input \(2 rows not this input's as given now, e.g. '{a}'\)"):
        check_resume(done, same.iloc[[2]], "p.parquet", "x")
    Path(a).unlink()  # every earlier file gone and none of them in this input: a disk not mounted, not deletions
    with pytest.raises(SpeciesfamError, match=rf"another input \(2 rows not this input's as given now, e.g. '{a}'; "
                                              r"none of its rows is this input's, and their files are gone from here"):
        check_resume(done, same.iloc[[2]], "p.parquet", "x")


def test_predict_never_lists_its_own_output_reached_through_a_link(tmp_path, capsys):
    """--out outside the folder, but a link in the folder to --out's folder: the second predict listed the
    predictions file as an input that failed ('not an image'), exit 1 (hostile tester)."""
    from speciesfam.predict import input_rows
    from speciesfam.predict_resume import without_own_output

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"x")
    (tmp_path / "ext" / "E.parquet.parts").mkdir(parents=True)
    (tmp_path / "ext" / "E.parquet").write_bytes(b"x")
    (tmp_path / "ext" / "E.parquet.parts" / "part-1.parquet").write_bytes(b"x")
    (tmp_path / "ext" / "mine.jpg").write_bytes(b"x")
    (tmp_path / "imgs" / "ext").symlink_to(tmp_path / "ext")
    rows = input_rows(str(tmp_path / "imgs"))
    assert len(rows) == 4
    kept = without_own_output(rows, str(tmp_path / "ext" / "E.parquet"))
    assert sorted(Path(p).name for p in kept["path"]) == ["a.jpg", "mine.jpg"]
    assert capsys.readouterr().out == (f"predict: 2 files of the folder are its own output {tmp_path / 'ext'}/"
                                       "E.parquet, reached through a link: not predicted\n")
    assert len(without_own_output(rows, str(tmp_path / "other.parquet"))) == 4 and not capsys.readouterr().out


def test_predict_resume_counts_a_path_listed_twice_as_two_rows(tmp_path):
    """A manifest listing each path twice (two labels) resumed after a kill skipped every copy of a path once
    one copy was done: rows were lost and predict exited 0."""
    import pandas as pd

    from speciesfam.predict_resume import check_resume, to_predict

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    Path(a).write_bytes(b"x"), Path(b).write_bytes(b"x")
    rows = pd.DataFrame({"path": [a, b, a, b, a], "label": ["A", "A", "B", "B", "A"]})
    done = rows.iloc[[0, 3]].assign(bundle_id="x")  # the first a as A, the b as B
    check_resume(done, rows, "p.parquet", "x")
    assert to_predict(rows, done)[["path", "label"]].values.tolist() == [[b, "A"], [a, "B"], [a, "A"]]
    assert len(to_predict(rows, rows.assign(bundle_id="x"))) == 0
    with pytest.raises(SpeciesfamError, match="another input"):  # more copies done than the input lists
        check_resume(pd.concat([rows.iloc[[1, 1]]]).assign(bundle_id="x"), rows, "p.parquet", "x")


def test_the_output_of_a_resume_is_one_row_per_input_row_in_the_inputs_order(tmp_path):
    """A resume appended its rows after the earlier ones: the output was no longer in the input's order. A row
    in both the output and a part a kill left is kept once; a row of a file changed since, the new one."""
    import pandas as pd

    from speciesfam.predict_resume import key_columns, merged

    rows = pd.DataFrame({"path": ["a", "b", "c", "a"], "label": ["A", "B", "C", "B"], "error": "",
                         "stamp": ["1:1", "1:1", "2:2", "1:1"]})
    done = pd.concat([rows.iloc[[2]].assign(stamp="1:1", family="old"),  # c before it changed
                      rows.iloc[[1, 3]].assign(family="x"), rows.iloc[[1]].assign(family="x"),  # b twice
                      rows.iloc[[2, 0]].assign(family="new")], ignore_index=True)
    out = merged(done, rows, key_columns(rows))
    assert out[["path", "label", "family"]].values.tolist() == [
        ["a", "A", "new"], ["b", "B", "x"], ["c", "C", "new"], ["a", "B", "x"]]
    with pytest.raises(RuntimeError, match=r"1 input row without an output row, e\.g\. \['a'\]"):
        merged(done.iloc[:-1], rows, key_columns(rows))


def test_predict_says_which_rows_changed_since_and_which_files_are_gone(tmp_path):
    """A manifest's row of a file deleted since its row was written was counted as 'changed since'."""
    import pandas as pd

    from speciesfam.predict import input_rows
    from speciesfam.predict_resume import check_resume, read_done, to_predict, todo_line

    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "m.csv").write_text("path,label\na.jpg,A\nb.jpg,B\nc.jpg,C\nd.jpg,D\n")
    first = input_rows(manifest=str(tmp_path / "m.csv")).iloc[:3].assign(bundle_id="x")
    first.to_parquet(tmp_path / "p.parquet")
    (tmp_path / "a.jpg").write_bytes(b"xx")  # changed since
    (tmp_path / "b.jpg").unlink()  # gone since: predicted again, its row says why it cannot be read
    rows, done = input_rows(manifest=str(tmp_path / "m.csv")), read_done(str(tmp_path / "p.parquet"))
    check_resume(done, rows, "p.parquet", "x")
    todo = to_predict(rows, done)
    assert sorted(Path(p).name for p in todo["path"]) == ["a.jpg", "b.jpg", "d.jpg"]
    assert todo_line(rows, done, todo, "p.parquet") == \
        "predict: 4 rows, 1 already in p.parquet, 3 to predict (2 of them changed since their row was written, 1 of " \
        "these as their file is gone)"
    assert todo_line(rows, pd.DataFrame(columns=done.columns), rows, "p.parquet") == \
        "predict: 4 rows, 0 already in p.parquet, 4 to predict"


def test_the_default_out_refused_inside_the_folder_predicted_is_named_as_the_default(tmp_path, monkeypatch, capsys):
    """`cd photos; speciesfam predict BUNDLE .` was refused naming '--out predictions.parquet', a flag not given."""
    from speciesfam import cli

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"schema": "speciesfam-bundle"}')
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "imgs")
    assert cli.main(["predict", str(tmp_path / "b"), "."]) == 2
    assert capsys.readouterr().err.startswith(
        "speciesfam predict: error: the default --out predictions.parquet is inside the folder being predicted (.): "
        f"predicting that folder again would take the predictions for images; write them outside it, e.g. --out {tmp_path}/"
        "predictions.parquet")
    assert cli.main(["predict", str(tmp_path / "b"), ".", "--out", "p.parquet"]) == 2
    assert capsys.readouterr().err.startswith("speciesfam predict: error: --out p.parquet is inside the folder "
                                              "being predicted")


def test_a_resume_with_another_top_k_is_refused(tmp_path):
    """--top-k 1, then a resume with --top-k 5: rows of two shapes in one output, unsaid (hostile tester)."""
    import pandas as pd

    from speciesfam.predict_resume import check_resume

    done = pd.DataFrame({"path": ["a", "b"], "bundle_id": "x", "error": ["", "not an image"],
                         "top_families": [["F"], []]})
    rows = pd.DataFrame({"path": ["a", "b", "c"]})
    check_resume(done, rows, "p.parquet", "x", 1)
    with pytest.raises(SpeciesfamError, match=r"^p.parquet holds predictions with --top-k 1 \(this run: 5\); give "
                                              r"--top-k 1 to resume it, or another --out$"):
        check_resume(done, rows, "p.parquet", "x", 5)
    check_resume(done.iloc[[1]], rows, "p.parquet", "x", 5)  # only error rows: nothing to compare
