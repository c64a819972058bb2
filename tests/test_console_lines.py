"""The console's lines: quiet workers, one line per trial saying how it ended (the time budget, its
own patience), a search that trained nothing failing, the demo's nesting."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest
from conftest import Tee, pickle_by_value

from speciesfam import console, interrupts, layout, lines, stage_log, stages, summaries


def test_workers_start_quiet(ray_session):
    """Every Ray worker gets the quiet environment (TensorFlow/absl/gRPC read it at import)."""
    import ray

    env = ray.get(ray.remote(lambda: dict(os.environ)).options(num_cpus=0.1).remote())
    assert env["GRPC_VERBOSITY"] == "ERROR" and env[console.VERBOSE_ENV] == "0"
    assert env["TF_CPP_MIN_LOG_LEVEL"] in ("2", "3")  # 3 by default; a user's (here conftest's) setting wins


def test_trial_line_and_scheduler_stop():
    assert lines.trial_line(2, 4, "ab12", "scratch_small", 1, 0.79999999, "stopped by ASHA") == \
        "  trial 2/4 ab12  scratch_small        1 epoch  best val macro-F1 0.800  stopped by ASHA"
    # ids, models and epochs stay in their columns from trial 9 to trial 10
    nine, ten = (lines.trial_line(i, 16, "ab12", "probe", 3, 0.5, "finished") for i in (9, 10))
    assert len(nine) == len(ten) and nine.index("ab12") == ten.index("ab12")
    assert lines.stopped_by_scheduler(True, 3, 10) and not lines.stopped_by_scheduler(True, 10, 10)
    assert not lines.stopped_by_scheduler(False, 3, 10)  # returned on its own (patience)


def test_the_demo_nests_each_stages_lines_under_its_step(capsys):
    """The demo's stage lines (clean's "embedding ...", the search's start line, its trials) started at column 0
    between steps whose summaries were indented."""
    console.say("[3/6] tune: scratch CNNs")
    with console.indented("      "):
        console.say("tune: search 'demo': 2 scratch trials")
        console.say(lines.trial_line(1, 2, "ab12", "scratch_small", 1, 0.5, "finished"))
    console.say("[4/6] export")
    assert capsys.readouterr().out.splitlines() == [
        "[3/6] tune: scratch CNNs", "      tune: search 'demo': 2 scratch trials",
        "        trial 1/2 ab12  scratch_small        1 epoch  best val macro-F1 0.500  finished", "[4/6] export"]


def test_how_a_trial_ended_reads_its_own_final_epoch_first():
    assert lines.how_ended(False, 4, 10, "ASHA", final=True) == "early stopping"  # its patience ran out
    assert lines.how_ended(True, 10, 10, "ASHA", final=True) == "finished"  # ASHA's stop at max_t
    assert lines.how_ended(True, 3, 10, "ASHA", final=False) == "stopped by ASHA"
    assert lines.how_ended(False, 3, 10, "ASHA", final=False, cut_by="the time budget (5 s)") == \
        "stopped by the time budget (5 s)"  # before, this read "early stopping"
    assert lines.how_ended(True, 3, 10, "ASHA") == "stopped by ASHA"  # older runs: inferred from done + epochs
    assert [lines.final_flag(v) for v in ("True", "false", True, float("nan"), None)] == [True, False, True,
                                                                                            None, None]
    # a CNN trial resumed at epoch 8 ran to its 40th epoch as Tune's 33rd iteration: it read "early stopping"
    resumed = {"epoch": 40, "training_iteration": 33, "done": False, "final_epoch": True}
    assert lines.how_ended(resumed["done"], lines.epoch_of(resumed), 40, "ASHA", final=True) == "finished"
    assert lines.epoch_of({"training_iteration": 3}) == 3  # results without an epoch (a user's trainable)


def slow_toy(config):
    """``config['epochs']`` epochs of ``config['sleep']`` s each, each report saying whether it is the last."""
    import time

    from ray import tune

    time.sleep(config.get("delay", 0))  # before its first epoch
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config["sleep"])
        tune.report({layout.METRIC: 0.5 + epoch / 1000, "epoch": epoch, "final_epoch": epoch == config["epochs"]})


@pytest.mark.slow  # a 30 s budget; the default run checks the budget's other end (the test below)
def test_trials_the_time_budget_cut_get_a_line_and_the_summary_says_so(tmp_path, ray_session):
    """A search ended by its time budget: Tune calls no on_trial_complete for the trials still training, so they
    had no console line and the summary counted only the trials run as if that were all."""
    from ray import tune

    from speciesfam.config import TuneConfig
    from speciesfam.summaries import summary_line
    from speciesfam.tune.search import fit, make_tuner, record_search
    from speciesfam.tune.tracking import write_trial_table

    console.setup()  # 30 s: time for trial processes to start on a busy 2-core machine (12 s was not, with
    # other tests running beside), then two to finish
    pickle_by_value(__name__)
    cfg = TuneConfig(searcher="grid", scheduler="fifo", num_samples=4, max_epochs=1000, max_failures=0,
                     max_concurrent=2, time_budget_s=30, seed=1)
    with Tee() as tee:
        space = {"epochs": tune.grid_search([2, 1000]), "sleep": 0.2}
        tuner = make_tuner(tune.with_resources(slow_toy, {"CPU": 0.5}), space, cfg, str(tmp_path / "tune"),
                           "budget")
        results, ending = fit(tuner, space, cfg)
    table = write_trial_table(results, str(tmp_path))
    assert set(table["search"]) == {"budget"}  # each trial's search, by name (trials.csv)
    record_search(str(tmp_path), cfg, "budget", table, **ending)
    trial_lines = [ln for ln in tee.lines if re.match(r"\s+trial \d+", ln) and "not trained" not in ln]
    ran = table[table["epochs_run"] > 0]
    assert len(trial_lines) == len(ran) >= 2, tee.lines  # one line per trial that trained, none twice
    assert sum(ln.endswith("stopped by the time budget (30 s)") for ln in trial_lines) >= 1, trial_lines
    # a trial's own end:
    assert sum(ln.endswith("  early stopping") and " 2 epochs " in ln for ln in trial_lines) >= 1, trial_lines
    assert summary_line(str(tmp_path), "tune").startswith(
        f"tune: {len(table)} of 8 trials before the time budget (30 s) ended the search ({len(ran)} ok)")


def test_trials_the_time_budget_stops_before_their_first_epoch_say_not_trained(tmp_path, ray_session):
    """Tune completes such a trial with a result of its own (no metric): its line said '0 epochs ... finished'.
    Its row says so, and a search that trained nothing fails (it reported success when every trial failed)."""
    from ray import tune

    from speciesfam.config import TuneConfig
    from speciesfam.errors import SearchFailedError
    from speciesfam.tune.search import check_some_trial_trained, fit, make_tuner
    from speciesfam.tune.tracking import write_trial_table

    console.setup()
    pickle_by_value(__name__)
    cfg = TuneConfig(searcher="random", scheduler="fifo", num_samples=2, max_epochs=3, max_failures=0,
                     max_concurrent=2, time_budget_s=3, seed=1)
    space = {"epochs": 3, "sleep": 0.1, "delay": 120}
    with Tee() as tee:
        # 2 CPUs each: one trial starts, the other waits for its CPUs until the budget ends (never started)
        results, _ = fit(make_tuner(tune.with_resources(slow_toy, {"CPU": 2}), space, cfg, str(tmp_path / "tune"),
                                    "late"), space, cfg)
    trial_lines = [ln for ln in tee.lines if re.match(r"\s+trial \d+", ln)]
    assert len(trial_lines) == 2 and all(ln.endswith("not trained: stopped by the time budget (3 s)")
                                         for ln in trial_lines), \
        tee.lines
    from speciesfam.tune.tracking import trial_table

    # an interrupt just after a reused trial process's previous trial left that trial's report as the next one's
    # last: it was written under the other's id and settings, its own row gone (round 52); Tune's trial names it
    trials = results._experiment_analysis.trials
    i = next(i for i, r in enumerate(results) if (r.metrics or {}).get("trial_id"))
    j = 1 - i
    results._results[j] = dataclasses.replace(results[j], metrics=results[i].metrics)
    mixed = trial_table(results).set_index("trial_id")
    assert mixed.index.is_unique and len(mixed) == len(trials), mixed.index
    assert json.loads(mixed.loc[trials[j].trial_id, "config"]) == trials[j].config
    table = write_trial_table(results, str(tmp_path))
    assert table["status"].tolist() == ["not_trained"] * 2 and set(table["search"]) == {"late"}
    import pandas as pd

    assert set(pd.read_csv(tmp_path / "trials.csv")["search"]) == {"late"}  # trials.csv names each trial's search
    assert table["error"].str.contains("before its first epoch").all()
    assert all(json.loads(c)["delay"] == 120 for c in table["config"])  # its settings, though it reported nothing
    with pytest.raises(SearchFailedError, match="no trial of 2 finished with a val macro-F1: ended before"):
        check_some_trial_trained(table)

    # --resume: Tune keeps both (ended, not errored) and runs nothing; their lines say so, not that the search's
    # end stopped them (it said 'not trained: stopped by the search's end', listed last).
    resumed = dataclasses.replace(cfg, resume=True)
    with Tee() as tee:
        fit(make_tuner(tune.with_resources(slow_toy, {"CPU": 0.5}), space, resumed, str(tmp_path / "tune"), "late"),
            space, resumed)
    trial_lines = [ln for ln in tee.lines if re.match(r"\s+trial \d+", ln)]
    assert len(trial_lines) == 2 and all(ln.endswith("not trained (kept from before --resume)")
                                         for ln in trial_lines), tee.lines


def test_clean_summary_counts_near_duplicates_dropped_and_names_families_left_empty(tmp_path):
    """`clean --dedupe near` at a low threshold dropped 40 of 42 images and two whole families, and the line said
    '1 removed, 1 images kept; 563 near-duplicates flagged' (pairs, not images)."""
    import pandas as pd

    before = pd.DataFrame({"path": list("abcdef"), "label": ["Felidae"] * 2 + ["Ranidae"] * 2 + ["Apidae"] * 2,
                           "status": "ok", "split": "train"})
    after = before.assign(status=["ok", "removed", "duplicate", "duplicate", "duplicate", "duplicate"],
                          reason=["", "outlier", "near-duplicate of a (group 0, cosine up to 0.990)",
                                  "near-duplicate of a (group 0, cosine up to 0.990)", "exact duplicate of a",
                                  "near-duplicate of a (group 0, cosine up to 0.990)"])
    before.to_parquet(tmp_path / layout.MANIFEST)
    after.to_parquet(tmp_path / layout.CLEAN_MANIFEST)
    pd.DataFrame({"a": range(5), "b": range(5)}).to_csv(tmp_path / layout.NEAR_DUPLICATES, index=False)
    assert summaries.summary_line(str(tmp_path), "clean") == (
        "clean: 1 removed, 3 near-duplicates dropped, 1 image kept in 1 family; 2 families left with no image: "
        "'Apidae', 'Ranidae'; 5 near-duplicate pairs flagged")

    for kind, model, said in (("probe", "probe", "probe"),  # it said '(probe, probe, trial t1)'
                              ("scratch", "scratch_functional", "scratch, scratch_functional")):
        stages.finish(str(tmp_path), "export", summary={"bundle": "B", "kind": kind, "model": model, "trial_id": "t1",
                                                          "reason": "the best"})
        assert summaries.summary_line(str(tmp_path), "export") == f"export: B ({said}, trial t1): the best"
    # a collection of one family: catalog said nothing and only tune refused it (hostile tester)
    after.to_parquet(tmp_path / layout.MANIFEST)
    assert summaries.summary_line(str(tmp_path), "catalog") == (
        "catalog: 6 rows (4 duplicate, 1 ok, 1 removed); 1 family (a classifier needs at least 2: tune will refuse "
        "this collection); 2 families with no usable image (see catalog.md): 'Apidae' (2 duplicate), "
        "'Ranidae' (2 duplicate)")
    # families whose every file is unreadable or too small are named (they dropped out unsaid; round 40)
    pd.DataFrame({"path": list("abcde"), "label": ["Felidae", "Ranidae", "Broken", "Broken", "Tiny"],
                  "status": ["ok", "ok", "unreadable", "unreadable", "too_small"]}).to_parquet(tmp_path / layout.MANIFEST)
    assert summaries.summary_line(str(tmp_path), "catalog") == (
        "catalog: 5 rows (2 ok, 2 unreadable, 1 too_small); 2 families; 2 families with no usable image (see "
        "catalog.md): 'Broken' (2 unreadable), 'Tiny' (1 too_small)")  # a readable image, too few: said (round 48)
    from speciesfam.data.catalog_report import report

    assert '- families with no usable image (their rows are under Not used): `"Broken"` (2 unreadable), `"Tiny"` ' \
        '(1 too_small)' in \
        report(pd.read_parquet(tmp_path / layout.MANIFEST).assign(split="train", reason=""), "src")  # as the line says


def test_a_stage_log_holds_each_framework_record_once(tmp_path):
    """RUN/logs/tune.log had every Tune INFO line twice: the handler sits on `ray` and on `ray.tune`, and
    Ray's child loggers propagate to `ray` (which does not propagate further)."""
    import logging

    __import__("ray.tune")  # sets up Ray's loggers as in a search

    stages.finish(str(tmp_path), "catalog")  # a run folder: a stage's log goes into no other
    with stage_log.stage_logs(str(tmp_path), "tune") as path:
        logging.getLogger("ray.tune.search.optuna").critical("Wrote the latest version of all result files")
        logging.getLogger("ray.data").critical("a Ray Data warning")
    text = open(path).read()
    assert text.count("Wrote the latest version") == 1 and text.count("a Ray Data warning") == 1, text


def test_a_log_that_cannot_be_written_is_one_line_not_a_traceback_per_record(tmp_path, capsys):
    """On a full disk every record of a search printed logging's '--- Logging error ---' and a traceback (600
    lines, the trials' own lines lost among them: hostile tester). Here the log is a folder (it cannot be opened:
    that reached the code that logged). A log that is a link (to /dev/full, or into another run folder: written
    through, round 68) is refused before the stage's work, as catalog refuses any link among a run's files."""
    import logging
    import os

    from speciesfam.errors import SourceError

    stages.finish(str(tmp_path), "catalog")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "clean.log").mkdir()
    with stage_log.stage_logs(str(tmp_path), "clean"):
        for k in range(5):
            logging.getLogger("ray.tune").warning("Saving experiment state failed (%d)", k)
    out, err = capsys.readouterr()
    assert "Logging error" not in err and "Traceback" not in err, err
    said = f"clean: warning: cannot write its log {tmp_path}/logs/clean.log (IsADirectoryError: "
    assert out.count(said) == 1 and out.count("\n") == 1, out
    os.symlink("/dev/full", tmp_path / "logs" / "tune.log")
    with pytest.raises(SourceError, match=r"'logs/tune.log' is a link \(logs/tune.log -> /dev/full\); a run writes "
                                          "its own files"):
        with stage_log.stage_logs(str(tmp_path), "tune"):
            pass
    other = tmp_path / "other_run_logs"  # logs/ itself a link: export and report wrote through it (round 68)
    other.mkdir()
    (tmp_path / "logs").rename(tmp_path / "old_logs")
    (tmp_path / "logs").symlink_to(other)
    with pytest.raises(SourceError, match="'logs' is a link"):
        with stage_log.stage_logs(str(tmp_path), "export"):
            pass
    assert list(other.iterdir()) == []


def test_numbers_for_people_keep_small_and_huge_values_readable():
    """The report showed a learning rate of 3e-4 as 0.000 and one of 1e30 as 31 digits."""
    assert [lines.number(v) for v in (0.0003, 0.0015, 1e-05, 1e30, 0.8, 0.0, 3.0, 12, None, float("nan"))] == [
        "0.0003", "0.0015", "1e-05", "1e+30", "0.800", "0.000", "3", "12", "–", "–"]
    # the search's wall time to 0 decimals read '1e+01 s', a trial's 0.97 s to 1 decimal '1' (round 62)
    assert [lines.number(9.5, 0), lines.number(0.96, 1), lines.number(0.3, 0), lines.number(0.04, 1)] == \
        ["10", "1.0", "0.3", "0.04"]



def test_a_line_naming_a_few_of_many_says_how_many_it_left_out():
    """clean's line of images gone since catalog showed a Python list of the first 5 and no word of the rest;
    export's and evaluate's lists of foreign files ended in '...'."""
    assert lines.some([f"/img/{i}.jpg" for i in range(8)]) == \
        "/img/0.jpg, /img/1.jpg, /img/2.jpg, /img/3.jpg, /img/4.jpg and 3 more"
    assert lines.some(["Felidae", "O'Hara"], quote=True) == "'Felidae', \"O'Hara\""
    assert lines.some({"a": 1}.keys(), n=1) == "a" and lines.some([]) == ""
    # a 250-character family filled the screen in clean's and tune's warnings: its head, tail and length
    long = "Family" + "x" * 240 + "idae"
    assert lines.some([long, "Felidae"], quote=True) == \
        f"'{long[:40]}…{long[-20:]}' (250 characters), 'Felidae'"
    from speciesfam.data.clean_report import lost_lines

    said = lost_lines({"split_lost": {"val": [long]}})[0]
    assert "(250 characters)" in said and len(said) < 200, said
    # a family whose files were all gone since catalog: a warning per split, each the same (round 48): one line
    gone = "images gone, changed or undecodable since catalog (re-run catalog)"
    assert lost_lines({"split_lost": {s: ["Tiny"] for s in ("train", "val", "test")},
                       "split_lost_cause": {s: {gone: ["Tiny"]} for s in ("train", "val", "test")}}) == [
        f"1 family has no train, val or test images left ('Tiny'): {gone} took them all, so no model learns them"]
    assert lost_lines({"split_lost": {"val": ["A", "B"], "test": ["A", "B"]}}) == [
        "2 families have no val or test images left ('A', 'B'), so they count in no val or test score"]
    # a decomposed 'Café' read as the composed one in tune's warnings (round 38)
    assert lines.some(["Caf\u00e9", "Cafe\u0301"], quote=True) == "'Café', \"Cafe\\u0301\""
    # only the marks escaped: the rest of such a name was \u-escaped too, unreadable (round 66)
    assert lines.quoted("Cafe\u0301 \u00d6l \u718a\t\"") == '"Cafe\\u0301 \u00d6l \u718a\\t\\""'
    from speciesfam.markdown import json_line

    assert json_line(["Caf\u00e9", "Cafe\u0301"]) == '["Café", "Cafe\\u0301"]'  # the model card's 'Not scored'


def test_the_raylets_worker_pool_note_goes_to_the_log_and_its_errors_to_the_console(tmp_path, capsys):
    """'(raylet) WARNING: 8 PYTHON worker processes have been started on node ...' reached the console on every
    CNN search (hostile tester): Ray's note on its own worker pool goes to the stage log; a message of Ray's that
    a user needs (a worker killed for memory) still reaches the console, as one line."""
    from ray._private import worker

    note = ("WARNING: 8 PYTHON worker processes have been started on node: abc with address: 127.0.0.1. This "
            "could be a result of using a large number of actors, or due to tasks blocked in ray.get() calls")
    killed = "Task was killed due to the node running low on memory."
    died = ("\x1b[33m(raylet)\x1b[0m A worker died or was killed while executing a task by an unexpected system "
            "error. To troubleshoot the problem, check the logs for the dead worker. Worker exit type: SYSTEM_ERROR")
    console.setup()
    console.quiet_raylet_notes()
    console.quiet_raylet_notes()  # once, however often Ray is started
    stages.finish(str(tmp_path), "catalog")
    with stage_log.stage_logs(str(tmp_path), "tune") as log:
        worker.print_to_stdstream({"lines": [note], "pid": "raylet", "is_err": False}, ignore_prefix=False)
        worker.print_to_stdstream({"lines": [killed], "pid": "raylet", "is_err": False}, ignore_prefix=False)
        worker.print_to_stdstream({"lines": [died], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    said = capsys.readouterr()
    out = said.out
    assert "worker processes have been started" not in out and out == "", out
    # Ray's messages in one line each, its first sentence, on stderr without colour codes (a paragraph of Ray's
    # advice with ANSI codes reached a piped stdout: hostile tester round 33); the whole in the log
    assert said.err == (f"ray: {killed} (--verbose shows Ray's whole message; the run's logs/ keep it)\n"
                        "ray: A worker died or was killed while executing a task by an unexpected system "
                        "error. (--verbose shows Ray's whole message; the run's logs/ keep it)\n"), said.err
    assert "Worker exit type: SYSTEM_ERROR" in open(log).read()
    # no run folder (predict of a bundle kept elsewhere): no logs/ to point at (round 46)
    worker.print_to_stdstream({"lines": [killed], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    assert capsys.readouterr().err == f"ray: {killed} (--verbose shows Ray's whole message)\n"
    assert "worker processes have been started" not in said.err, said.err  # nor by the 'ray' logger's handler
    assert "(raylet) WARNING: 8 PYTHON worker processes" in open(log).read()
    # while a Ctrl-C ends the command, Ray's notes on the work it cuts short go to the log (an interrupted batch
    # predict printed '(raylet) Task MapWorker(...).submit failed ... killed by ray.kill'; round 28)
    cut = "Task MapWorker(MapBatches(decode_batch)).submit failed. There are infinite retries remaining"
    interrupts.STOPPING.set()
    try:
        with stage_log.stage_logs(str(tmp_path), "predict") as log:
            worker.print_to_stdstream({"lines": [cut], "pid": "raylet", "is_err": True}, ignore_prefix=False)
    finally:
        interrupts.STOPPING.clear()
    said = capsys.readouterr()
    assert cut not in said.out + said.err and f"(raylet) {cut}" in open(log).read(), said


def test_a_console_whose_reader_went_away_does_not_stop_the_work(tmp_path):
    """`speciesfam tune ... | head -1`: the next console line raised BrokenPipeError, which ended the search with
    nothing recorded, then said 'check the path, its permissions and free space' (hostile tester round 46). The
    stage goes on, its log keeps the lines; a result printed into a closed pipe exits 141, as Unix tools do."""
    import subprocess
    import sys

    from PIL import Image

    for fam in ("Alpha", "Beta"):
        for i in range(3):
            (tmp_path / "src" / fam).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), (i * 40, len(fam) * 20, 90)).save(tmp_path / "src" / fam / f"{i}.png")
    run = tmp_path / "run"
    shell = (f"set -o pipefail; {sys.executable} -m speciesfam.cli catalog {tmp_path / 'src'} --workdir {run} "
             "--min-images 3 | true")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "BrokenPipe" not in done.stderr, done.stderr
    assert (run / layout.MANIFEST).exists() and "catalog: 6 rows" in (run / "logs" / "catalog.log").read_text()
    from speciesfam.console import _write

    read, write = __import__("os").pipe()
    __import__("os").close(read)
    stream = open(write, "w")
    _write("a line", stream)  # no error
    stream.write("more\n")
    stream.flush()  # sent to /dev/null: no error at exit either
    stream.close()


def test_an_interrupt_in_a_cleanup_callback_is_logged_not_printed():
    """A SIGTERM whose KeyboardInterrupt was raised in a weakref callback printed 'Exception ignored in: <function
    WeakKeyDictionary...> Traceback ... KeyboardInterrupt' just before a search's summary (round 54)."""
    import subprocess
    import sys

    script = ("import logging, sys\nfrom speciesfam import console\nconsole.setup(False)\n"
              "class Cleanup:\n    def __del__(self):\n        raise KeyboardInterrupt\n"
              "class Broken:\n    def __del__(self):\n        raise ValueError('still said')\n"
              "Cleanup()\nBroken()\nprint('went on')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "went on\n", out
    assert "KeyboardInterrupt" not in out.stderr and "ValueError: still said" in out.stderr, out.stderr


def test_interrupts_held_after_a_searchs_trials_only_to_its_stage_end():
    """The command's stage holds a Ctrl-C from the end of the trials to its summary; a Python caller of
    run_search (no stage scope) keeps its Ctrl-C, and the stage puts the handlers back."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    interrupts.hold_interrupts()  # outside a stage: nothing held
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts.interrupts_holdable():
        interrupts.hold_interrupts()
        os.kill(os.getpid(), signal.SIGINT)  # noted in the log, not raised
    assert signal.getsignal(signal.SIGINT) is before
