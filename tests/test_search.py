"""Search wiring with fast toy trainables: searchers, ASHA, failed and NaN trials, the trial table
(resuming a search: test_resume.py)."""

import re

import pandas as pd
import pytest
from conftest import pickle_by_value

from speciesfam.config import ConfigError, TuneConfig
from speciesfam.tune.checks import trial_slots
from speciesfam.tune.search import make_tuner, start_line
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
                     max_concurrent=2, seed=0)
    # a crashing and a NaN trial first, whatever the searcher samples after them; then two strong trials and a weak
    # one, which starts (2 at a time) only once a strong one has finished, so ASHA always has a result to stop it
    # against (sampled trials alone were all 8 epochs in one CI run: each reached its rungs ahead of better ones)
    points = [{"quality": 0.5, "kind": "raise"}, {"quality": 0.5, "kind": "nan"}, {"quality": 0.9, "kind": "ok"},
              {"quality": 0.85, "kind": "ok"}, {"quality": 0.1, "kind": "ok"}]
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
    if scheduler == "asha":
        assert good["epochs_run"].min() < 8  # ASHA stopped at least one weak trial early
    if scheduler == "fifo":
        assert (good["epochs_run"] == 8).all()
    assert table["best_val_macro_f1"].dropna().is_monotonic_decreasing
    on_disk = pd.read_csv(tmp_path / "trials.csv", dtype={"trial_id": str})  # ids like 744907e1
    assert list(on_disk["trial_id"]) == list(table["trial_id"])
    assert "| trial_id | search | kind | model |" in (tmp_path / "trials.md").read_text()
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
    # a plain `tune scratch` on a 2-core laptop was refused (0.5 + 2 x 1 CPU; round 53): workers get a share
    from speciesfam.tune.checks import fit_worker_cpus

    fitted = fit_worker_cpus(TuneConfig(kind="scratch"))
    assert fitted.cpus_per_worker == 0.75 and trial_slots(fitted) == 1  # 0.5 + 2 x 0.75 = the session's 2 CPUs
    assert fit_worker_cpus(TuneConfig(kind="scratch", workers_per_trial=1)).cpus_per_worker == 1.0  # 1 fits
    assert fit_worker_cpus(TuneConfig(kind="scratch", cpus_per_worker=2)).cpus_per_worker == 2  # given: as typed
    with pytest.raises(ConfigError, match="one trial needs"):  # too small even for a quarter each: refused
        trial_slots(fit_worker_cpus(TuneConfig(kind="scratch", workers_per_trial=8)))


def test_a_search_starts_with_a_line_saying_what_runs_and_on_what():
    """The first line a search prints (before, a CNN search said nothing until its first trial ended)."""
    assert start_line(TuneConfig(kind="probe", num_samples=100, max_epochs=30), "probe", {}, 2) == (
        "tune: search 'probe': 100 probe trials x up to 30 epochs, optuna + asha (grace 3 epochs), 2 at a time "
        "(1 CPU each)")
    cfg = TuneConfig(kind="scratch", searcher="random", scheduler="fifo", num_samples=2, max_epochs=5,
                     gpus_per_worker=1, time_budget_s=600, cpus_per_worker=1)  # as run_search resolves it
    grid = {"lr": {"grid_search": [0.1, 0.01, 0.001]}, "batch_size": 32}
    assert start_line(cfg, "cnn", grid, 1) == (
        "tune: search 'cnn': 6 scratch trials x up to 5 epochs, random + fifo, 1 at a time (2 Ray Train workers x "
        "1 CPU + 1 GPU each), time budget 600 s")
    # --max-concurrent above what fits: the line said '6 at a time' on 2 CPUs (hostile tester)
    assert ", 2 at a time (1 CPU each)" in start_line(TuneConfig(kind="probe", num_samples=6, max_concurrent=8),
                                                      "probe", {}, 2)
    # HyperBand's first bracket's grace, as ASHA's (it said none: round 31); one worker is 'worker'
    assert "optuna + hyperband (grace 3 epochs, the first bracket), 1 at a time (1 Ray Train worker x 1 CPU each)" \
        in start_line(TuneConfig(kind="scratch", scheduler="hyperband", workers_per_trial=1, cpus_per_worker=1), "cnn",
                      {}, 1)


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


def test_a_split_on_which_no_trial_could_score_is_refused_naming_the_families(capsys):
    """Only one family kept val images, and it had none in train: every trial scored 0, the 'best' one was
    picked at random, and tune exited 0 (hostile tester)."""
    from speciesfam.errors import SpeciesfamError
    from speciesfam.tune.checks import check_learnable

    rows = [(f, s) for f in ("A", "B", "C") for s in ("train", "train", "val")]
    m = pd.DataFrame({"label": [f for f, _ in rows], "split": [s for _, s in rows], "status": "ok"})
    assert check_learnable(m, "m") == ["A", "B", "C"]
    # 1 val image of 1 family of 3: its score said 1.000, on nothing else (hostile tester round 33)
    thin = m[(m["split"] == "train") | (m["label"] == "A")]
    assert check_learnable(thin, "m") == ["A", "B", "C"]
    assert capsys.readouterr().out == ("tune: warning: 2 families have no usable val image ('B', 'C'): val macro-F1 "
                                       "scores the other 1 (and any of these a model predicts, at F1 0) on 1 image; see clean.md, or re-run catalog (and "
                                       "clean) to split its images anew, or catalog more images per family\n")
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
        assert config["optimizer"] == "adam"  # a fixed value reaches the trial
        tune.report({"val_macro_f1": 1 - (config["x"] - 0.3) ** 2, "epoch": epoch})


@pytest.mark.slow  # an optional searcher (~12 s); the default run keeps the default one
def test_bayesopt_searches_a_continuous_space(tmp_path, ray_session):
    from ray import tune

    cfg = TuneConfig(searcher="bayesopt", scheduler="fifo", num_samples=6, max_epochs=3, max_concurrent=2)
    results = make_tuner(tune.with_resources(parabola, {"CPU": 0.5}), {"x": tune.uniform(0.0, 1.0), "optimizer": "adam"}, cfg,
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
