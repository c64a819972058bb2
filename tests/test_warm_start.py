"""Warm start (--init-from): which earlier trial is taken, and its settings fitted to the new space."""

from __future__ import annotations

import re

import pytest

from conftest import recleaned

from speciesfam import cli, stages
from speciesfam.config import TuneConfig


@pytest.mark.slow  # three searches (~17 s); the default run keeps test_probe's warm-start point test
def test_init_from_a_kind_names_the_search_it_took_and_never_a_stale_one(tmp_path, capsys):
    """`--init-from probe` after the search named probe ran on an older val split took another probe search's
    best trial, saying 'warm start from 'probe'' (hostile tester round 39): the line names the trial and search
    taken and why; a name that is no kind takes only that search's trials."""
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.errors import ConfigError
    from speciesfam.tune.warmstart import best_trial

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=60, dim=4, families=3)
    tune = ["tune", "probe", "--workdir", run, "--num-samples", "1", "--max-epochs", "1"]
    assert cli.main(tune) == 0  # the search named probe
    seeded = stages.load(run, "tune")["searches"]["probe"]["config"]["seed"]
    _, which = best_trial(run, f"{run}/tune", "probe")
    assert which.startswith("trial ") and which.endswith(" of search 'probe'"), which
    recleaned(run, "open_clip:another", config={"model": "another clean", "model_id": "open_clip:another"})  # a re-clean:
    # another val split (another embedding model)
    assert cli.main([*tune, "--name", "p2"]) == 0
    capsys.readouterr()
    # a second search under a new --name drew the first one's trials again (every search was seeded 0 unless
    # --seed was given; round 49): a search given no --seed takes its name's
    from speciesfam.config import name_seed

    assert stages.load(run, "tune")["searches"]["p2"]["config"]["seed"] == name_seed("p2") != name_seed("probe")
    assert seeded == name_seed("probe")
    _, which = best_trial(run, f"{run}/tune", "probe")
    assert which.endswith(" of search 'p2', the best probe trial on this run's val split; search 'probe' ran on "
                          "an older val split (catalog or clean ran since)"), which
    with pytest.raises(ConfigError, match="no finished trial scored on this run's val split"):
        best_trial(run, f"{run}/tune", "p3")  # no kind: only its own trials
    recleaned(run, "open_clip:third", config={"model": "a third clean", "model_id": "open_clip:third"})
    with pytest.raises(ConfigError, match="no finished trial scored on this run's val split"):
        best_trial(run, f"{run}/tune", "probe")  # none on this split, of any search


def test_a_failed_trial_is_never_the_warm_starts_best():
    """A probe trial whose loss became NaN after a good epoch was taken as the best (Tune's best config counts
    every trial that reported); a search whose trials all failed now has no best to start from."""
    from types import SimpleNamespace

    from speciesfam.tune.warmstart import best_tune_trial

    def trial(status, best, dropout, seconds=1.0):
        return SimpleNamespace(status=status, metric_analysis={"val_macro_f1": {"max": best}} if best is not None
                               else {}, config={"dropout": dropout}, last_result={"time_total_s": seconds})

    trials = [trial("ERROR", 0.9, 0.1), trial("TERMINATED", 0.5, 0.2), trial("TERMINATED", float("nan"), 0.3),
              trial("TERMINATED", None, 0.4), trial("TERMINATED", 0.6, 0.5)]
    assert best_tune_trial(trials).config == {"dropout": 0.5}
    assert best_tune_trial(trials[:1]) is None and best_tune_trial([]) is None
    # a tie goes to the faster trial, the one the search's summary and trials.csv name (it took the first listed)
    tied = [trial("TERMINATED", 0.6, 0.7, seconds=9.0), *trials[1:], trial("TERMINATED", 0.6, 0.8, seconds=0.5)]
    assert best_tune_trial(tied).config == {"dropout": 0.8}
    # a trial that took another's last report (an interrupt as a reused process changed trials: round 52) took
    # that one's scores too: not the best on them
    took = trial("TERMINATED", 0.99, 0.9)
    took.trial_id, took.last_result["trial_id"] = "b", "a"
    assert best_tune_trial([*trials, took]).config == {"dropout": 0.5}


def test_init_from_is_validated():
    for bad in ("", "../probe", 3):  # ConfigError (a ValueError): the field, the value, what is allowed
        with pytest.raises(ValueError, match="init_from"):
            TuneConfig(init_from=bad).validate()
    with pytest.raises(ValueError, match="searcher='grid'"):
        TuneConfig(init_from="probe", searcher="grid").validate()
    TuneConfig(init_from="probe").validate()


def test_a_warm_start_value_is_one_the_space_can_draw(tmp_path, capsys, monkeypatch):
    """qrandint's upper bound was taken as exclusive and its step ignored: head_units=128 became 63 in
    qrandint(8, 64, 8), label_smoothing 0.0142 stayed 0.0142 in quniform(0, 0.2, 0.1) (hostile tester)."""
    import numpy as np
    from ray import tune

    from speciesfam.tune import warmstart

    space = {"head_units": tune.qrandint(8, 64, 8), "head_layers": tune.qrandint(1, 3, 2),
             "label_smoothing": tune.quniform(0.0, 0.2, 0.1), "dropout": tune.randint(1, 5),
             "optimizer": tune.choice(["adam", "adamw"]), "lr": tune.loguniform(1e-3, 1e-2)}
    best = {"head_units": 128, "head_layers": 2, "label_smoothing": 0.0142, "dropout": 9, "optimizer": "sgd",
            "weight_decay": 0.00044647108408387876}  # said as 0.0004465, not 17 digits (round 61)
    space["weight_decay"] = tune.loguniform(1e-5, 1e-2)
    point = warmstart.fit_point(best, space)
    assert {k: point[k] for k in ("head_units", "head_layers", "label_smoothing", "dropout")} == \
        {"head_units": 64, "head_layers": 2, "label_smoothing": 0.0, "dropout": 4}
    for key in ("head_units", "head_layers", "label_smoothing", "dropout"):  # each one the domain draws
        drawn = set(np.round(space[key].sample(size=300, random_state=np.random.RandomState(0)), 9))
        assert point[key] in drawn, (key, point[key], sorted(drawn))
    assert warmstart.fit_number(63, space["head_units"]) == 64 and warmstart.fit_number(0.29, space["label_smoothing"]) == 0.2
    monkeypatch.setattr(warmstart, "best_trial", lambda *a: (best, "trial t1 of search 'probe'"))
    warmstart.warm_start_points(str(tmp_path), str(tmp_path), "probe", space)
    said = capsys.readouterr().out.strip()
    assert said == (  # it said "no shared keys" when only such a key was shared
        "tune: warm start from 'probe' (trial t1 of search 'probe'): dropout=4 (from 9, fitted to this space), "
        "head_layers=2, head_units=64 (from 128, fitted to this space), label_smoothing=0.0 (from 0.0142, fitted to "
        f"this space), weight_decay=0.0004465; not among this space's choices: optimizer='sgd' (drawn instead: "
        f"{point['optimizer']!r})")
    monkeypatch.setattr(warmstart, "best_trial",
                        lambda *a: ({"optimizer": "sgd", "lr": 0.1}, "trial t1 of search 'probe'"))
    warmstart.warm_start_points(str(tmp_path), str(tmp_path), "probe", space)
    # the value drawn, not the source's, after 'drawn' (it read 'so drawn: optimizer='sgd''; round 40)
    assert re.fullmatch(r"tune: warm start from 'probe' \(trial t1 of search 'probe'\): none of its settings taken; "
                        r"not among this space's choices: optimizer='sgd' \(drawn instead: '(adam|adamw)'\)",
                        capsys.readouterr().out.strip())



def test_init_from_probe_before_clean_says_to_clean_first(tmp_path):
    """`tune scratch --init-from probe` on a run with no clean stage said to run `speciesfam tune probe` first,
    which failed for want of clean's embeddings (hostile tester round 52)."""
    from speciesfam.errors import ConfigError
    from speciesfam.tune.warmstart import best_trial

    stages.finish(str(tmp_path), "catalog", config={"source": "/data/imgs"})
    with pytest.raises(ConfigError, match=rf"run `speciesfam clean --workdir {tmp_path}`, then `speciesfam tune "
                                          rf"probe --workdir {tmp_path}` first, or drop --init-from$"):
        best_trial(str(tmp_path), f"{tmp_path}/tune", "probe")
    stages.finish(str(tmp_path), "clean")
    with pytest.raises(ConfigError, match=rf"run `speciesfam tune probe --workdir {tmp_path}` first"):
        best_trial(str(tmp_path), f"{tmp_path}/tune", "probe")
