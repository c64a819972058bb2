"""Resuming a search: a killed driver's finished trials kept, and the refusals of a resume that cannot
continue (never started, another split, other settings, its time budget spent)."""

import pytest
from conftest import pickle_by_value, saved_as_finished
from test_search import toy

from speciesfam.config import ConfigError, TuneConfig
from speciesfam.tune.search import make_tuner


def slow_toy(config):
    import time

    from ray import tune

    for epoch in range(1, 4):
        time.sleep(0.3)
        tune.report({"val_macro_f1": config["q"] * epoch / 3, "epoch": epoch})


DRIVER = """
import sys
import ray
from ray import tune
ray.init(address=sys.argv[1])
sys.path.insert(0, sys.argv[3])
from test_resume import slow_toy, RESUME_CFG, resume_space
from speciesfam.tune.search import make_tuner
make_tuner(tune.with_resources(slow_toy, {"CPU": 0.5}), resume_space(), RESUME_CFG, sys.argv[2], "killed").fit()
"""
pickle_by_value(__name__)  # Ray workers cannot import test modules: ship this module's functions by value
RESUME_CFG = TuneConfig(searcher="random", scheduler="fifo", num_samples=1, max_epochs=3, max_concurrent=1)


def resume_space() -> dict:
    """The killed search's space; --resume gives Tune the same one."""
    from ray import tune

    return {"q": tune.grid_search([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}


@pytest.mark.slow
def test_resume_after_the_driver_is_killed_keeps_finished_trials(tmp_path, ray_session):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from dataclasses import replace
    from pathlib import Path

    from ray import tune

    storage = tmp_path / "tune"
    address = ray_session.get_runtime_context().gcs_address
    # A second driver joining speciesfam's loopback-only local Ray must resolve its own address to 127.0.0.1 too.
    # Tune saves its state (what --resume restores) every 10 s or more; a trial that finished after the last save
    # runs again on resume, as Tune documents. Saved each second here, so that the kill lands mid-search.
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(storage), str(Path(__file__).parent)],
                              env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                                   "TUNE_GLOBAL_CHECKPOINT_S": "1"})

    def finished():
        """Trials whose last reported epoch is the last one (a trial cut off by the kill and restarted on
        resume appends a fresh run to its partial one, so line counts differ)."""
        done = []
        for result in (storage / "killed").glob("*/result.json"):
            lines = result.read_text().splitlines()
            if lines and json.loads(lines[-1])["epoch"] == 3:
                done.append((result.parent.name, lines))
        return dict(done)

    deadline = time.time() + 180
    while len(saved_as_finished(storage / "killed")) < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    saved = saved_as_finished(storage / "killed")
    before = {name: lines for name, lines in finished().items() if name in saved}
    assert 2 <= len(before) == len(saved) < 6, f"driver should be killed mid-search ({sorted(saved)} done)"
    with pytest.raises(ConfigError, match="--resume --name killed: the search space is not the one that search "
                                          "started with"):  # a space edited since: Tune's ValueError, a traceback
        make_tuner(tune.with_resources(slow_toy, {"CPU": 0.5}), {}, replace(RESUME_CFG, resume=True), str(storage),
                   "killed")
    results = make_tuner(tune.with_resources(slow_toy, {"CPU": 0.5}), resume_space(),
                         replace(RESUME_CFG, resume=True), str(storage), "killed").fit()
    assert len(results) == 6 and not results.errors
    after = finished()
    assert len(after) == 6
    for name, lines in before.items():  # finished trials were kept, not run again
        assert after[name] == lines
    assert sorted(round(r.config["q"], 1) for r in results) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert max(json.loads(after[n][-1])["val_macro_f1"] for n in after) == pytest.approx(0.6)


def test_resume_of_a_search_never_started_is_refused_naming_the_ones_there(tmp_path):
    from dataclasses import replace

    (tmp_path / "tune" / "earlier").mkdir(parents=True)
    _ran(tmp_path / "tune" / "earlier")
    (tmp_path / "tune" / "train").mkdir()  # a folder that is not a search
    (tmp_path / "tune" / "stopped").mkdir()  # stopped before any result: its --resume is refused (round 53: named)
    (tmp_path / "tune" / "stopped" / "tuner.pkl").write_bytes(b"")  # what Tune keeps to restore a search
    with pytest.raises(ConfigError, match=r"no search named 'never_ran' in .*searches there: earlier\);"):
        make_tuner(toy, {}, replace(RESUME_CFG, resume=True), str(tmp_path / "tune"), "never_ran")
    with pytest.raises(ConfigError, match="none was started there"):
        make_tuner(toy, {}, replace(RESUME_CFG, resume=True), str(tmp_path / "empty"), "never_ran")


def _ran(experiment):
    """What a search that ran leaves: Tune's state and a trial's results."""
    (experiment / "tuner.pkl").write_bytes(b"")
    (experiment / "trial_0").mkdir()
    (experiment / "trial_0" / "result.json").write_text('{"val_macro_f1": 0.5}\n')


def test_resume_of_a_search_scored_on_a_split_that_is_gone_is_refused(tmp_path):
    from speciesfam.tune.record import check_record, write_record

    tune_dir = str(tmp_path / "tune")
    write_record(tune_dir, "p1", "clean_manifest.parquet run aaaa: 40 val images")
    _ran(tmp_path / "tune" / "p1")
    check_record(tune_dir, "p1", "clean_manifest.parquet run aaaa: 40 val images", resume=True)  # same split: fine
    with pytest.raises(ConfigError, match=r"--resume --name p1: that search's trials were scored on another split "
                                          r"\(clean_manifest.parquet run aaaa.*now clean_manifest.parquet run bbbb"):
        check_record(tune_dir, "p1", "clean_manifest.parquet run bbbb: 41 val images", resume=True)
    (tmp_path / "tune" / "p1" / "speciesfam_split.json").unlink()  # searches from before the record: resumed
    check_record(tune_dir, "p1", "clean_manifest.parquet run bbbb: 41 val images", resume=True)


def test_a_search_name_is_not_reused_on_the_same_split_and_a_resume_keeps_its_settings(tmp_path):
    """Re-running a search under its name dropped its earlier trials from trials.csv; --resume with other flags
    printed them and ran with the stored ones."""
    from dataclasses import replace

    from speciesfam.tune.record import check_record, write_record

    tune_dir, split = str(tmp_path / "tune"), "clean_manifest.parquet run aaaa: 40 val images"
    cfg = TuneConfig(kind="probe", num_samples=2, max_epochs=3, extra={"lr": 0.01})
    write_record(tune_dir, "p1", split, cfg)
    check_record(tune_dir, "p1", split, False, cfg)  # refused or crashed before Tune saved a state: free
    (tmp_path / "tune" / "p1" / "tuner.pkl").write_bytes(b"")  # Tune's state, but no trial reported (Ctrl-C at once)
    check_record(tune_dir, "p1", split, False, cfg)  # free: it was stuck, and its resume crashed in Tune
    with pytest.raises(ConfigError, match="stopped before any trial reported a result, so there is nothing to "):
        check_record(tune_dir, "p1", split, True, replace(cfg, resume=True))
    _ran(tmp_path / "tune" / "p1")
    with pytest.raises(ConfigError, match="--name p1: a search of that name already ran .* Give --resume to continue"):
        check_record(tune_dir, "p1", split, False, cfg)
    check_record(tune_dir, "p1", split, True, replace(cfg, resume=True, max_concurrent=None))
    with pytest.raises(ConfigError, match=r"these differ; resume it with --searcher optuna \(now random\); "
                                          r"--num-samples 2 \(now 4\); --extra \{\"lr\": 0.01\} \(now "
                                          r"\{\"lr\": 0.1\}\), or start a new search with another --name$"):
        check_record(tune_dir, "p1", split, True, replace(cfg, resume=True, num_samples=4, searcher="random",
                                                          extra={"lr": 0.1}))
    # named as the flags a user types, --smoke-test first; W&B is restored with the search, so it is a change too
    # (a resume with --wandb offline logged nothing, unsaid: hostile tester round 30)
    with pytest.raises(ConfigError, match=r"resume it with no --smoke-test \(now --smoke-test\); `tune probe` "
                                          r"\(now scratch\); --image-cache \(now --no-image-cache\); --wandb "
                                          r"disabled \(now offline\), "):
        check_record(tune_dir, "p1", split, True, replace(cfg, resume=True, wandb="offline", smoke_test=True,
                                                          image_cache=False, kind="scratch", extra={"lr": 0.01}))
    # not changes: the default grace period given by its value, a resume without the --init-from it started with
    check_record(tune_dir, "p1", split, True, replace(cfg, resume=True, grace_period=3))
    scratch = replace(cfg, kind="scratch")
    write_record(tune_dir, "s2", split, replace(scratch, init_from="probe"))
    _ran(tmp_path / "tune" / "s2")
    check_record(tune_dir, "s2", split, True, replace(scratch, resume=True))
    with pytest.raises(ConfigError, match=r"resume it with --init-from probe \(now other\)"):
        check_record(tune_dir, "s2", split, True, replace(scratch, resume=True, init_from="other"))
    # ... and its records keep it: the tune record had init_from None, so the report's reproduce command lost
    # --init-from and listed the search before its source (hostile tester round 31)
    from speciesfam.tune.record import as_started

    assert as_started(tune_dir, "s2", replace(scratch, resume=True)).init_from == "probe"
    assert as_started(tune_dir, "s2", scratch).init_from is None  # a new search: as given
    # settings the search does not read may differ (the CLI names them as ignored)
    check_record(tune_dir, "p1", split, True, replace(cfg, resume=True, image_size=96, weights=None,
                                                      scheduler="asha"))
    check_record(tune_dir, "p1", "clean_manifest.parquet run bbbb: 41 val images", False, cfg)  # stale: free
    with pytest.raises(ConfigError, match="no search named 'p2'"):  # refused before the split is even looked at
        check_record(tune_dir, "p2", split, True, cfg)


def test_a_search_its_time_budget_ended_is_not_resumed_into_an_empty_run(tmp_path):
    """Observed (hostile tester): --resume of a search its time budget ended trained nothing, exited 0 and
    recorded that the budget had not ended it (Tune's budget spans the search's runs: none was left)."""
    from dataclasses import replace

    from speciesfam.tune.record import add_seconds, check_record, used_seconds, write_record

    tune_dir, split = str(tmp_path / "tune"), "clean_manifest.parquet run aaaa: 40 val images"
    cfg = TuneConfig(kind="probe", num_samples=300, max_epochs=20, time_budget_s=15)
    write_record(tune_dir, "p1", split, cfg)
    _ran(tmp_path / "tune" / "p1")
    add_seconds(tune_dir, "p1", 9.5)  # interrupted with 5.5 s left: resumed
    check_record(tune_dir, "p1", split, True, replace(cfg, resume=True))
    add_seconds(tune_dir, "p1", 5.6)  # the resumed run used the rest
    assert used_seconds(tune_dir, "p1") == pytest.approx(15.1)
    with pytest.raises(ConfigError, match=r"--resume --name p1: its time budget \(15 s\) ended that search.* "
                                          "Start a new search with another --name"):
        check_record(tune_dir, "p1", split, True, replace(cfg, resume=True))
    with pytest.raises(ConfigError, match="Give another --name to keep both"):  # not 'Give --resume'
        check_record(tune_dir, "p1", split, False, cfg)
    write_record(tune_dir, "p2", split, replace(cfg, time_budget_s=None))
    _ran(tmp_path / "tune" / "p2")
    add_seconds(tune_dir, "p2", 100.0)
    check_record(tune_dir, "p2", split, True, replace(cfg, resume=True, time_budget_s=None))  # no budget: resumed


def test_a_search_over_a_damaged_tune_record_says_it_rewrote_it(tmp_path, ray_session, capsys):
    """A damaged RUN/stages/tune.json: the search that rewrote it told the user to run tune again to rewrite it."""
    import json

    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.tune.search import run_search

    make_embedding_run(str(tmp_path), rows=120, dim=8, families=3)
    (tmp_path / "stages").mkdir(exist_ok=True)
    (tmp_path / "stages" / "tune.json").write_text("{oops")
    run_search(str(tmp_path), TuneConfig(kind="probe", num_samples=1, max_epochs=1, name="again"))
    out = capsys.readouterr().out
    assert f"tune: warning: {tmp_path / 'stages' / 'tune.json'} was damaged (not JSON: " in out and \
        "; rewritten, it now records this search only" in out and "again to rewrite it" not in out, out
    assert list(json.loads((tmp_path / "stages" / "tune.json").read_text())["searches"]) == ["again"]


def test_a_trials_results_before_a_resume_are_kept_when_tune_writes_its_result_json_anew(tmp_path):
    """Measured with a scratch search interrupted and resumed (hostile tester round 33, checked again here): Tune
    wrote the resumed CNN trial's result.json anew (epochs 8-23, training_iteration from 1), so epochs 1-6 and
    their best were gone from trials.csv and the report; an interrupt soon after the resume left it empty (the
    trial read 'not_trained', its checkpoints orphaned, the search 'nothing to continue')."""
    import json
    from types import SimpleNamespace

    import pandas as pd

    from speciesfam.report_search import trial_histories
    from speciesfam.tune.history import keep_before_resume, merged_lines
    from speciesfam.tune.record import reported
    from speciesfam.tune.tracking import _best_epoch

    experiment = tmp_path / "tune" / "s"
    trial = experiment / "_trial_aaaa_1"
    trial.mkdir(parents=True)
    (experiment / "_trial_bbbb_2").mkdir()  # a trial that never reported: nothing kept for it

    def lines(epochs, f1):
        return "".join(json.dumps({"epoch": e, "training_iteration": i, "val_macro_f1": f, "time_total_s": e,
                                   "timestamp": 100 + e}) + "\n" for i, (e, f) in enumerate(zip(epochs, f1), 1))

    (trial / "result.json").write_text(lines([1, 2, 3], [0.2, 0.9, 0.5]))
    keep_before_resume(str(experiment))
    (trial / "result.json").write_text("")  # the resume, interrupted before its first result
    assert reported(str(experiment))  # it said: nothing to continue, run again without --resume
    assert [json.loads(x)["epoch"] for x in merged_lines(str(trial))] == [1, 2, 3]
    keep_before_resume(str(experiment))  # resumed again: nothing lost, nothing doubled
    (trial / "result.json").write_text(lines([4, 5], [0.6, 0.7]))
    assert [json.loads(x)["epoch"] for x in merged_lines(str(trial))] == [1, 2, 3, 4, 5]
    assert not (experiment / "_trial_bbbb_2" / "speciesfam_history.jsonl").exists()
    result = SimpleNamespace(path=str(trial), filesystem=None, metrics_dataframe=pd.read_json(
        trial / "result.json", lines=True), best_checkpoints=[])
    best = _best_epoch(result)  # what trials.csv is made of
    assert best["val_macro_f1"] == 0.9 and best["epoch"] == 2 and best["epochs_run"] == 5
    histories, _ = trial_histories(pd.DataFrame({"trial_id": ["aaaa"], "trial_path": [str(trial)]}))
    assert list(histories["aaaa"]["epoch"]) == [1, 2, 3, 4, 5]  # the report's timeline


def test_a_resumed_trial_that_goes_on_from_its_best_epoch_counts_the_furthest_epoch_it_reached(tmp_path):
    """A probe trial goes on from its checkpoint, its best epoch: epochs 1-4 (best 2), interrupted, then resumed
    from epoch 2 and cut at epoch 3. trials.csv said 3 epochs run (its last report), fewer than before the resume."""
    import json
    from types import SimpleNamespace

    import pandas as pd

    from speciesfam.tune.history import keep_before_resume
    from speciesfam.tune.tracking import _best_epoch

    trial = tmp_path / "tune" / "s" / "_trial_aaaa_1"
    trial.mkdir(parents=True)

    def lines(epochs, f1, start):
        return "".join(json.dumps({"epoch": e, "training_iteration": i, "val_macro_f1": f, "time_total_s": i,
                                   "timestamp": start + i}) + "\n" for i, (e, f) in enumerate(zip(epochs, f1), 1))

    (trial / "result.json").write_text(lines([1, 2, 3, 4], [0.2, 0.9, 0.5, 0.4], 100))
    keep_before_resume(str(trial.parent))
    (trial / "result.json").write_text(lines([3], [0.6], 200))  # on from epoch 2's checkpoint
    from speciesfam.tune.history import merged_lines

    frame = pd.DataFrame([json.loads(x) for x in merged_lines(str(trial))])
    best = _best_epoch(SimpleNamespace(path=str(trial), filesystem=None, metrics_dataframe=frame, best_checkpoints=[]))
    assert (best["val_macro_f1"], best["epoch"], best["epochs_run"]) == (0.9, 2, 4)


def test_a_plain_resume_takes_the_settings_the_search_started_with(tmp_path):
    """`tune probe --workdir RUN --resume` was refused ('resume it with --num-samples 3 (now 8); --max-epochs 3
    (now 10)') until every flag was typed again (hostile tester round 46): a flag left out takes the value the
    search started with; one given with another value is still refused."""
    from speciesfam import cli
    from speciesfam.tune.record import write_record

    tune_dir = str(tmp_path / "run" / "tune")
    started = TuneConfig(kind="probe", num_samples=3, max_epochs=4, searcher="random", extra={"lr": 0.01},
                         smoke_test=True, name="p1")
    write_record(tune_dir, "p1", "split", started)
    cfg = cli.tune_config(cli.parse(["tune", "probe", "--workdir", str(tmp_path / "run"), "--name", "p1",
                                     "--resume"]))
    assert (cfg.num_samples, cfg.max_epochs, cfg.searcher, cfg.extra, cfg.smoke_test, cfg.resume) == \
        (3, 4, "random", {"lr": 0.01}, True, True)
    given = cli.tune_config(cli.parse(["tune", "probe", "--workdir", str(tmp_path / "run"), "--name", "p1",
                                       "--resume", "--num-samples", "5"]))
    assert given.num_samples == 5 and given.max_epochs == 4  # given: as typed (check_record refuses it)
    fresh = cli.tune_config(cli.parse(["tune", "probe", "--workdir", str(tmp_path / "run"), "--name", "p2"]))
    assert fresh.num_samples == TuneConfig().num_samples  # not a resume: the defaults


def test_a_plain_resume_gives_trials_the_resources_the_search_started_with(tmp_path, capsys):
    """A CNN search started with --workers-per-trial 1 --cpus-per-worker 0.5, resumed with a bare --resume, was
    refused: 'one trial needs 2.5 CPUs (... 2 workers x cpus_per_worker 1.0)' (hostile tester round 52). Left
    out, they are the record's; given otherwise (another cluster), said."""
    from speciesfam import cli
    from speciesfam.tune.record import write_record

    write_record(str(tmp_path / "run" / "tune"), "c1", "split",
                 TuneConfig(kind="scratch", workers_per_trial=1, cpus_per_worker=0.5, name="c1"))
    argv = ["tune", "scratch", "--workdir", str(tmp_path / "run"), "--name", "c1", "--resume"]
    cfg = cli.tune_config(cli.parse(argv))
    assert (cfg.workers_per_trial, cfg.cpus_per_worker, cfg.cpus_per_trial) == (1, 0.5, None)
    assert capsys.readouterr().out == ""
    cfg = cli.tune_config(cli.parse(argv + ["--cpus-per-worker", "0.25"]))
    assert (cfg.workers_per_trial, cfg.cpus_per_worker) == (1, 0.25)
    assert "tune: resuming 'c1' with --cpus-per-worker 0.25 (it started with 0.5): its new trials get these, the " \
        "trials it restores keep what they started with" in capsys.readouterr().out


def test_an_identical_clean_keeps_earlier_searches_and_an_older_versions_split_id_is_the_same_split(
        probe_run, tmp_path, capsys):
    """The split id held the clean stage's run id: a clean run again with the same outcome dropped every earlier
    trial from trials.csv ("scored on another val split") and refused their searches' --resume."""
    import json
    import shutil

    import pandas as pd

    from speciesfam import layout, stages
    from speciesfam.config import CleanConfig
    from speciesfam.data.clean import run_clean
    from speciesfam.tune.record import SPLIT_RECORD
    from speciesfam.tune.search import run_search
    from speciesfam.tune.tracking import older_split_id, val_split_id

    run = shutil.copytree(probe_run, tmp_path / "run")
    shutil.rmtree(run / "bundle", ignore_errors=True)
    split, cleaned = val_split_id(str(run)), stages.load(str(run), "clean")["run_id"]
    run_clean(str(run), CleanConfig.smoke(min_per_family=3))  # as the run's own clean ran
    assert val_split_id(str(run)) == split
    # the same outcome keeps clean's run id: the search is not stale (export refused it, naming a search whose
    # name was then refused: round 71)
    assert stages.load(str(run), "clean")["run_id"] == cleaned and stages.check_fresh(str(run), "tune")
    older = older_split_id(str(run), split)  # what the last version wrote for this split: this clean's run id
    assert older != split and older.startswith("clean_manifest.parquet run ")
    trials = pd.read_csv(run / layout.TRIALS)
    trials.assign(val_split=older).to_csv(run / layout.TRIALS, index=False)
    record = run / "tune" / "probe" / SPLIT_RECORD
    record.write_text(json.dumps({**json.loads(record.read_text()), "val_split": older}))
    capsys.readouterr()
    run_search(str(run), TuneConfig(kind="probe", name="probe", num_samples=2, max_epochs=3, smoke_test=True,
                                    cpus_per_trial=1, max_concurrent=2, resume=True))  # not another split
    assert json.loads(record.read_text())["val_split"] == split  # in the current form (round 71)
    run_search(str(run), TuneConfig(kind="probe", name="again", num_samples=1, max_epochs=1, smoke_test=True,
                                    cpus_per_trial=1))
    after = pd.read_csv(run / layout.TRIALS)
    assert set(after["search"]) == {"probe", "again"} and set(after["val_split"]) == {split}
    assert "another val split" not in "".join(capsys.readouterr())
    # a val image's family changed is another split
    manifest = pd.read_parquet(run / layout.CLEAN_MANIFEST)
    i = manifest.index[(manifest["split"] == "val") & (manifest["status"] == layout.OK)][0]
    manifest.loc[i, "label"] = next(x for x in manifest["label"] if x != manifest.loc[i, "label"])
    manifest.to_parquet(run / layout.CLEAN_MANIFEST)
    assert val_split_id(str(run)) != split
