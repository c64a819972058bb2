"""Search wiring with fast toy trainables: searchers, ASHA, failed and NaN trials, the trial table."""


import pandas as pd
import pytest
from conftest import pickle_by_value

from speciesfam.config import ConfigError, TuneConfig
from speciesfam.tune.search import check_resources, make_tuner
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


@pytest.mark.parametrize("searcher,scheduler", [("optuna", "asha"), ("random", "fifo"), ("optuna", "hyperband")])
def test_searcher_scheduler_wiring_survives_failed_and_nan_trials(searcher, scheduler, tmp_path, ray_session):
    from ray import tune

    cfg = TuneConfig(searcher=searcher, scheduler=scheduler, num_samples=10, max_epochs=8, max_failures=0,
                     max_concurrent=2)
    results = make_tuner(tune.with_resources(toy, {"CPU": 0.5}), space(), cfg, str(tmp_path / "tune"), "toy").fit()
    table = write_trial_table(results, str(tmp_path))
    assert len(table) == 10
    kinds = table["config"].str.extract(r'"kind": "(\w+)"')[0]
    assert (table.loc[kinds == "raise", "status"] == "error").all()
    assert (table.loc[kinds != "raise", "status"] == "ok").all()
    good = table[kinds == "ok"]
    assert good["best_val_macro_f1"].notna().all()
    if scheduler == "asha" and len(good) >= 3:
        assert good["epochs_run"].min() < 8  # ASHA stopped at least one weak trial early
    if scheduler == "fifo":
        assert (good["epochs_run"] == 8).all()
    assert table["best_val_macro_f1"].dropna().is_monotonic_decreasing
    on_disk = pd.read_csv(tmp_path / "trials.csv")
    assert list(on_disk["trial_id"]) == list(table["trial_id"])
    assert (tmp_path / "trials.md").read_text().startswith("| trial_id")
    assert (tmp_path / "search_progress.png").stat().st_size > 1000


def test_resources_that_can_never_fit_fail_before_training(ray_session):
    with pytest.raises(ConfigError, match="needs 2 GPUs but the cluster has 0"):
        check_resources(TuneConfig(gpus_per_worker=1))
    with pytest.raises(ConfigError, match="one trial needs 8.5 CPUs"):
        check_resources(TuneConfig(cpus_per_worker=4))
    check_resources(TuneConfig(cpus_per_worker=0.5))


def test_nan_loss_fails_the_trial_with_a_clear_error(collection, tmp_path, ray_session):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from speciesfam.data.catalog import run_catalog
    from speciesfam.train.loop import train_loop_per_worker

    root, _ = collection
    m = run_catalog(str(root), str(tmp_path))
    labels = sorted(m.loc[m["status"] == "ok", "label"].unique())
    config = {"manifest": str(tmp_path / "manifest.parquet"), "labels": labels, "model": "scratch_sequential",
              "image_size": 32, "weights": None, "max_epochs": 2,
              "hp": {"lr": float("inf"), "optimizer": "sgd", "filters": 4, "depth": 1, "head_units": 8, "batch_norm": False}}
    trainer = TensorflowTrainer(train_loop_per_worker, train_loop_config=config,
                                scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                                run_config=RunConfig(name="nan", storage_path=str(tmp_path)))
    with pytest.raises(Exception, match="training loss became nan"):
        trainer.fit()


pickle_by_value(__name__)  # Ray workers cannot import test modules: ship this module's functions by value
