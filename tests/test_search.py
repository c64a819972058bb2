"""Search wiring with fast toy trainables: searchers, ASHA, failed and NaN trials, the trial table."""

import re

import pandas as pd
import pytest
from conftest import pickle_by_value, saved_as_finished

from speciesfam.config import ConfigError, TuneConfig
from speciesfam.tune.search import make_tuner, start_line, trial_slots
from speciesfam.tune.tracking import write_trial_table


def toy(config):
    """Reports val_macro_f1 rising towards config['quality']; 'raise' crashes, 'nan' reports NaN."""
    from ray import tune

    for epoch in range(1, 9):
        if config["kind"] == "raise":  # before its first report, so no scheduler can stop it first
            raise RuntimeError("toy trial crashed")
        f1 = float("nan") if config["kind"] == "nan" else config["quality"] * (1 - 0.5 ** epoch)
        tune.report({"val_macro_f1": f1, "epoch": epoch})



def space():
    from ray import tune

    return {"quality": tune.uniform(0.1, 0.9), "kind": tune.choice(["ok", "ok", "ok", "raise", "nan"])}


# reuse_actors as the real searches use it: probe trials reuse processes, CNN trials do not
# The default run wires the default pair (TPE + ASHA, reused processes); the other two (~10-20 s each: FIFO's
# 10 new trial processes) run in the slow set.
@pytest.mark.parametrize("searcher,scheduler,reuse", [
    ("optuna", "asha", True), pytest.param("random", "fifo", False, marks=pytest.mark.slow),
    pytest.param("optuna", "hyperband", True, marks=pytest.mark.slow)])
def test_searcher_scheduler_wiring_survives_failed_and_nan_trials(searcher, scheduler, reuse, tmp_path,
                                                                   ray_session):
    from ray import tune

    cfg = TuneConfig(searcher=searcher, scheduler=scheduler, num_samples=10, max_epochs=8, max_failures=0,
                     max_concurrent=2)
    # a crashing and a NaN trial first, whatever the searcher samples after them
    points = [{"quality": 0.5, "kind": "raise"}, {"quality": 0.5, "kind": "nan"}]
    results = make_tuner(tune.with_resources(toy, {"CPU": 0.5}), space(), cfg, str(tmp_path / "tune"), "toy",
                         points=points, reuse_actors=reuse).fit()
    table = write_trial_table(results, str(tmp_path))
    assert len(table) == 10
    kinds = table["config"].str.extract(r'"kind": "(\w+)"')[0]
    assert (kinds == "raise").sum() >= 1 and (kinds == "nan").sum() >= 1
    assert (table.loc[kinds == "raise", "status"] == "error").all()
    # the trial's own exception, not Ray's "ray::ImplicitFunc.train() (pid=...)" wrapper
    assert (table.loc[kinds == "raise", "error"] == "RuntimeError: toy trial crashed").all()
    assert (table.loc[kinds != "raise", "status"] == "ok").all()
    # a trial that failed before reporting took an unknown time, not 0 s (the report shows "—")
    assert table.loc[kinds == "raise", "seconds"].isna().all()
    assert (table.loc[kinds != "raise", "seconds"] > 0).all()
    good = table[kinds == "ok"]
    assert good["best_val_macro_f1"].notna().all()
    if scheduler == "asha" and len(good) >= 3:
        assert good["epochs_run"].min() < 8  # ASHA stopped at least one weak trial early
    if scheduler == "fifo":
        assert (good["epochs_run"] == 8).all()
    assert table["best_val_macro_f1"].dropna().is_monotonic_decreasing
    on_disk = pd.read_csv(tmp_path / "trials.csv", dtype={"trial_id": str})  # ids like 744907e1
    assert list(on_disk["trial_id"]) == list(table["trial_id"])
    assert "| trial_id | kind | model |" in (tmp_path / "trials.md").read_text()
    assert (tmp_path / "search_progress.png").stat().st_size > 1000
    # Tune's CSV/JSON result logs (the table's source) are written
    logged = [d for d in (tmp_path / "tune" / "toy").iterdir() if (d / "progress.csv").exists()
              and (d / "result.json").exists()]
    assert len(logged) == (table["epochs_run"] > 0).sum()


def test_resources_that_can_never_fit_fail_before_training(ray_session):
    with pytest.raises(ConfigError, match="needs 2 GPUs but the cluster has 0"):
        trial_slots(TuneConfig(gpus_per_worker=1))
    with pytest.raises(ConfigError, match="one trial needs 8.5 CPUs"):
        trial_slots(TuneConfig(cpus_per_worker=4))
    with pytest.raises(ConfigError, match=r"one probe trial needs 8 CPUs \(--cpus-per-trial\) .* lower --cpus-per-t"):
        trial_slots(TuneConfig(kind="probe", cpus_per_trial=8))  # it named --cpus-per-worker, which probes lack


def test_trials_run_as_many_at_once_as_the_cluster_holds_by_default(ray_session):
    """The default concurrency fills the session's 2 CPUs (it was one trial at a time: a probe search used half
    the machine), and never starts more trial processes than their workers leave room for."""
    assert trial_slots(TuneConfig(kind="probe")) == 2  # 1 CPU each: they train in the trial process
    assert trial_slots(TuneConfig(kind="probe", cpus_per_trial=0.5)) == 4
    assert trial_slots(TuneConfig(cpus_per_worker=0.5)) == 1  # 0.5 + 2 x 0.5 = 1.5 CPUs per CNN trial
    assert trial_slots(TuneConfig(cpus_per_worker=0.25, cpus_per_trial=0.5, workers_per_trial=1)) == 2
    assert TuneConfig(kind="probe").trial_cpus == 1.0 and TuneConfig(kind="scratch").trial_cpus == 0.5


def test_a_search_starts_with_a_line_saying_what_runs_and_on_what():
    """The first line a search prints (before, a CNN search said nothing until its first trial ended)."""
    assert start_line(TuneConfig(kind="probe", num_samples=100, max_epochs=30), "probe", {}, 2) == (
        "tune: search 'probe': 100 probe trials x up to 30 epochs, optuna + asha (grace 3 epochs), 2 at a time "
        "(1 CPU each)")
    cfg = TuneConfig(kind="scratch", searcher="random", scheduler="fifo", num_samples=2, max_epochs=5,
                     gpus_per_worker=1, time_budget_s=600)
    grid = {"lr": {"grid_search": [0.1, 0.01, 0.001]}, "batch_size": 32}
    assert start_line(cfg, "cnn", grid, 1) == (
        "tune: search 'cnn': 6 scratch trials x up to 5 epochs, random + fifo, 1 at a time (2 Ray Train workers x "
        "1 CPU + 1 GPU each), time budget 600 s")
    # --max-concurrent above what fits: the line said '6 at a time' on 2 CPUs (hostile tester)
    assert ", 2 at a time (1 CPU each)" in start_line(TuneConfig(kind="probe", num_samples=6, max_concurrent=8),
                                                      "probe", {}, 2)
    # HyperBand's first bracket's grace, as ASHA's (it said none: round 31); one worker is 'worker'
    assert "optuna + hyperband (grace 3 epochs, the first bracket), 1 at a time (1 Ray Train worker x 1 CPU each)" \
        in start_line(TuneConfig(kind="scratch", scheduler="hyperband", workers_per_trial=1), "cnn", {}, 1)


@pytest.mark.slow  # ~15 s: W&B's service process for every trial; optional, as --wandb is
def test_wandb_offline_writes_runs_and_never_the_key(tmp_path, ray_session, monkeypatch):
    from ray import tune

    secret = "speciesfam-test-key-0123456789abcdef0123"
    monkeypatch.delenv("WANDB_MODE", raising=False)  # --wandb offline alone must be enough
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    cfg = TuneConfig(searcher="random", scheduler="fifo", num_samples=2, max_epochs=8, wandb="offline",
                     wandb_project="speciesfam-test")
    space = {"quality": tune.uniform(0.1, 0.9), "kind": "ok"}
    make_tuner(tune.with_resources(toy, {"CPU": 0.5}), space, cfg, str(tmp_path / "tune"), "wb").fit()
    runs = list((tmp_path / "wb").rglob("offline-run-*"))
    assert len(runs) == 2, runs
    assert all(any(p.suffix == ".wandb" for p in r.iterdir()) for r in runs)
    import glob

    logs = [p for p in glob.glob(ray_session._private.worker._global_node.get_session_dir_path() + "/**",
                                 recursive=True)]
    for path in [*map(str, tmp_path.rglob("*")), *logs]:
        if __import__("os").path.isfile(path):
            assert secret.encode() not in open(path, "rb").read(), path


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
from test_search import slow_toy, RESUME_CFG, resume_space
from speciesfam.tune.search import make_tuner
make_tuner(tune.with_resources(slow_toy, {"CPU": 0.5}), resume_space(), RESUME_CFG, sys.argv[2], "killed").fit()
"""
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
    (tmp_path / "tune" / "earlier" / "tuner.pkl").write_bytes(b"")  # what Tune keeps to restore a search
    (tmp_path / "tune" / "train").mkdir()  # a folder that is not a search
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


def test_a_search_with_no_val_images_is_refused_before_any_trial(tmp_path):
    from speciesfam import layout
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.errors import SpeciesfamError
    from speciesfam.tune.search import run_search

    make_embedding_run(str(tmp_path), rows=300, dim=8, families=4)
    cleaned = pd.read_parquet(tmp_path / layout.CLEAN_MANIFEST)
    cleaned.loc[cleaned["split"] == "val", "split"] = "train"  # e.g. near-duplicate groups moved to train
    cleaned.to_parquet(tmp_path / layout.CLEAN_MANIFEST)
    with pytest.raises(SpeciesfamError, match="no usable 'val' images, so no trial could be scored"):
        run_search(str(tmp_path), TuneConfig(kind="probe", num_samples=1, max_epochs=1))
    assert not (tmp_path / "tune").exists()


def test_a_split_on_which_no_trial_could_score_is_refused_naming_the_families():
    """Only one family kept val images, and it had none in train: every trial scored 0, the 'best' one was
    picked at random, and tune exited 0 (hostile tester)."""
    from speciesfam.errors import SpeciesfamError
    from speciesfam.tune.checks import check_learnable

    rows = [(f, s) for f in ("A", "B", "C") for s in ("train", "train", "val")]
    m = pd.DataFrame({"label": [f for f, _ in rows], "split": [s for _, s in rows], "status": "ok"})
    assert check_learnable(m, "m") == ["A", "B", "C"]
    with pytest.raises(SpeciesfamError, match=r"^m: every val image is of a family with no usable train image "
                                              r"\('C'\), so no trial could score above 0 on val; see clean.md"):
        check_learnable(m[(m["split"] == "train") | (m["label"] == "C")].assign(
            split=lambda d: d["split"].where(d["label"] != "C", "val")), "m")
    with pytest.raises(SpeciesfamError, match=r"^m: 1 family has usable train images, and classification needs at "
                                              r"least 2 \(none in train: 'B', 'C'\)"):
        check_learnable(m.assign(split=m["split"].where(m["label"] == "A", "val")), "m")
    removed = m.assign(status=m["status"].where(m["label"] == "A", "removed"))
    with pytest.raises(SpeciesfamError, match=r"^m has 1 usable family; classification needs at least 2"):
        check_learnable(removed, "m")


def test_a_users_own_space_module(tmp_path, monkeypatch):
    from ray import tune

    from speciesfam.tune.space import load_space

    (tmp_path / "my_space.py").write_text("from ray import tune\n\ndef get_search_space(smoke):\n"
                                          "    return {'lr': 0.1 if smoke else 0.2, 'dropout': tune.uniform(0, 0.5)}\n")
    (tmp_path / "not_a_space.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_space(TuneConfig(space="my_space", kind="probe", smoke_test=True))["lr"] == 0.1
    space = load_space(TuneConfig(space="my_space", kind="transfer", extra={"model": "vgg16"}))
    assert space["model"] == "vgg16" and space["lr"] == 0.2 and isinstance(space["dropout"], tune.search.sample.Float)
    with pytest.raises(ConfigError, match="has no get_search_space"):
        load_space(TuneConfig(space="not_a_space"))
    with pytest.raises(ConfigError, match="cannot import it"):
        load_space(TuneConfig(space="no_such_module_here"))
    assert set(load_space(TuneConfig(kind="transfer"))) >= {"model", "lr", "unfreeze_layers", "label_smoothing"}


def parabola(config):
    from ray import tune

    for epoch in range(1, 4):
        tune.report({"val_macro_f1": 1 - (config["x"] - 0.3) ** 2, "epoch": epoch})


@pytest.mark.slow  # an optional searcher (~12 s); the default run keeps the default one
def test_bayesopt_searches_a_continuous_space(tmp_path, ray_session):
    from ray import tune

    cfg = TuneConfig(searcher="bayesopt", scheduler="fifo", num_samples=6, max_epochs=3, max_concurrent=2)
    results = make_tuner(tune.with_resources(parabola, {"CPU": 0.5}), {"x": tune.uniform(0.0, 1.0)}, cfg,
                         str(tmp_path), "bo").fit()
    assert len(results) == 6 and not results.errors
    assert len({round(r.config["x"], 6) for r in results}) == 6  # it proposed distinct points


def test_unreachable_data_fails_before_any_trial(tmp_path, ray_session):
    from speciesfam.tune.search import run_search

    manifest = pd.DataFrame({"path": [f"/nowhere/{n}.jpg" for n in "abcd"], "label": ["A", "B", "A", "B"],
                             "status": "ok", "split": ["train", "train", "val", "val"]})
    manifest.to_parquet(tmp_path / "clean_manifest.parquet")
    from speciesfam.errors import SpeciesfamError

    with pytest.raises(SpeciesfamError,
                       match=r"cannot be read from here \(none of the 4 checked\), e.g. '/nowhere/a.jpg'"):
        run_search(str(tmp_path), TuneConfig(cpus_per_worker=0.5, smoke_test=True))
    assert not (tmp_path / "tune").exists()
    # one image deleted since catalog, the first: that read as "is the data path mounted?"
    for n in "bcd":
        (tmp_path / f"{n}.jpg").write_bytes(b"x")
    manifest.assign(path=["/nowhere/a.jpg", *(str(tmp_path / f"{n}.jpg") for n in "bcd")]).to_parquet(
        tmp_path / "clean_manifest.parquet")
    with pytest.raises(SpeciesfamError, match=r"lists images deleted since catalog \(1 of the 4 checked\), e.g. "
                                              r"'/nowhere/a.jpg'; re-run `speciesfam catalog SOURCE --workdir "
                                              + re.escape(f"{tmp_path}`, then `speciesfam clean --workdir {tmp_path}`, "
                                                          "then tune")):
        run_search(str(tmp_path), TuneConfig(cpus_per_worker=0.5, smoke_test=True))
    assert not (tmp_path / "tune").exists()
    # one deleted (the 4th) that 5 images spread over the 9 rows missed: the image cache failed the search ~30 s
    # in. A test image gone (the 6th) is no trial's concern (evaluate says so)
    paths = [str(tmp_path / f"{i}.jpg") for i in range(9)]
    for p in paths[:3] + paths[4:5] + paths[6:]:
        with open(p, "wb") as f:
            f.write(b"x")
    pd.DataFrame({"path": paths, "label": ["A", "A", "B", "B", "A", "A", "A", "B", "B"], "status": "ok",
                  "split": ["train", "val", "train", "val", "train", "test", "val", "train", "val"]}).to_parquet(
        tmp_path / "clean_manifest.parquet")
    with pytest.raises(SpeciesfamError, match=r"lists images deleted since catalog \(1 of the 8 checked\), e.g. "
                                              f"'{paths[3]}'"):
        run_search(str(tmp_path), TuneConfig(cpus_per_worker=0.5, smoke_test=True))
    assert not (tmp_path / "tune").exists()


pickle_by_value(__name__)  # Ray workers cannot import test modules: ship this module's functions by value


def echo(config):
    from ray import tune

    tune.report({"val_macro_f1": config["quality"], "epoch": 1})


@pytest.mark.parametrize("searcher", ["random", pytest.param("grid", marks=pytest.mark.slow)])
def test_random_draws_follow_the_seed(searcher, tmp_path, ray_session):
    """`--searcher random --seed 7` drew other configurations on each run (Tune's generator was not seeded)."""
    from ray import tune

    def drawn(seed: int, name: str) -> list[float]:
        cfg = TuneConfig(searcher=searcher, scheduler="fifo", num_samples=3, max_epochs=1, seed=seed)
        results = make_tuner(tune.with_resources(echo, {"CPU": 0.5}), {"quality": tune.uniform(0, 1)}, cfg,
                             str(tmp_path / "tune"), name, reuse_actors=True).fit()
        return sorted(r.config["quality"] for r in results)

    first = drawn(7, "a")
    assert drawn(7, "b") == first and drawn(8, "c") != first
