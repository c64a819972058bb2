"""The console's lines around an interrupt: a search SIGTERM stopped and resumed, the trials a resume kept (their
order, their best before the resume), when to advise --resume, an interrupted demo, a stage's log ending."""

from __future__ import annotations

import dataclasses
import os
import re
from types import SimpleNamespace

import pytest
from conftest import Tee, pickle_by_value

from speciesfam import console, interrupts, layout, lines, stage_log, stages
from speciesfam.errors import SpeciesfamError


def killer_toy(config):
    """Trains 1 epoch at a time; the trial with ``config['kill']`` sends SIGTERM to the driver at its epoch 2,
    the first time only."""
    import os
    import signal
    import time

    from ray import tune

    for epoch in range(1, config["epochs"] + 1):
        time.sleep(0.2)
        if config["kill"] and epoch == 2 and not os.path.exists(config["marker"]):  # once: not again on resume
            open(config["marker"], "w").close()
            os.kill(config["driver"], signal.SIGTERM)
        tune.report({layout.METRIC: float(config["scale"]) * (0.5 + epoch / 1000), "epoch": epoch,
                     "final_epoch": epoch == config["epochs"]})


@pytest.mark.slow  # ~16 s: a search stopped, then resumed
def test_sigterm_stops_a_search_so_that_it_resumes_and_says_so(tmp_path, ray_session):
    """SIGTERM (kill, timeout, a batch scheduler) made Ray's handler abort the driver: a CNN search could then
    never be resumed, and an interrupted search exited 0 looking complete (hostile tester). Now SIGTERM stops
    it as Ctrl-C does: Tune saves its state, the lines and summary say it was interrupted, --resume finishes."""
    import signal

    import pandas as pd
    from ray import tune

    from speciesfam.config import TuneConfig
    from speciesfam.summaries import summary_line
    from speciesfam.tune.search import fit, make_tuner, record_search
    from speciesfam.tune.tracking import write_trial_table

    console.setup()
    pickle_by_value(__name__)
    before = signal.getsignal(signal.SIGTERM)
    cfg = TuneConfig(searcher="grid", scheduler="fifo", num_samples=1, max_epochs=50, max_failures=0,
                     max_concurrent=1, seed=1, name="term")
    # a tune.sample_from value: a trial drawn after --resume got Tune's placeholder for it, a tuple (tester)
    space = {"kill": tune.grid_search([False, True, False]), "epochs": 4, "driver": os.getpid(),
             "marker": str(tmp_path / "killed"), "scale": tune.sample_from(lambda spec: 1.0)}
    trainable = tune.with_resources(killer_toy, {"CPU": 0.5})
    with Tee() as tee:
        results, ending = fit(make_tuner(trainable, space, cfg, str(tmp_path / "tune"), "term"), space, cfg)
    assert ending["interrupted"] and signal.getsignal(signal.SIGTERM) is before
    table = write_trial_table(results, str(tmp_path))
    record_search(str(tmp_path), cfg, "term", table, **ending)
    trial_lines = [ln for ln in tee.lines if re.match(r"\s+trial \d+", ln)]
    assert any(ln.endswith("stopped by the interrupt") for ln in trial_lines), trial_lines
    assert all(re.match(rf"\s+trial {i}/3 ", ln) for i, ln in enumerate(trial_lines, 1)), trial_lines
    assert "before an interrupt (SIGINT/SIGTERM) ended the search" in summary_line(str(tmp_path), "tune")
    assert "the same command with --resume" in summary_line(str(tmp_path), "tune")
    assert "--resume" not in summary_line(str(tmp_path), "tune", resume_hint=None)  # the demo's line
    from speciesfam.demo import stop_if_interrupted

    with pytest.raises(KeyboardInterrupt):  # the demo stops (exit 130) instead of exporting the cut-short trials
        stop_if_interrupted(str(tmp_path))
    finished_before = {ln.split()[2] for ln in trial_lines if not ln.endswith("stopped by the interrupt")}
    resumed = dataclasses.replace(cfg, resume=True)
    with Tee() as tee:
        results, ending = fit(make_tuner(trainable, space, resumed, str(tmp_path / "tune"), "term"), space, resumed)
    table = write_trial_table(results, str(tmp_path))
    assert not ending["interrupted"] and len(table) == 3 and (table["status"] == "ok").all(), table
    # a grid of 3 trials: the lines count to 3, in the first search and the resumed one ("trial 1/1" was said)
    trial_lines = [ln for ln in tee.lines if re.match(r"\s+trial \d+", ln)]
    assert len(trial_lines) == 3 and all(re.match(rf"\s+trial {i}/3 ", ln)
                                         for i, ln in enumerate(trial_lines, 1)), trial_lines
    # a trial that had ended before the interrupt is not trained again: its line comes first and says it is kept
    # (a trial that ran again after the resume has more than its 4 results in progress.csv)
    rows = {t.trial_id: len(pd.read_csv(os.path.join(t.trial_path, "progress.csv"))) for t in table.itertuples()}
    kept_ids = {i for i in finished_before if rows[i] == 4}
    kept = [ln.endswith(" (kept from before --resume)") for ln in trial_lines]
    assert kept == sorted(kept, reverse=True) and {ln.split()[2] for ln, k in zip(trial_lines, kept) if k} == \
        kept_ids, trial_lines


def test_trials_kept_by_a_resume_are_listed_in_the_order_they_ended():
    """Kept trials were numbered in Tune's restore order when they had ended within one second (Tune's result
    timestamp is in whole seconds): a resumed search's lines read 'trial 1/3' for the first run's trial 2."""
    from ray.tune.experiment import Trial

    console.setup()
    trials = []
    for name, score, ended_at in (("c", 0.7, 0.9), ("a", 0.5, 0.2), ("b", 0.6, 0.5)):  # Tune's restore order
        trial = Trial("probe", trial_id=name, stub=True)
        trial.update_last_result({"timestamp": 1000, "epoch": 4, "training_iteration": 4, "done": True,
                                  layout.METRIC: score})
        trial.run_metadata.last_result_time = 1000 + ended_at
        trial.set_status(Trial.TERMINATED)
        trials.append(trial)
    with Tee() as tee:
        lines.trial_lines_callback(3, "fifo", max_epochs=4).on_step_begin(0, trials=trials)
    said = [ln.split() for ln in tee.lines if ln.lstrip().startswith("trial ")]
    assert [(words[1], words[2], words[9]) for words in said] == [("1/3", "a", "0.500"), ("2/3", "b", "0.600"),
                                                                  ("3/3", "c", "0.700")], tee.lines


def test_a_resumed_trials_line_gives_its_best_before_the_resume_too(tmp_path, monkeypatch):
    """A trial's line after a --resume said the best of its epochs since the resume (0.500) while trials.csv said
    1.000 from before it (hostile tester round 34)."""
    import json

    from speciesfam.tune.history import HISTORY

    console.setup()
    folder = tmp_path / "tune" / "s" / "_trial_t1"
    folder.mkdir(parents=True)
    (folder / HISTORY).write_text(json.dumps({"epoch": 2, layout.METRIC: 1.0}) + "\n")
    (folder / "result.json").write_text(json.dumps({"epoch": 5, layout.METRIC: 0.5}) + "\n")
    trial = SimpleNamespace(trial_id="t1", path=str(folder), config={}, trainable_name="probe",
                            last_result={"epoch": 5, "done": False, "final_epoch": True, layout.METRIC: 0.5})
    callback = lines.trial_lines_callback(1, "fifo", max_epochs=5)
    callback.best["t1"] = 0.5  # what this run saw
    with Tee() as tee:
        callback._line([trial], trial, "finished")
    assert "best val macro-F1 1.000" in tee.lines[-1], tee.lines
    trial.path = str(tmp_path / "elsewhere")  # no history kept: the line says what the run saw
    callback.lined.clear()
    with Tee() as tee:
        callback._line([trial], trial, "finished")
    assert "best val macro-F1 0.500" in tee.lines[-1], tee.lines


def test_an_interrupted_search_says_resume_only_when_a_trial_reported(tmp_path):
    """The summary said 'continue it: the same command with --resume' after an interrupt that came before any
    trial reported a result, and --resume then refused ('nothing to continue') (hostile tester)."""
    import pandas as pd

    from speciesfam.config import TuneConfig
    from speciesfam.summaries import summary_line
    from speciesfam.tune.search import record_search

    cfg = TuneConfig(kind="probe", num_samples=2, name="cut")
    for epochs, says in (([0, 0], "without --resume"), ([0, 2], "continue it: the same command with --resume")):
        table = pd.DataFrame({"trial_id": ["a", "b"], "status": "not_trained", "epochs_run": epochs,
                              layout.BEST_METRIC: float("nan"), "seconds": float("nan"), "best_epoch": float("nan")})
        record_search(str(tmp_path), cfg, "cut", table, planned=2, interrupted=True)
        line = summary_line(str(tmp_path), "tune")
        assert says in line and ("continue it" in line) == (says.startswith("continue")), line


def test_an_interrupted_demo_says_the_command_that_starts_it_over(tmp_path, capsys):
    """In a folder of the user's, the demo's 'starts over' hint left out its --workdir (hostile tester round 28)."""
    from speciesfam.demo import stop_if_interrupted

    stages.finish(str(tmp_path), "tune", summary={"interrupted": True})
    with pytest.raises(KeyboardInterrupt):
        stop_if_interrupted(str(tmp_path))
    assert capsys.readouterr().out == (f"demo: stopped after the interrupted search, nothing exported; `speciesfam "
                                       f"demo --workdir {tmp_path}` starts over\n")
    from speciesfam.config import DemoConfig

    with pytest.raises(KeyboardInterrupt):  # the flags it was given too (round 47: --max-epochs was dropped)
        stop_if_interrupted(str(tmp_path), DemoConfig(workdir=str(tmp_path), max_epochs=3))
    assert capsys.readouterr().out.endswith(f"`speciesfam demo --workdir {tmp_path} --max-epochs 3` starts over\n")


def test_the_demo_refuses_a_run_folder_of_another_collection_before_its_first_line(tmp_path, capsys):
    """`demo --workdir RUN` re-catalogued the demo images into a run of the user's own collection, replacing its
    catalog, cleaning and galleries unsaid; a folder of the user's files was refused after '[1/6] catalog ...'
    (round 48)."""
    from speciesfam import cli
    from speciesfam.demo import demo_images, refuse_other_run

    mine = tmp_path / "mine"
    stages.finish(str(mine), "catalog", config={"source": str(tmp_path / "photos")})
    assert cli.main(["demo", "--workdir", str(mine)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"--workdir {mine} is the run folder of another collection ({tmp_path / 'photos'}): the " \
        "demo would replace its catalog, cleaning and searches; give another --workdir (the default is runs/demo)" \
        in err, err
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "report.html").write_text("my own report")
    assert cli.main(["demo", "--workdir", str(tmp_path / "project")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "report.html" in err and (tmp_path / "project" / "report.html").read_text() == "my own report"
    (tmp_path / "photos" / "Felidae").mkdir(parents=True)  # images of the user's: the demo filled them with a run's
    assert cli.main(["demo", "--workdir", str(tmp_path / "photos")]) == 2  # files, the next catalog took logs/ as a
    out, err = capsys.readouterr()  # family (round 49)
    assert out == "" and f"--workdir {tmp_path / 'photos'} holds files that are not a run's ('Felidae'): the demo " \
        "writes its run folder there" in err, err
    (tmp_path / "stopped" / "logs").mkdir(parents=True)  # a demo stopped before catalog wrote anything: run again
    (tmp_path / "stopped" / ".DS_Store").write_bytes(b"")  # and a file a Mac leaves: nobody's data (round 50)
    refuse_other_run(str(tmp_path / "stopped"))
    (tmp_path / "stopped" / ".git").mkdir()  # a hidden entry of the user's is somebody's (round 51: accepted)
    with pytest.raises(SpeciesfamError, match=r"holds files that are not a run's \('.git'\)"):
        refuse_other_run(str(tmp_path / "stopped"))
    demo = tmp_path / "demo"  # the demo's own run folder: run again, as it always is
    stages.finish(str(demo), "catalog", config={"source": demo_images()})
    refuse_other_run(str(demo))


def test_a_stage_a_signal_stopped_ends_its_log_as_interrupted(tmp_path):
    """A search that SIGINT stopped returns (Tune stops and saves it) and the command exits 130: its log ended
    '(ok)' (hostile tester round 29)."""
    stages.finish(str(tmp_path), "catalog")
    interrupts.STOPPING.clear()
    try:
        with stage_log.stage_logs(str(tmp_path), "tune") as log:
            interrupts.STOPPING.set()  # what the search's signal handler does
    finally:
        interrupts.STOPPING.clear()
    assert re.search(r"tune ended after [\d.]+ s \(interrupted\): ", open(log).read())


def test_one_interrupt_delivered_twice_stops_the_search_once(monkeypatch):
    """`timeout -s INT 20 speciesfam tune ...` signals the command, then its process group: the command twice.
    The second ended the search at once, with no summary and no trial in trials.csv (hostile tester round 52).
    A second signal a moment later is the same interrupt; one later still ends the process."""
    import signal
    import time

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    stops = []

    def tune_stop(signum, frame):  # what Tune's handler does: note it, put SIGINT's handler back
        stops.append(signum)
        signal.signal(signal.SIGINT, handlers[signal.SIGINT])

    try:
        signal.signal(signal.SIGINT, tune_stop)
        signal.signal(signal.SIGUSR1, tune_stop)
        interrupts.watch_interrupts()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stops == [signal.SIGINT] and interrupts.interrupted()
        monkeypatch.setattr(interrupts, "SAME_SIGNAL_S", 0.0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        assert signal.getsignal(signal.SIGINT) is handlers[signal.SIGINT]
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        interrupts.STOPPING.clear()
        interrupts.INTERRUPTED.clear()


def test_a_resume_of_a_finished_search_keeps_the_bundle_fresh(tmp_path):
    """`--resume` of a search that had finished trained nothing (every trial kept), yet the report then said the
    bundle was built from an older tune run: export again (hostile tester round 65). A search that found more
    does make it stale."""
    import pandas as pd

    from speciesfam.config import TuneConfig
    from speciesfam.tune.search import record_search

    stages.finish(str(tmp_path), "catalog")
    cfg = TuneConfig(kind="probe", num_samples=2, name="done")
    table = pd.DataFrame({"trial_id": ["a", "b"], "status": "ok", "epochs_run": [3, 5],
                          layout.BEST_METRIC: [0.5, 0.7], "seconds": [1.0, 2.0], "best_epoch": [2, 4]})
    record_search(str(tmp_path), cfg, "done", table, planned=2)
    first = stages.load(str(tmp_path), "tune")["run_id"]
    record_search(str(tmp_path), cfg, "done", table, planned=2)  # the resume: the same trials, all kept
    assert stages.load(str(tmp_path), "tune")["run_id"] == first
    better = table.assign(**{layout.BEST_METRIC: [0.5, 0.8]})
    record_search(str(tmp_path), cfg, "done", better, planned=2)
    assert stages.load(str(tmp_path), "tune")["run_id"] != first
