"""Registries and configs fail early with the valid names / the bad field."""

import pytest

from speciesfam.config import CleanConfig, ConfigError, TuneConfig, from_dict
from speciesfam.registry import DETECTORS, MODELS, SCHEDULERS, SEARCHERS, Registry


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KeyError, match="valid models: .*resnet50v2.*scratch_sequential"):
        MODELS.get("resnet51")
    for reg in (SEARCHERS, SCHEDULERS, DETECTORS):
        with pytest.raises(KeyError, match="valid"):
            reg.get("nope")
    assert {"optuna", "hebo", "bayesopt", "random", "grid"} <= set(SEARCHERS.names())
    assert {"asha", "fifo", "hyperband"} <= set(SCHEDULERS.names())


def test_hyperband_judges_trials_at_several_grace_periods_and_never_pauses_them():
    from ray.tune.schedulers import AsyncHyperBandScheduler

    def first_rungs(**kw):
        scheduler = SCHEDULERS.get("hyperband")(TuneConfig(**kw))
        assert isinstance(scheduler, AsyncHyperBandScheduler)  # stops or continues; Ray's synchronous one pauses
        return sorted(min(rung[0] for rung in bracket._rungs) for bracket in scheduler._brackets)

    assert first_rungs(max_epochs=8) == [1, 2, 4]
    assert first_rungs(max_epochs=20, grace_period=3, reduction_factor=4) == [3, 12]
    assert first_rungs(max_epochs=1) == [1]


def test_duplicate_registration_fails():
    reg = Registry("thing", ())
    reg.register("a")(lambda: 1)
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_configs_name_the_bad_field():
    with pytest.raises(ConfigError, match=r"unknown TuneConfig field\(s\) \['num_sample'\]"):
        from_dict(TuneConfig, {"num_sample": 3})
    with pytest.raises(ConfigError, match="grace_period=9"):
        TuneConfig(grace_period=9, max_epochs=3).validate()
    with pytest.raises(KeyError, match="unknown searcher 'tpe'"):
        TuneConfig(searcher="tpe").validate()
    with pytest.raises(ConfigError, match="contamination=0.7"):
        CleanConfig(contamination=0.7).validate()


def test_bayesopt_refuses_categorical_space():
    from ray import tune

    with pytest.raises(ValueError, match="'model' is Categorical.*--searcher optuna"):
        SEARCHERS.get("bayesopt")({"lr": tune.loguniform(1e-4, 1e-2), "model": tune.choice(["a", "b"])}, 0)
