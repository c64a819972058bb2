"""Search spaces are checked before any work: a space file's hyperparameters against their limits (as Tune
draws them), values a function draws when its trial starts, a CNN space's model choice, backbones that
cannot take the image size, and what --extra fixes in a space."""

import sys

import pytest

from speciesfam import cli
from speciesfam.config import TuneConfig
from speciesfam.errors import ConfigError


def test_an_integer_ranges_upper_bound_is_checked_as_tune_draws_it():
    """tune.randint(0, 2) draws 0 or 1, yet weight_decay's limit [0, 1] refused it (hostile tester); qrandint
    draws its upper bound."""
    from ray import tune

    from speciesfam.tune.space import check_space

    check_space({"weight_decay": tune.randint(0, 2), "head_units": tune.lograndint(1, 64)}, "s", "probe", {})
    with pytest.raises(ConfigError, match=r"weight_decay=2 is outside \[0, 1\]"):
        check_space({"weight_decay": tune.qrandint(0, 2, 1)}, "s", "probe", {})
    # a quantized float draws its upper bound (dropout=1.0 passed here, then failed trials: hostile tester round 30)
    assert 1.0 in tune.quniform(0.0, 1.0, 0.5).sample(size=200)
    with pytest.raises(ConfigError, match=r"dropout=1.0 is outside \[0, 1\)"):
        check_space({"dropout": tune.quniform(0.0, 1.0, 0.5)}, "s", "probe", {})
    check_space({"dropout": tune.quniform(0.0, 0.9, 0.3), "lr": tune.uniform(0.001, 10)}, "s", "probe", {})
    # Optuna drops a q-log range's quantization: head_units=36.9 failed every trial; Tune's random search keeps it
    with pytest.raises(ConfigError, match=r"head_units is a quantized log range \(q=16\), which Optuna cannot "):
        check_space({"head_units": tune.qloguniform(16, 64, 16)}, "s", "probe", {}, "optuna")
    check_space({"head_units": tune.qloguniform(16, 64, 16)}, "s", "probe", {}, "random")
    # a grid: Optuna raised ValueError once Ray had started; an empty one and a string (read letter by letter)
    # reached Tune (IndexError) or the trainers (optimizer='a'): refused in the space's words (round 46)
    with pytest.raises(ConfigError, match=r"head_units is a tune.grid_search, which searcher 'optuna' cannot sample: "
                                          r"use tune.choice\(\[...\]\)"):
        check_space({"head_units": tune.grid_search([16, 32])}, "s", "probe", {}, "optuna")
    for searcher in ("random", "grid"):
        check_space({"head_units": tune.grid_search([16, 32])}, "s", "probe", {}, searcher)
    for grid in ([], "adam"):
        with pytest.raises(ConfigError, match=r"optimizer is a grid_search of .*: give tune.grid_search\(\[value"):
            check_space({"optimizer": {"grid_search": grid}}, "s", "probe", {}, "random")


def test_a_value_a_function_draws_is_checked_when_the_trial_starts():
    """tune.sample_from(lambda spec: 1000.0) passed every check before the search (its values exist only once
    drawn) and trained to losses of 1e11 (hostile tester): the trial fails first, naming the value, a probe trial
    before any epoch and a CNN trial before its Ray Train workers start."""
    from speciesfam.config import TuneConfig
    from speciesfam.train.probe import probe_trial
    from speciesfam.tune.search import _trial

    with pytest.raises(ConfigError, match=r"^this trial's lr=1000.0 is outside \(0, 10\], the values lr can take"):
        probe_trial({"lr": 1000.0, "head_units": 8}, fixed={}, data={})
    from speciesfam.tune.space import check_drawn

    with pytest.raises(ConfigError, match=r"head_units=36.9 is not a whole number; head_units takes whole numbers "
                                          r"\(e.g. head_units=\d+\)"):  # it said 'e.g. head_units=None'
        check_drawn({"head_units": 36.9})
    with pytest.raises(ConfigError, match=r"^this trial's optimizer='nope' is not one the trainers know"):
        _trial({"model": "scratch_sequential", "optimizer": "nope", "freeze_epochs": None}, {}, TuneConfig(), "x")


@pytest.mark.parametrize("body, message", [
    ("def get_search_space(smoke)\n    return {}", "--space 'bad_space': importing it failed: SyntaxError"),
    ("get_search_space = 5", "has no get_search_space(smoke: bool) function"),
    ("def get_search_space():\n    return {}", "get_search_space(True) raised TypeError"),
    ("def get_search_space(smoke):\n    return {'lr': tune.loguniform(0, 1e-2)}", "raised ValueError: LogUniform"),
    ("def get_search_space(smoke):\n    return {}", "nothing to search (every value is fixed or"),
    ("def get_search_space(smoke):\n    return {'lr': 0.01, 'batch_size': 32}",
     "nothing to search (every value is fixed or"),
    # a space of constants and a sample_from function crashed Tune's searcher with a traceback (hostile tester)
    ("def get_search_space(smoke):\n    return {'lr': tune.sample_from(lambda spec: 0.01)}",
     "nothing to search (every value is fixed or a tune.sample_from function"),
    ("def get_search_space(smoke):\n    return {'head_units': tune.choice([])}", "head_units is tune.choice([])"),
    ("def get_search_space(smoke):\n    return {'dropout': tune.uniform(0.5, 0.1)}", "range [0.5, 0.1] is empty"),
    ("def get_search_space(smoke):\n    return {'dropout': tune.uniform(0.0, 5.0)}", "dropout=5.0 is outside [0, 1)"),
    ("def get_search_space(smoke):\n    return {'head_units': tune.choice([0, 64])}", "head_units=0 is outside"),
    ("def get_search_space(smoke):\n    return {'lr': tune.loguniform(1e3, 1e6)}", "lr=1000.0 is outside (0, 10]"),
    # 0 in float32: 8 trials 'ok' at the same val macro-F1 every epoch, having learnt nothing (hostile tester round 33)
    ("def get_search_space(smoke):\n    return {'lr': tune.choice([1e-320, 1e-3])}", "lr=1e-320 is below 1.2e-38 in "
     "float32, the precision trials train in (0 or a subnormal: it trains nothing), and lr must be above 0: give at "
     "least 1.2e-38"),
    ("def get_search_space(smoke):\n    return {'lr': tune.choice([1.5e-45, 1e-3])}", "lr=1.5e-45 is below 1.2e-38"),
    ("def get_search_space(smoke):\n    return {'weight_decay': tune.uniform(0, 1e9)}",
     "weight_decay=1000000000.0 is outside [0, 1]"),
    ("def get_search_space(smoke):\n    return {'weight_decay': tune.randint(0, 3)}",  # draws 0, 1 or 2
     "weight_decay=2 is outside [0, 1]"),
    ("def get_search_space(smoke):\n    return {'lr': 'fast', 'dropout': tune.uniform(0, 0.3)}",
     "lr='fast' is text; lr takes number"),
    ("def get_search_space(smoke):\n    return {'optimizer': tune.choice(['adam', 'nope'])}",
     "optimizer='nope' is not one the trainers know; choose from adam, adamw, sgd"),
    ("def get_search_space(smoke):\n    return {'nonsense_key': tune.uniform(0.1, 0.5)}",
     "'nonsense_key' is not a hyperparameter the trainers or models read"),
    ("def get_search_space(smoke):\n    return {'droput': tune.uniform(0.1, 0.5)}", "did you mean 'dropout'?"),
    ("def get_search_space(smoke):\n    return {'dropout': tune.randn(0.2, 0.1)}",  # it said "dropout=-inf"
     "dropout is unbounded (tune.randn can draw any number), and dropout has limits"),
    # a probe trial reads no CNN setting (trials.csv named the CNN of 'model' for a probe head: hostile tester)
    ("def get_search_space(smoke):\n    return {'lr': tune.loguniform(1e-4, 1e-2), 'filters': 8}",
     "'filters' is read only by CNN trials (tune scratch|transfer)"),
    # whole numbers: a trainer truncated batch_size 2.5 to 2 while the report showed 2.5 (hostile tester)
    ("def get_search_space(smoke):\n    return {'batch_size': tune.choice([32, 2.5])}",
     "batch_size=2.5 is not a whole number"),
    ("def get_search_space(smoke):\n    return {'patience': tune.uniform(1, 3)}",
     "patience is a range of fractions [1, 3]; patience takes whole numbers: use tune.randint"),
])
def test_a_bad_search_space_is_refused_in_one_line_before_any_work(body, message, tmp_path, monkeypatch, capsys):
    """A custom --space used to fail with a traceback from Tune or Optuna, or every trial after Ray started, or
    to run with a misspelt name ignored."""
    (tmp_path / "bad_space.py").write_text(f"from ray import tune\n\n{body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_space", raising=False)  # each case's own module
    assert cli.main(["tune", "probe", "--workdir", str(tmp_path), "--space", "bad_space", "--smoke-test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "tune").exists()


def test_a_cnn_space_must_choose_a_model_and_names_of_a_users_own_model_pass(tmp_path, monkeypatch, capsys):
    from speciesfam.tune.space import load_space

    (tmp_path / "cnn_space.py").write_text("from ray import tune\n\ndef get_search_space(smoke):\n"
                                           "    return {'lr': tune.loguniform(1e-4, 1e-2), 'width': 3}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["tune", "scratch", "--workdir", str(tmp_path), "--space", "cnn_space"]) == 2
    assert "has no 'model': a scratch space chooses the CNN" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="'width' is not a hyperparameter"):
        load_space(TuneConfig(space="cnn_space", extra={"model": "scratch_sequential"}))
    (tmp_path / "my_cnn_models.py").write_text("def build(num_classes, image_size, hp, weights=None):\n    pass\n")
    assert load_space(TuneConfig(space="cnn_space", extra={"model": "my_cnn_models:build"}))["width"] == 3
    # one that does not import, or no callable: refused before Ray starts (each trial failed on it, 90 s to exit 1;
    # hostile tester round 28)
    with pytest.raises(ConfigError, match="model 'nomod_xyz:build': cannot import module 'nomod_xyz'"):
        load_space(TuneConfig(space="cnn_space", extra={"model": "nomod_xyz:build"}))
    with pytest.raises(ConfigError, match="model 'os:path' is a module, not a callable"):
        load_space(TuneConfig(space="cnn_space", extra={"model": "os:path"}))
    with pytest.raises(ConfigError, match="lr=-1 is outside"):  # limits hold for a user's own model too
        load_space(TuneConfig(space="cnn_space", extra={"model": "my_cnn_models:build", "lr": -1}))


def test_a_backbone_that_cannot_take_the_image_size_is_left_out_or_refused_before_any_trial(capsys):
    """`tune transfer` at the default 64 px searched Xception (71 px at least): each such trial failed, minutes
    in; with --extra '{"model": "xception"}' every trial failed (2+ minutes to exit 1)."""
    from speciesfam.tune.space import load_space

    space = load_space(TuneConfig(kind="transfer"))
    assert "xception" not in space["model"].categories and "resnet50v2" in space["model"].categories
    assert capsys.readouterr().out == ("tune: xception left out of the models searched (xception needs images of 71 "
                                       "px or more, and image_size is 64; --image-size 71 keeps it)\n")
    assert "xception" in load_space(TuneConfig(kind="transfer", image_size=71))["model"].categories
    from speciesfam.tune.space import models_that_build

    assert models_that_build({"grid_search": ["xception", "resnet50v2"]}, 64) == {"grid_search": ["resnet50v2"]}
    with pytest.raises(ConfigError, match="model: xception needs images of 71 px or more, and image_size is 48: "
                                          "give --image-size 71 or more, or another model"):
        load_space(TuneConfig(kind="transfer", smoke_test=True, image_size=48, extra={"model": "xception"}))


def test_a_scratch_cnn_too_deep_for_the_image_size_is_left_out_or_refused_before_any_trial(capsys):
    """`--extra '{"depth": 8, "model": "scratch_sequential"}'` at 32 px: every trial failed in Keras ('Computed
    output size would be zero or negative ... MaxPooling2D') after 1.5 minutes, naming no setting (hostile tester).
    scratch_sequential halves the image in each block; scratch_functional's strided blocks build at any depth."""
    from speciesfam.tune.space import load_space

    with pytest.raises(ConfigError, match=r"^model: scratch_sequential needs images of 256 px or more at depth 8, "
                                          r"and image_size is 32: give --image-size 256 or more, or another model "
                                          r"\(or a smaller depth\)$"):
        load_space(TuneConfig(kind="scratch", smoke_test=True, image_size=32,
                              extra={"depth": 8, "model": "scratch_sequential"}))
    space = load_space(TuneConfig(kind="scratch", smoke_test=True, image_size=32, extra={"depth": 8}))
    assert space["model"].categories == ["scratch_functional"]
    assert "tune: scratch_sequential left out of the models searched" in capsys.readouterr().out
    space = load_space(TuneConfig(kind="scratch", image_size=16))  # the scratch space's depth: randint(3, 6)
    assert "scratch_sequential" in space["model"].categories  # depths 3 and 4 build at 16 px, 5 does not
    assert capsys.readouterr().out == ("tune: scratch_sequential trials of depth above 4 will fail at image_size 16 "
                                       "(each block halves the image); --image-size 32 builds every depth searched\n")
    load_space(TuneConfig(kind="scratch", image_size=32))
    assert capsys.readouterr().out == ""


def test_a_space_of_the_other_cnn_kind_is_refused():
    """`tune transfer --space search_spaces.scratch` ran scratch CNNs recorded as transfer learning (hostile tester
    round 30); a mix, or a model of your own, is taken as given."""
    from ray import tune

    from speciesfam.tune.space import load_space

    with pytest.raises(ConfigError, match=r"chooses no ImageNet backbone \(scratch_sequential, scratch_functional\)"
                                          r", so a transfer search would train them without pretrained weights"):
        load_space(TuneConfig(kind="transfer", space="search_spaces.scratch"))
    with pytest.raises(ConfigError, match=r"chooses only ImageNet backbones .* run `speciesfam tune transfer`"):
        load_space(TuneConfig(kind="scratch", space="search_spaces.transfer"))
    mixed = {"model": tune.choice(["scratch_sequential", "mobilenetv3small"])}
    assert load_space(TuneConfig(kind="transfer", extra=mixed))["model"].categories == mixed["model"].categories


@pytest.mark.parametrize("flags,message", [
    (["--space", "my_space.py"], "--space 'my_space.py' is a path; give the module's name, without .py or ./ "
                                 "(--space my_space, with PYTHONPATH=. for a file in the current folder)"),
    (["--space", "./spaces/my_space"], "(--space spaces.my_space, with PYTHONPATH=."),
    (["--space", "/srv/spaces/my_space.py"], "without .py or its folder (--space my_space, with "
                                             "PYTHONPATH=/srv/spaces)"),  # it said 'srv.spaces.my_space' (round 31)
    # a file name no import can name: it advised '--space my-space', which then failed to import
    (["--space", "/srv/spaces/my-space.py"], "(--space my-space, with PYTHONPATH=/srv/spaces); 'my-space' is no "
                                             "Python module name: rename it (e.g. my_space.py)"),
    (["--space", "spaces/2nd.py"], "'2nd' is no Python module name: rename it (e.g. _2nd.py)"),
    (["--init-from", "probe/"], "--init-from 'probe/' is invalid: expected the --name of an earlier search in this "
                                "run folder, e.g. probe (a name, not a path), or none")])
def test_a_path_where_a_name_goes_says_what_to_give(flags, message, tmp_path, capsys):
    """'--space my_space.py' said "No module named 'my_space.py'; 'my_space' is not a package", './my_space' Python's
    "the 'package' argument is required", and '--init-from probe/' asked for 'None' (hostile tester round 30)."""
    assert cli.main(["tune", "scratch", "--workdir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("extra,message", [
    ('{"lrr": 0.1}', "extra: 'lrr' is not a hyperparameter the trainers, models or search space read; "
                     "did you mean 'lr'?"),
    ('{"Lr": 0.1}', "extra: 'Lr' is not a hyperparameter the trainers, models or search space read; "
                    "did you mean 'lr'?"),  # no hint before: difflib found 'Lr' too far from 'lr' (hostile tester)
    ('{"lr": "fast"}', "extra: lr='fast' is text; lr takes number (e.g. lr=0.001)"),
    ('{"optimizer": 3}', "extra: optimizer=3 is number; optimizer takes text"),
    ('{"batch_norm": "yes"}', "extra: batch_norm='yes' is text; batch_norm takes bool"),
    ('{"model": "resnet51"}', "unknown model 'resnet51'"),
    ('{"batch_size": 1.5}', "extra: batch_size=1.5 is not a whole number; batch_size takes whole numbers"),
    # settings that are flags were told 'did you mean batch_size?' (hostile tester round 30)
    ('{"image_size": 32}', "extra: 'image_size' is a setting of the search, not a hyperparameter: give --image-size "
                           "instead"),
    ('{"epochs": 5}', "give --max-epochs instead"),
    ('{"learning_rate": 0.001}', "did you mean 'lr'?"),  # Keras' name
])
def test_extra_refuses_names_nothing_reads_and_values_of_the_wrong_kind_before_any_work(extra, message, tmp_path,
                                                                                       capsys):
    """A typo in --extra used to run every trial with the key ignored (exit 0)."""
    assert cli.main(["tune", "transfer", "--workdir", str(tmp_path), "--extra", extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize("kind,extra,message", [
    ("probe", '{"image_size": 32}', "extra: 'image_size' is a setting of `tune scratch|transfer` searches, which a "
                                    "probe search does not read; leave it out (a probe trial reads "),
    ("scratch", '{"weights": "imagenet"}', "'weights' is a setting of `tune transfer` searches, which a scratch"),
    ("probe", '{"epochs": 5}', "give --max-epochs instead"),  # read by every kind
])
def test_extra_naming_a_setting_another_kind_reads_says_to_leave_it_out(kind, extra, message, tmp_path, capsys):
    """A probe search told '--extra {"image_size": 32}' said 'give --image-size instead', a flag it then ignores
    (hostile tester round 30's leftover)."""
    assert cli.main(["tune", kind, "--workdir", str(tmp_path), "--extra", extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_probe_search_refuses_a_cnn_setting_in_extra(tmp_path, capsys):
    assert cli.main(["tune", "probe", "--workdir", str(tmp_path), "--extra", '{"model": "scratch_sequential"}']) == 2
    err = capsys.readouterr().err
    assert "extra: 'model' is read only by CNN trials (tune scratch|transfer); a probe trial trains a head on " \
        "embeddings and reads batch_size, class_weighting, dropout, head_layers, head_units, " in err, err
    assert not (tmp_path / "tune").exists()


def test_extra_takes_what_the_trainers_models_and_space_read(tmp_path, monkeypatch):
    from speciesfam.tune.space import load_space

    fixed = {"lr": 1, "optimizer": "sgd", "freeze_epochs": None, "filters": 8, "pooling": "flatten", "patience": 3,
             "model": "scratch_functional", "batch_norm": False}
    assert {k: load_space(TuneConfig(kind="scratch", extra=fixed))[k] for k in fixed} == fixed
    # a custom space's own names (its custom model reads them), in its full or smoke variant
    (tmp_path / "wide_space.py").write_text(
        "from ray import tune\n\ndef get_search_space(smoke):\n    return {'model': 'my_wide_models:wide', "
        "'lr': tune.loguniform(1e-4, 1e-2), **({'width': 2} if smoke else {})}\n")
    (tmp_path / "my_wide_models.py").write_text("def wide(num_classes, image_size, hp, weights=None):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_space(TuneConfig(space="wide_space", extra={"width": 4}, smoke_test=True))["width"] == 4
    assert load_space(TuneConfig(space="wide_space", extra={"width": 4}))["width"] == 4  # named by the smoke variant


def test_numpy_values_in_a_space_are_plain_numbers(tmp_path, monkeypatch):
    """np.int64 choices and an np.float32 constant were written as text ("32") in trials.csv and the bundle's hp,
    and the warm-start line said head_units=np.int64(32) (hostile tester round 46)."""
    import json

    from speciesfam.tune.space import load_space

    (tmp_path / "np_space.py").write_text(
        "import numpy as np\nfrom ray import tune\n\ndef get_search_space(smoke):\n"
        "    return {'head_units': tune.choice([np.int64(16), np.int64(32)]), 'dropout': np.float32(0.1),\n"
        "            'lr': tune.grid_search([np.float64(0.01)])}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    space = load_space(TuneConfig(kind="probe", space="np_space", searcher="random"))
    drawn = {"head_units": space["head_units"].sample(), "dropout": space["dropout"],
             "lr": space["lr"]["grid_search"][0]}
    assert json.loads(json.dumps(drawn, default=str)) == drawn and type(drawn["head_units"]) is int, drawn
    assert drawn["dropout"] == 0.1  # as written, not 0.10000000149011612 (round 47)
