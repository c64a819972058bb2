"""The report's "How to reproduce": each stage's command as it ran (every search on the run, the export as
given), shell-quoted, parsing back through the CLI to the same settings."""

from __future__ import annotations

import sys

import pytest


def test_the_reproduce_command_keeps_weights_none_and_leaves_out_flags_the_kind_does_not_read():
    """stages/tune.json dropped None values, so `--weights none` (what --smoke-test sets) was missing from the
    command and a re-run would fetch ImageNet weights; flags of other kinds would be named as ignored."""
    from dataclasses import asdict

    from speciesfam.config import TuneConfig
    from speciesfam.reproduce import command

    transfer = command("tune", {"config": asdict(TuneConfig(kind="transfer", weights=None))})
    assert transfer == "speciesfam tune transfer --workdir RUN --weights none", transfer
    smoke = command("tune", {"config": asdict(TuneConfig.smoke(kind="transfer"))})
    assert smoke == "speciesfam tune transfer --workdir RUN --smoke-test", smoke  # --smoke-test sets weights none
    scratch = command("tune", {"config": asdict(TuneConfig.smoke(kind="scratch", weights="x.h5", image_size=32))})
    assert scratch == "speciesfam tune scratch --workdir RUN --smoke-test --image-size 32", scratch
    probe = command("tune", {"config": asdict(TuneConfig(kind="probe", image_size=96, precision="float32"))})
    assert probe == "speciesfam tune probe --workdir RUN --precision float32", probe
    fifo = command("tune", {"config": {**asdict(TuneConfig(kind="probe", scheduler="fifo")), "grace_period": 3}})
    assert fifo == "speciesfam tune probe --workdir RUN --scheduler fifo", fifo


def test_the_reproduce_command_parses_back_to_the_same_settings():
    """The report's command must re-run the stage as it ran: every flag by its real name (``--time-budget``, not
    the field's name), ``--extra`` included, values with spaces or quotes shell-quoted, and settings that differ
    from ``--smoke-test``'s (``--weights imagenet`` after it) kept."""
    import shlex
    from dataclasses import asdict

    from speciesfam import cli
    from speciesfam.cli_args import build_parser
    from speciesfam.config import CatalogConfig, CleanConfig, TuneConfig
    from speciesfam.flags import config_from_args
    from speciesfam.reproduce import command

    def parsed(line: str):
        argv = shlex.split(line)
        assert argv[0] == "speciesfam"
        return build_parser().parse_args(argv[1:])

    runs = [TuneConfig.smoke(kind="transfer", weights="imagenet", name="my search", time_budget_s=600.0,
                             extra={"batch_size": 32, "note": "it's \"x\""}, image_cache=False),
            TuneConfig(kind="probe", scheduler="fifo", storage_path="/mnt/shared runs/tune", seed=7),
            TuneConfig(kind="scratch", grace_period=2, max_epochs=4, space="search_spaces.scratch")]
    for cfg in runs:
        line = command("tune", {"config": asdict(cfg)}, workdir="/tmp/a run")
        args = parsed(line)
        assert args.workdir == "/tmp/a run" and args.kind == cfg.kind, line
        assert cli.tune_config(args) == cfg, line

    clean = CleanConfig.smoke(batch_size=4, outlier_z=3.5)
    args = parsed(command("clean", {"config": asdict(clean)}))
    assert cli.clean_config(args) == clean
    catalog = CatalogConfig(seed=3, group_split=True, path_column="file path", label_column="-family")  # '-': '='

    line = command("catalog", {"config": {**asdict(catalog), "source": "/data/my images"}})
    args = parsed(line)
    assert args.source == "/data/my images" and config_from_args(CatalogConfig, args) == catalog, line


def test_how_to_reproduce_lists_every_search_on_the_run_and_the_export_as_given(tmp_path):
    """Only the last search was listed (the bundle may come from an earlier one, e.g. the probe search before a
    CNN search), and the export line dropped --trial and --out."""
    import pandas as pd

    from speciesfam import stages
    from speciesfam.config import TuneConfig
    from speciesfam.reproduce import reproduce
    from speciesfam.tune.search import record_search

    run = str(tmp_path)
    stages.finish(run, "catalog", config={"source": "/data/images"})
    stages.finish(run, "clean", config={})
    table = pd.DataFrame({"trial_id": ["t1"], "status": ["ok"], "best_val_macro_f1": [0.5], "best_epoch": [1],
                          "seconds": [1.0]})
    record_search(run, TuneConfig(kind="probe", num_samples=5), "probe", table)
    record_search(run, TuneConfig(kind="scratch", num_samples=3, name="cnn"), "cnn", table)
    record_search(run, TuneConfig(kind="probe", num_samples=7), "probe", table)  # the same name again: once
    stages.finish(run, "export", config={"trial": "t1", "out": "/srv/bundles/b1"})
    def commands() -> list[str]:
        records = {s: stages.load(run, s) for s in ("catalog", "clean", "tune", "export")}
        return [st["command"] for st in reproduce(run, {s: r for s, r in records.items() if r})["steps"]]


    assert commands() == [f"speciesfam catalog /data/images --workdir {run}", f"speciesfam clean --workdir {run}",
                        f"speciesfam tune scratch --workdir {run} --num-samples 3 --name cnn",
                        f"speciesfam tune probe --workdir {run} --num-samples 7",
                        f"speciesfam export --workdir {run} --trial t1 --out /srv/bundles/b1   # t1: this run's "
                        "trial id; a search run again draws new ids: give its trial of the same settings "
                        "(RUN/trials.csv)"], commands()
    # a search that trained nothing (its --time-budget too small) is named, not listed: run as printed, it failed
    idle = table.assign(status="not_trained", best_val_macro_f1=float("nan"))
    record_search(run, TuneConfig(kind="probe", num_samples=1, time_budget_s=1.0, name="tb"), "tb", idle,
                  time_budget_hit=True)
    records = {s: stages.load(run, s) for s in ("catalog", "clean", "tune", "export")}
    section = reproduce(run, records)
    assert not any("--name tb" in st["command"] for st in section["steps"]) and len(section["steps"]) == 5
    assert section["left_out"] == ["search 'tb' (trained nothing, ended)"]

    stages.finish(run, "clean", config={})  # clean ran again: the searches before it are not on this run's splits
    record_search(run, TuneConfig(kind="probe"), "probe", table)
    assert [c for c in commands() if " tune " in c] == [
        f"speciesfam tune probe --workdir {run}"]


def test_how_to_reproduce_lists_searches_in_the_order_they_ran_and_without_resume(tmp_path, monkeypatch):
    """The record keeps searches by name, and the page took all but the last name as 'earlier': a search was
    left out (an --init-from search, so the page could not rebuild the run) and the latest listed twice; a
    resumed search was listed with --resume, which a new run folder refuses."""
    import itertools

    import pandas as pd

    from speciesfam import stages
    from speciesfam.config import TuneConfig
    from speciesfam.reproduce import reproduce
    from speciesfam.tune.search import record_search

    clock = itertools.count()
    monkeypatch.setattr(stages, "timestamp", lambda: f"2026-12-03T10:00:{next(clock):02d}+0000")
    run = str(tmp_path)
    stages.finish(run, "catalog", config={"source": "/data/images"})
    table = pd.DataFrame({"trial_id": ["t1"], "status": ["ok"], "best_val_macro_f1": [0.5], "best_epoch": [1],
                          "seconds": [1.0]})
    record_search(run, TuneConfig(kind="probe", name="zeta"), "zeta", table)
    record_search(run, TuneConfig(kind="scratch", name="alpha", init_from="zeta"), "alpha", table)
    record_search(run, TuneConfig(kind="probe", name="mid", resume=True), "mid", table)
    steps = reproduce(run, {s: stages.load(run, s) for s in ("catalog", "tune")})["steps"]
    assert [st["command"] for st in steps if st["stage"] == "tune"] == [
        f"speciesfam tune probe --workdir {run} --name zeta",
        f"speciesfam tune scratch --workdir {run} --name alpha --init-from zeta",
        f"speciesfam tune probe --workdir {run} --name mid"]
    # zeta resumed after it finished ends last, but alpha started from it: zeta comes before alpha (it was
    # listed last, and run in that order alpha's --init-from zeta was refused: hostile tester round 30)
    record_search(run, TuneConfig(kind="probe", name="zeta", resume=True), "zeta", table)
    record_search(run, TuneConfig(kind="transfer", name="beta", init_from="alpha"), "beta", table)
    steps = reproduce(run, {s: stages.load(run, s) for s in ("catalog", "tune")})["steps"]
    assert [st["command"] for st in steps if st["stage"] == "tune"] == [
        f"speciesfam tune probe --workdir {run} --name mid",
        f"speciesfam tune probe --workdir {run} --name zeta",
        f"speciesfam tune scratch --workdir {run} --name alpha --init-from zeta",
        f"speciesfam tune transfer --workdir {run} --name beta --init-from alpha"]
    # a search whose every trial failed read 'tune: finished ...' (hostile tester round 33)
    failed = table.assign(status="error", best_val_macro_f1=float("nan"))
    record_search(run, TuneConfig(kind="probe", name="broken"), "broken", failed)
    section = reproduce(run, {s: stages.load(run, s) for s in ("catalog", "tune")})  # it is named, not listed
    assert [st["ended"] for st in section["steps"]] == ["finished"] * 5
    assert section["left_out"] == ["search 'broken' (trained nothing, ended)"]
    # trials.csv deleted: the --resume named are those of each search that trained (broken's is refused: round 34;
    # naming one alone lost the others' trials: round 38)
    from speciesfam.tune.trials_file import trials_deleted

    said = trials_deleted(run)
    assert said.endswith(f"`speciesfam tune transfer --workdir {run} --name beta --init-from alpha --resume` write "
                         "it again (each search's --resume adds its trials)"), said
    assert [c.split("--name ")[1].split()[0] for c in said.split("`")[1::2]] == ["alpha", "mid", "zeta", "beta"]
    other = str(tmp_path / "other")
    stages.finish(other, "catalog", config={"source": "/data/images"})
    record_search(other, TuneConfig(kind="probe", name="broken"), "broken", failed)
    assert trials_deleted(other).endswith("(broken), none of which trained a trial on this run: start a new search "
                                          "(another --name)"), trials_deleted(other)


def test_a_command_naming_the_users_own_modules_starts_with_the_pythonpath_that_finds_them(tmp_path, monkeypatch):
    """A search run with '--space my_space' (PYTHONPATH=~/spaces) was reproduced as 'speciesfam tune ... --space
    my_space': run from elsewhere, it was refused (cannot import it)."""
    from dataclasses import asdict

    from speciesfam.config import CleanConfig, TuneConfig
    from speciesfam.reproduce import command

    (tmp_path / "spaces" / "pkg").mkdir(parents=True)
    (tmp_path / "spaces" / "my_space.py").write_text("")
    (tmp_path / "spaces" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "spaces" / "pkg" / "algo.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "spaces"))
    monkeypatch.delitem(sys.modules, "my_space", raising=False)  # another test's module of that name
    line = command("tune", {"config": asdict(TuneConfig(kind="probe", space="my_space", searcher="pkg.algo:make"))})
    assert line.startswith(f"PYTHONPATH={tmp_path / 'spaces'} speciesfam tune probe --workdir RUN "), line
    assert "--space my_space --searcher pkg.algo:make" in line, line
    gone = command("clean", {"config": asdict(CleanConfig(embedder="gone_module:factory"))})
    assert gone.startswith("PYTHONPATH=FOLDER_OF_gone_module speciesfam clean --workdir RUN"), gone
    for own in ({"space": "search_spaces.probe"}, {"searcher": "optuna"}):  # the project's: no PYTHONPATH
        assert command("tune", {"config": asdict(TuneConfig(kind="probe", **own))}).startswith("speciesfam tune")


def test_a_stale_stages_advice_names_clean_with_the_settings_it_ran_with(tmp_path):
    """'run `speciesfam clean --workdir r1` again' after a re-catalog: that command re-cleaned with the default
    model and thresholds (offline: failed to load ViT-B-32), not the run's (hostile tester round 38)."""
    from dataclasses import asdict

    from speciesfam import stages
    from speciesfam.config import CleanConfig

    run = str(tmp_path)
    assert stages.command("clean", run) == f"speciesfam clean --workdir {run}"  # not run yet: the bare command
    stages.finish(run, "clean", config=asdict(CleanConfig(model="local-dir:/m", near_duplicate_threshold=1.0)))
    assert stages.command("clean", run) == \
        f"speciesfam clean --workdir {run} --model local-dir:/m --near-duplicate-threshold 1.0"
    assert stages.rerun(run, "clean").endswith("--near-duplicate-threshold 1.0`")
    # a stale search: its latest of that kind as it ran, under its --name (which replaces it); bare when none ran
    import pandas as pd

    from speciesfam.config import TuneConfig
    from speciesfam.tune.search import record_search

    table = pd.DataFrame({"trial_id": ["t1"], "status": ["ok"], "best_val_macro_f1": [0.5], "best_epoch": [1],
                          "seconds": [1.0]})
    assert stages.command("tune", run, "scratch") == f"speciesfam tune scratch --workdir {run}"
    record_search(run, TuneConfig(kind="scratch", num_samples=3, name="cnn"), "cnn", table)
    record_search(run, TuneConfig(kind="probe", num_samples=5), "probe", table)
    assert stages.command("tune", run, "scratch") == f"speciesfam tune scratch --workdir {run} --num-samples 3 --name cnn"


@pytest.mark.slow  # a real CNN search (~30 s on 2 cores)
def test_a_cnn_search_given_no_worker_cpus_is_reproduced_without_the_share_fitted_to_this_machine(
        collection, tmp_path, ray_session):
    """The workers' CPUs left out are fitted to the cluster (2 x 0.75 on 2 cores); the report's reproduce command
    gave the share this machine got, pinning it on a larger one (round 54)."""
    from speciesfam import stages
    from speciesfam.config import TuneConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.tune.search import run_search

    root, _ = collection
    run_catalog(str(root), str(tmp_path))
    run_search(str(tmp_path), TuneConfig(kind="scratch", num_samples=1, max_epochs=1, workers_per_trial=1,
                                         image_size=32, name="cnn"))  # not --smoke-test: it gives 0.5 CPUs
    said = stages.command("tune", str(tmp_path), "scratch")
    assert said.startswith("speciesfam tune scratch ") and "--name cnn" in said and "--cpus-per-worker" not in said
    # nor does a bare --resume take it from the search's own record (it then recorded 0.75 again: round 55)
    from speciesfam.cli_args import build_parser, tune_config

    resumed = tune_config(build_parser().parse_args(["tune", "scratch", "--workdir", str(tmp_path), "--name", "cnn",
                                                     "--resume"]))
    assert resumed.cpus_per_worker is None and resumed.image_size == 32  # what it started with, but not fitted
