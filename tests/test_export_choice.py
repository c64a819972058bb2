"""Which trial export takes, from which folder, and its refusals: CNN against probe trials, a shared --out, a
moved or copied run folder, a deleted or damaged trials.csv (conftest's tiny probe search)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest


def trials_of(run) -> pd.DataFrame:
    """RUN/trials.csv with its trial ids as text (an id of digits, or '5e123456', read as a number failed export)."""
    return pd.read_csv(Path(run) / "trials.csv", dtype={"trial_id": str})


def test_export_compares_cnn_and_probe_trials_and_says_which_it_took(probe_run, tmp_path, capsys):
    from cnn_trial import write_cnn_trial

    from speciesfam.cli import main
    from speciesfam.export import choose_trial

    run = Path(shutil.copytree(probe_run, tmp_path / "run"))
    best_probe = trials_of(run)["best_val_macro_f1"].max()
    write_cnn_trial(run, "cnnlow", f1=best_probe / 2)
    row, reason = choose_trial(str(run))
    assert row["kind"] == "probe" and "the best cnn trial, cnnlow (scratch), scored" in reason
    write_cnn_trial(run, "cnnhigh", f1=1.0, seed=1)  # ties with a perfect probe go to the faster trial
    assert main(["export", "--workdir", str(run)]) == 0
    said = capsys.readouterr().out
    assert "(cnn, scratch_sequential, trial cnnhigh): highest val_macro_f1" in said and "the best probe trial" in said
    assert json.loads((run / "bundle" / "config.json").read_text())["kind"] == "cnn"
    assert "**Exported**: trial `cnnhigh` (cnn" in (run / "trials.md").read_text()
    trials = trials_of(run)  # 66 ties were all named on one line (round 52): a few, and how many
    high = trials[trials["trial_id"] == "cnnhigh"]
    ties = pd.concat([high.assign(trial_id=f"tie{i}", seconds=9.0) for i in range(8)])
    pd.concat([trials, ties]).to_csv(run / "trials.csv", index=False)
    assert choose_trial(str(run))[1].endswith("tied with tie0, tie1, tie2, tie3, tie4 and 3 more: the faster trial "
                                              "(3.0 s) was taken")
    trials.loc[trials["trial_id"] == "cnnhigh", "seconds"] = 0.048  # it read '(0.0 s)' (round 61)
    pd.concat([trials, ties]).to_csv(run / "trials.csv", index=False)
    assert choose_trial(str(run))[1].endswith("the faster trial (0.048 s) was taken")
    pd.concat([trials.assign(seconds=trials["seconds"].where(trials["trial_id"] != "cnnhigh", 3.0)), ties]).to_csv(
        run / "trials.csv", index=False)
    from speciesfam import storage
    from speciesfam.locks import search_lock

    # a search running on the folder: export chose among the ended searches' trials unsaid (round 52)
    with search_lock(storage.filesystem(str(run / "tune"))[1], "par1", str(run)):
        assert main(["export", "--workdir", str(run)]) == 0
    assert f"export: 'par1' (pid {os.getpid()}) runs on this run folder now: its trials are not in trials.csv yet; " \
        "export again once it has ended to count them" in capsys.readouterr().out


def test_export_says_whose_bundle_it_replaced(probe_run, tmp_path, capsys):
    """Two runs exported to one --out: the second replaced the first run's model without a word (hostile tester).
    Export still replaces it (an --out is often meant to be updated), and its line says what it replaced."""
    from speciesfam.cli import main

    def export_line() -> str:
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("export: "))

    run, shared = Path(shutil.copytree(probe_run, tmp_path / "run")), tmp_path / "models" / "best"
    trials = trials_of(run)
    first, other = str(trials["trial_id"].iloc[0]), str(trials["trial_id"].iloc[1])
    assert main(["export", "--workdir", str(run), "--out", str(shared)]) == 0
    assert "replaced" not in export_line()  # nothing was there
    assert main(["export", "--workdir", str(run), "--out", str(shared)]) == 0
    assert "replaced" not in export_line()  # the same trial again: an update, nothing to say
    assert main(["export", "--workdir", str(run), "--out", str(shared), "--trial", other]) == 0
    assert export_line().endswith(f"; it replaced the bundle of trial {first}")
    config = json.loads((shared / "config.json").read_text())  # as another run's export would have written it
    config["trial"]["trained_on"]["catalog"] = "0123456789abcdef"
    (shared / "config.json").write_text(json.dumps(config))
    assert main(["export", "--workdir", str(run), "--out", str(shared)]) == 0
    assert export_line().endswith(f"; it replaced the bundle of trial {other} trained on catalog run 01234567 (another "
                                  "run folder's, or this one's before catalog ran again)")
    assert json.loads((shared / "config.json").read_text())["trial"]["trial_id"] == first
    # the same trial, trained on an earlier clean run (its search resumed on a clean run again): its evaluations
    # stop counting as the new bundle's, and that went unsaid (round 76)
    from speciesfam.bundle import CHECKSUMS, checksums

    config = json.loads((shared / "config.json").read_text())
    config["trial"]["trained_on"]["clean"] = "fedcba9876543210"
    (shared / "config.json").write_text(json.dumps(config))
    (shared / CHECKSUMS).write_text(json.dumps(checksums(str(shared))))
    assert main(["export", "--workdir", str(run), "--out", str(shared)]) == 0
    assert export_line().endswith(f"; it replaced the bundle of trial {first}, trained on clean run fedcba98")
    copy = Path(shutil.copytree(run, tmp_path / "copy"))  # a copied run folder's export, the same trial: it
    assert main(["export", "--workdir", str(copy), "--out", str(shared)]) == 0  # replaced the original's unsaid
    assert export_line().endswith(f"; it replaced the bundle of trial {first} of run folder {run}")  # (round 68)
    # --trial naming the best trial: said so, not 'the best trial is' itself (round 65)
    assert main(["export", "--workdir", str(run), "--out", str(tmp_path / "named"), "--trial", first]) == 0
    reason = json.loads((tmp_path / "named" / "config.json").read_text())["trial"]["reason"]
    assert reason.startswith("chosen with --trial; it is the best trial (probe, ") and first not in reason, reason


def test_exporting_the_same_trial_again_keeps_the_bundle_and_its_id(probe_run, tmp_path, capsys):
    """Export again of the trial the bundle holds, from the same search: it wrote the bundle anew, whose id (of its
    files, config.json's export time among them) was then another's, so the report dropped its evaluation and
    predict refused its earlier predictions as another bundle's (hostile testers, rounds 65 and 67: also after an
    export to another --out, and with a Finder's .DS_Store beside it; an edited bundle was replaced unsaid)."""
    from speciesfam import stages
    from speciesfam.bundle import bundle_id
    from speciesfam.cli import main

    def export_line() -> str:
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("export: "))

    run = Path(shutil.copytree(probe_run, tmp_path / "run"))
    bundle, trials = run / "bundle", trials_of(run)
    best, other = str(trials["trial_id"].iloc[0]), str(trials["trial_id"].iloc[1])
    assert main(["export", "--workdir", str(run)]) == 0
    first_id = bundle_id(str(bundle))
    capsys.readouterr()
    kept = (f"export: {bundle} already holds trial {best}'s bundle (probe) from this search, unchanged since: kept "
            "as it is (its evaluations and predictions stay its own)")
    assert main(["export", "--workdir", str(run), "--trial", best]) == 0
    assert export_line() == kept and bundle_id(str(bundle)) == first_id
    assert main(["export", "--workdir", str(run), "--out", str(tmp_path / "else")]) == 0  # the last export elsewhere
    (bundle / ".DS_Store").write_bytes(b"finder")  # beside a kept bundle: left, said (export replaces nothing)
    assert main(["export", "--workdir", str(run)]) == 0
    said = capsys.readouterr().out
    assert kept in said and f"export: note: {bundle} also holds files that are not its bundle's (.DS_Store): left " \
        "as they are" in said and bundle_id(str(bundle)) == first_id
    assert stages.load(str(run), "export")["summary"]["bundle"] == str(bundle)
    (bundle / ".DS_Store").unlink()
    (bundle / "MODEL_CARD.md").write_text("edited")  # changed since: written anew, and said
    assert main(["export", "--workdir", str(run)]) == 0
    assert export_line().endswith(f"; it replaced the bundle of trial {best}, edited since its export "
                                  "(MODEL_CARD.md changed or gone)") and bundle_id(str(bundle)) != first_id
    again = bundle_id(str(bundle))
    assert main(["export", "--workdir", str(run), "--trial", other]) == 0  # another trial: another model
    assert export_line().endswith(f"; it replaced the bundle of trial {best}")
    assert main(["export", "--workdir", str(run), "--trial", best]) == 0
    assert "kept" not in export_line() and bundle_id(str(bundle)) not in (first_id, again)
    from speciesfam.bundle_placement import held_model

    row = {"trial_id": best, **trials_of(run).set_index("trial_id").loc[best].to_dict()}
    assert held_model(str(run), str(bundle), row) is not None
    moved = run.rename(tmp_path / "moved")  # moved with its run folder: still its model (it was written anew:
    assert held_model(str(moved), str(moved / "bundle"), row) is not None  # round 70)
    run = moved.rename(run)
    assert held_model(str(run), str(bundle), {**row, "best_epoch": row["best_epoch"] + 1}) is None  # resumed: better
    tune = stages.load(str(run), "tune")  # a search that ran again on another clean: its trial's model is new
    stages.finish(str(run), "tune", config=tune["config"], summary=tune["summary"],
                  built_from={**tune["built_from"], "clean": "0123456789abcdef"})
    assert held_model(str(run), str(bundle), row) is None


def test_a_moved_or_copied_run_folder_exports_its_own_checkpoints(probe_run, tmp_path, capsys):
    """trials.csv records absolute paths: a moved run folder's export failed ('checkpoint ... has no config.json;
    was it written by speciesfam?'), and a copy's exported the original folder's checkpoints (hostile tester)."""
    from speciesfam.cli import main

    copy = Path(shutil.copytree(probe_run, tmp_path / "copy"))
    shutil.rmtree(copy / "bundle", ignore_errors=True)  # another test's export: kept as the same model (moved with
    marked = list((copy / "tune").rglob("checkpoint_*/metrics.json"))  # its run folder), the marks unread
    for path in marked:  # this copy's own checkpoints
        path.write_text(json.dumps({**json.loads(path.read_text()), "copy": True}))
    assert marked
    assert main(["export", "--workdir", str(copy)]) == 0
    assert json.loads((copy / "bundle" / "metrics.json").read_text())["checkpoint"].get("copy") is True
    # a copy whose search folder was deleted: its trials are missing here, not the original's (round 65)
    bare = Path(shutil.copytree(copy, tmp_path / "bare"))
    shutil.rmtree(next(p for p in (bare / "tune").iterdir() if p.is_dir()))
    assert main(["export", "--workdir", str(bare), "--out", str(tmp_path / "bare-bundle")]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {bare}/tune/" in err and "is not there (deleted, or the search's --storage-path moved)" \
        in err, err
    trials = (copy / "trials.csv").read_text()  # moved: its searches ran in a folder that is no longer there
    (copy / "trials.csv").write_text(trials.replace(str(probe_run), str(tmp_path / "gone")))
    moved = shutil.move(copy, tmp_path / "moved here")
    assert main(["export", "--workdir", str(moved)]) == 0, capsys.readouterr().err
    assert json.loads((Path(moved) / "bundle" / "metrics.json").read_text())["checkpoint"].get("copy") is True
    trials = (Path(moved) / "trials.csv").read_text()  # a search kept elsewhere (--storage-path), gone since
    (Path(moved) / "trials.csv").write_text(trials.replace(str(tmp_path / "gone" / "tune"), "/gone/storage"))
    # (another --out: in RUN/bundle, that trial's intact bundle of this search is kept as it is)
    assert main(["export", "--workdir", str(moved), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "is not there (deleted, or the search's --storage-path moved); export another --trial" in \
        capsys.readouterr().err


def test_a_deleted_trial_table_names_the_resume_that_writes_it(probe_run, tmp_path):
    """With trials.csv deleted, export said to run tune, which then refused the search's name (round 32)."""
    import shutil

    from speciesfam.errors import StageOrderError
    from speciesfam.export import export_bundle

    run = tmp_path / "copy"
    shutil.copytree(probe_run, run)
    (run / "trials.csv").unlink()
    with pytest.raises(StageOrderError, match=r"trials.csv does not exist, though searches ran here \(probe\); "
                                              r"`speciesfam tune probe --workdir .* --name probe --resume` writes it"
                       ) as refused:
        export_bundle(str(run))
    # the command named works as given (a bare --resume was refused for the flags it left out: round 34)
    import shlex

    from speciesfam import cli

    assert cli.main(shlex.split(str(refused.value).split("`")[1])[1:]) == 0 and (run / "trials.csv").exists()
    (run / "trials.csv").unlink()
    # the report said 'Not run yet: speciesfam tune ...' of the searches, as if none had run
    from speciesfam.report import render

    page = render(str(run))
    assert "Not run yet: <code>speciesfam tune" not in page
    assert "trials.csv does not exist, though searches ran here (probe); `speciesfam tune probe --workdir" in page


def test_an_emptied_or_damaged_trial_table_names_the_resume_that_writes_it(probe_run, tmp_path, capsys):
    """An empty trials.csv made export say 'No columns to parse from file' and to give 'the CSV file speciesfam
    wrote, or another path' (export takes no such path)."""
    from speciesfam.errors import StageOrderError
    from speciesfam.export import export_bundle
    from speciesfam.report import render

    run = Path(shutil.copytree(probe_run, tmp_path / "copy"))
    whole = (probe_run / "trials.csv").read_bytes()
    # cut mid-row: pandas read the missing fields as empty, and the report showed a 'Best' trial beside a search
    # of no name that 'trained and scored no trial' (round 47)
    second = whole.index(b"\n", whole.index(b"\n") + 1) + 1
    for content, damage in ((b"", "is empty"), (b"\n\n", "is empty"),
                            (b'trial_id,"unclosed\n1,2\n', "cannot be read as a CSV table (ParserError: "),
                            (whole[:second + 12], "is cut short: its line 3 lacks status, config"),  # its trial id is there
                            (whole[:-3], "is cut short: its last line ends mid-row"),
                            (b"\x00\x01garbage", "is damaged: it holds binary data, not a table of trials (no column "
                                                 "trial_id, status or config)"),  # 'cut short' (round 54)
                            (b"a,b\n1,2\n", "is damaged: it is not a table of trials"),
                            (b"\x89PNG\r\n\x1a\n", "is damaged: it holds binary data, not a table of trials"),
                            (trials_of(probe_run).assign(best_val_macro_f1="abc").to_csv(
                                index=False).encode(),  # a traceback in export, 'abc' in the report (round 53)
                             "is damaged: its column best_val_macro_f1 holds 'abc' on line 2, not a macro-F1 from 0 "
                             "to 1"),
                            *((trials_of(probe_run).assign(**{column: value}).to_csv(index=False)
                               .encode(), f"is damaged: its column {column} holds '{value}' on line 2, not {said}")
                              for column, value, said in (  # exported as the best trial, 'inf' shown (round 54)
                                  ("best_val_macro_f1", float("inf"), "a macro-F1 from 0 to 1"),
                                  ("best_val_macro_f1", 1.5, "a macro-F1 from 0 to 1"),
                                  ("best_val_macro_f1", -0.5, "a macro-F1 from 0 to 1"),
                                  ("epochs_run", 2.5, "a whole number of epochs >= 0"),
                                  ("seconds", -1.0, "a finite number of seconds >= 0")))):
        (run / "trials.csv").write_bytes(content)
        with pytest.raises(StageOrderError) as refused:
            export_bundle(str(run))
        said = str(refused.value)
        assert said.startswith(f"{run / 'trials.csv'} {damage}") and "though searches ran here (probe); " \
            "`speciesfam tune probe --workdir" in said and said.endswith("(each search's --resume adds its trials)"), said
        assert "give the CSV file" not in said
        assert f"trials.csv {damage}" in html.unescape(render(str(run)))  # the report says it too, and renders
    from speciesfam.cli import main

    capsys.readouterr()
    assert main(["report", "--workdir", str(run)]) == 0  # and on the console (only in the page: round 54)
    assert f"report: {run / 'trials.csv'} {damage}" in capsys.readouterr().out
    header = (probe_run / "trials.csv").read_text().splitlines()[0]
    (run / "trials.csv").write_text(header + "\n")  # only its header left: 'see its error column' of no row
    with pytest.raises(StageOrderError, match=r"trials.csv lists no trial of search probe, though searches ran here "
                                              r"\(probe\); `speciesfam tune probe .* --resume` writes them") as refused:
        export_bundle(str(run))
    assert "lists no trial of search probe" in render(str(run))
    # the command named rewrites the table, whatever it held (an empty one failed it: round 37)
    import shlex

    from speciesfam import cli

    (run / "trials.csv").write_bytes(b"")
    assert cli.main(shlex.split(str(refused.value).split("`")[1])[1:]) == 0
    assert len(trials_of(run)) == 2 and export_bundle(str(run))


@pytest.mark.slow  # two more searches, two resumes (~1 min)
def test_a_damaged_table_of_two_searches_is_written_again_by_each_ones_resume(probe_run, tmp_path):
    """trials.csv damaged after two searches: the advice named one search's --resume; after it, export took that
    search's best, silently leaving out the other's (hostile tester round 38)."""
    import shlex

    from speciesfam import cli
    from speciesfam.errors import StageOrderError
    from speciesfam.export import export_bundle

    run = Path(shutil.copytree(probe_run, tmp_path / "copy"))
    assert cli.main(["tune", "probe", "--workdir", str(run), "--name", "second", "--num-samples", "1",
                     "--max-epochs", "2", "--smoke-test"]) == 0
    (run / "trials.csv").write_bytes(b"garbage\xff\n")
    with pytest.raises(StageOrderError) as refused:
        export_bundle(str(run))
    commands = str(refused.value).split("`")[1::2]
    assert [c.split("--name ")[1] for c in commands] == ["probe --resume", "second --resume"], refused.value
    assert cli.main(shlex.split(commands[0])[1:]) == 0  # one of the two: the other's trials are still missing
    with pytest.raises(StageOrderError, match=r"lists no trial of search second, though searches ran here "
                                              r"\(probe, second\); `speciesfam tune probe .*--name second .*--resume` "
                                              r"writes them again"):
        export_bundle(str(run))
    assert cli.main(shlex.split(commands[1])[1:]) == 0
    assert sorted(set(trials_of(run)["search"])) == ["probe", "second"] and export_bundle(str(run))


def test_a_trial_dropped_with_an_older_split_is_said_so(probe_run, tmp_path):
    """export --trial of a trial dropped from trials.csv because its search ran on an older clean said only 'not
    in trials.csv' (hostile tester round 38)."""
    from speciesfam.errors import SpeciesfamError
    from speciesfam.export import export_bundle

    run = Path(shutil.copytree(probe_run, tmp_path / "copy"))
    with pytest.raises(SpeciesfamError) as refused:
        export_bundle(str(run), trial_id="gone1234")
    assert "trial 'gone1234' is not in" in str(refused.value) and "were dropped" not in str(refused.value)
    record = run / "stages" / "tune.json"  # a search of an older clean run, as the record keeps it
    tune = json.loads(record.read_text())
    tune["searches"]["older"] = {**tune["searches"]["probe"], "built_from": {"catalog": "0" * 32, "clean": "1" * 32}}
    record.write_text(json.dumps(tune))
    with pytest.raises(SpeciesfamError, match=r"\(the trials of 'older', searches of an older catalog or clean run, "
                                              r"were dropped from it: their splits are gone\)"):
        export_bundle(str(run), trial_id="gone1234")
    # the search re-run under the same name on newer splits: the record names it as current, its folder holds the
    # dropped trial (it said only 'not in trials.csv'; round 39)
    tune["searches"].pop("older")
    record.write_text(json.dumps(tune))
    old = run / "tune" / "probe" / "probe_trial_gone1234_1_lr=0.1_2026-12-05_10-00-00"
    old.mkdir()
    # (or under the same --name on the same splits: it said 'on an older catalog or clean run'; round 46)
    with pytest.raises(SpeciesfamError, match=f"; trial gone1234 ran in {re.escape(str(old))}, and the table no longer "
                                              "holds it: a search on an older catalog or clean run, or one started "
                                              "again under the same --name, leaves its trials out$"):
        export_bundle(str(run), trial_id="gone1234")
    # the random and grid searchers' ids hold '_' (29dc3_00000): no explanation was given for them
    old = run / "tune" / "probe" / "probe_trial_29dc3_00000_0_lr=0.1_2026-12-05_10-00-00"
    old.mkdir()
    with pytest.raises(SpeciesfamError, match=f"; trial 29dc3_00000 ran in {re.escape(str(old))}, and the table"):
        export_bundle(str(run), trial_id="29dc3_00000")
