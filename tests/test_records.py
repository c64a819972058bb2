"""Stage records as the tool writes and reads them (speciesfam.records, stages.load): what it writes it reads
back, a config or summary edited away reads as none recorded, and a damaged record names the way to mend it
with the settings it recorded (hostile tester round 61)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from speciesfam import cli, layout, stages
from speciesfam.errors import StageOrderError


def test_a_record_given_numpy_numbers_is_read_back_as_numbers(tmp_path):
    """Through the Python API (CatalogConfig(seed=np.int64(3))) the record held '3' and the tool then refused
    its own record as damaged."""
    stages.finish(str(tmp_path), "catalog", config={"seed": np.int64(3), "val_fraction": np.float32(0.25)},
                  summary={"rows": np.int64(4), "status": {"ok": np.int64(4)}})
    rec = stages.load(str(tmp_path), "catalog")
    assert rec["config"] == {"seed": 3, "val_fraction": 0.25} and rec["summary"]["status"] == {"ok": 4}


@pytest.mark.parametrize("edit", [{"summary": None}, {"config": None}, {}])
def test_a_config_or_summary_edited_away_reads_as_none_recorded(tmp_path, capsys, edit):
    """Deleted or null, a record's summary or config (or a search's) was a KeyError or AttributeError in export's
    model card and the report's sections."""
    (tmp_path / layout.STAGES).mkdir()
    for stage in ("catalog", "tune"):
        rec = {"stage": stage, "run_id": stage, "built_from": {}, **edit}
        if stage == "tune":
            rec["searches"] = {"probe": {"built_from": {}, **edit}}
        (tmp_path / layout.STAGES / f"{stage}.json").write_text(json.dumps(rec))
    rec = stages.load(str(tmp_path), "tune")
    assert rec["config"] == rec["summary"] == rec["searches"]["probe"]["config"] == {}
    assert cli.main(["report", "--workdir", str(tmp_path)]) == 0
    said = capsys.readouterr()
    assert "could not be rendered" not in said.out + said.err and "Traceback" not in said.err


def test_a_damaged_record_names_the_command_with_its_recorded_settings_and_what_follows(tmp_path):
    """A bare `speciesfam clean` re-embedded with the default model (offline: could not load it) though the record
    named ViT-S-32 and random weights; catalog's said SOURCE for the folder it recorded; neither said that the
    later stages then run again."""
    stages.finish(str(tmp_path), "catalog", config={"source": "/data/my images"}, summary={"rows": 3})
    stages.finish(str(tmp_path), "clean", config={"model": "ViT-S-32", "pretrained": None, "removal": "quota"},
                  summary={"removed": 1})
    for stage, field, value in (("catalog", "rows", "3"), ("clean", "removed", [1])):
        uri = tmp_path / layout.STAGES / f"{stage}.json"
        rec = json.loads(uri.read_text())
        rec["summary"][field] = value
        uri.write_text(json.dumps(rec))
    with pytest.raises(StageOrderError) as err:
        stages.load(str(tmp_path), "catalog")
    assert str(err.value).endswith(
        f"(its summary.rows is '3', not a whole number); edit summary.rows back to what catalog wrote, or run "
        f"`speciesfam catalog '/data/my images' --workdir {tmp_path}` again to rewrite it (then clean, tune and "
        "export again)")
    with pytest.raises(StageOrderError) as err:
        stages.load(str(tmp_path), "clean")
    assert "or run `speciesfam clean --workdir" in str(err.value) and "--model ViT-S-32 --pretrained none" in \
        str(err.value) and "--removal quota" in str(err.value) and str(err.value).endswith("(then tune and export again)")


def test_report_over_a_damaged_catalog_record_writes_its_page_and_exits_0(tmp_path, capsys):
    """With a search's trials beside it, the search section failed on the catalog record, the damage was said
    three times and `speciesfam report` exited 2 after writing the page, without its 'report: PATH' line."""
    from cnn_trial import write_cnn_trial

    write_cnn_trial(tmp_path)
    stages.finish(str(tmp_path), "catalog", config={"source": "/images"}, summary={"status": {"ok": "128"}})
    assert cli.main(["report", "--workdir", str(tmp_path)]) == 0
    said = capsys.readouterr()
    assert said.out.strip() == f"report: {tmp_path / 'report.html'}" and "search section" not in said.err
    assert said.err.count("catalog.json is damaged") == 1


@pytest.mark.parametrize("summary, said", [
    ({"nested": {"files": "3", "example": "a/b/c.jpg"}}, "summary.nested.files is '3', not a whole number"),
    ({"nested": 5}, "summary.nested is 5, not a record of fields or null"),
    ({"status": {"ok": True}}, "summary.status['ok'] is True, not a whole number"),
    ({"rows": 4, "nested": None, "status": {"ok": 4}}, "")])
def test_a_wrong_field_is_named_where_it_is_inside_its_record(summary, said):
    """A record of fields that may also be null, with one field wrong inside: that field named (round 61: the whole
    record was shown, cut at 40 characters)."""
    from speciesfam.records import wrong_field

    assert wrong_field("catalog", {"summary": summary}) == said


def test_a_stage_run_again_with_the_same_outcome_keeps_its_run_id(tmp_path):
    """An identical clean got a new run id: the search built on it went stale and export refused it (round 71).
    Outlier scores that moved in the 7th digit (embeddings computed again) are the same outcome (round 72); a
    changed status, another config or another upstream run is not."""
    import pandas as pd

    run, uri = str(tmp_path), tmp_path / layout.CLEAN_MANIFEST
    table = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "status": ["ok", "ok"], "outlier_z": [0.1234567, 2.5]})

    def clean(df, config=None, catalog="c1"):
        df.to_parquet(uri)
        return stages.finish(run, "clean", config=config or {"model": "m"}, built_from={"catalog": catalog})["run_id"]

    first = clean(table)
    assert clean(table.assign(outlier_z=[0.1234568, 2.5])) == first
    assert clean(table.assign(status=["ok", "removed"])) != first
    first = clean(table)
    assert clean(table, config={"model": "other"}) != first
    first = clean(table)
    assert clean(table, catalog="c2") != first


def test_a_table_whose_stage_did_not_finish_is_refused_where_it_is_read(cleaned, tmp_path, capsys):
    """A clean stopped (Ctrl-C, killed) after it wrote clean_manifest.parquet and before its record left that
    table under the last finished clean's run id: a probe search trained on it as that clean's, and its bundle's
    card named the other clean (rounds 72, 73). Tune and evaluate refuse it before any work, naming clean's
    command as it last ran (a bare catalog split again with seed 0: round 74), and the report marks it (it showed
    an interrupted catalog's counts as the collection's: round 74); a catalog stopped so is refused by clean. A
    table gone is said so, alone. Clean run again mends it, keeping its run id when it writes what the last wrote,
    with another --batch-size too (round 74)."""
    import shutil

    import pandas as pd

    from conftest import CLEAN_CFG
    from speciesfam.config import CleanConfig
    from speciesfam.data.clean import run_clean
    from speciesfam.evaluate import evaluate, evaluation_rows

    run = tmp_path / "run"
    shutil.copytree(cleaned[0], run)
    before = stages.load(str(run), "clean")["run_id"]
    recorded = json.loads((run / "stages" / "catalog.json").read_text())
    recorded["config"].update(seed=5, min_images=3)  # as if catalog had run with these flags
    (run / "stages" / "catalog.json").write_text(json.dumps(recorded))
    assert stages.command("catalog", str(run)).endswith(f"--workdir {run} --seed 5 --min-images 3")
    for name, argv, stage, section in ((layout.CLEAN_MANIFEST, ["tune", "probe"], "clean", "cleaning"),
                                       (layout.MANIFEST, ["clean"], "catalog", "collection")):
        shutil.copy(run / name, tmp_path / name)
        df = pd.read_parquet(run / name)
        df.loc[df.index[df["status"] == "ok"][0], "status"] = "removed"  # what a stopped run had written
        df.to_parquet(run / name)
        said = f"{run / name} is not what the last finished {stage} wrote (a {stage} stopped before it finished, " \
               f"or an edit since): run `{stages.command(stage, str(run))}` again"
        assert cli.main([*argv, "--workdir", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.endswith(f"error: {said}"), err
        assert not (run / "tune").exists()
        with pytest.raises(StageOrderError, match=re.escape(said)):
            evaluation_rows(str(run / name), "test")
        with pytest.raises(StageOrderError, match=re.escape(said)):  # as a file URI, escaped (round 75)
            evaluate(str(run / "bundle"), "file://localhost" + str(run / name).replace("_", "%5F"), "test")
        assert cli.main(["report", "--workdir", str(run)]) == 0
        page = (run / layout.REPORT).read_text()
        marked = page[page.index(f'<section id="{section}">'):]
        assert marked[:marked.index("</section>")].count(f"Not current: {said.replace(chr(39), '&#39;')}") == 1
        if stage == "catalog":  # its counts are no headline
            assert "usable images" not in page[page.index('id="headline"'):page.index('<section id="collection">')]
        (run / name).unlink()
        assert cli.main(["tune", "scratch", "--workdir", str(run), "--smoke-test"]) == 2
        err = capsys.readouterr().err.strip()  # not 'training on the uncleaned catalog' first, nor 'no catalogued run'
        assert len(err.splitlines()) == 1 and err.endswith(
            f"error: {run / name} is gone: run `{stages.command(stage, str(run))}` again"), err
        shutil.copy(tmp_path / name, run / name)  # what the stage writes again
    df = pd.read_parquet(run / layout.CLEAN_MANIFEST)
    df.loc[df.index[df["status"] == "ok"][0], "status"] = "removed"
    df.to_parquet(run / layout.CLEAN_MANIFEST)
    run_clean(str(run), CleanConfig(**{**CLEAN_CFG, "batch_size": 5}))  # the same clean again: the same run
    assert stages.load(str(run), "clean")["run_id"] == before
    stages.check_fresh(str(run), "clean")
    (run / "stages" / "clean.json").unlink()  # a first clean, stopped after it wrote its table
    assert cli.main(["tune", "probe", "--workdir", str(run)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"error: {run / layout.CLEAN_MANIFEST} has no record of the clean that wrote it (a first clean stopped "
        f"before it finished?); run `speciesfam clean --workdir {run}` again (with the flags that clean was given: "
        "they are not recorded)")
