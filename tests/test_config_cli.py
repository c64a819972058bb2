"""One source of truth: config dataclasses drive the CLI, the jobs and the demo (plug-ins: test_registry.py);
user errors are one line (exit 2), programming errors keep their traceback."""

import dataclasses
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speciesfam import cli, stages
from speciesfam.config import CatalogConfig, CleanConfig, DemoConfig, TuneConfig
from speciesfam.errors import ConfigError
from speciesfam.flags import config_fields

ROOT = Path(__file__).resolve().parents[1]


def _flag(f):
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


@pytest.mark.parametrize("command,classes", [("catalog", [CatalogConfig]), ("clean", [CleanConfig]),
                                             ("tune", [TuneConfig]), ("demo", [DemoConfig])])
def test_every_config_field_is_a_flag_with_its_default(command, classes):
    sub = next(a for a in cli.build_parser()._actions if hasattr(a, "choices") and a.choices)
    parser = sub.choices[command]
    by_dest = {a.dest: a for a in parser._actions}
    for cls in classes:
        for f in config_fields(cls):
            action = by_dest[f.name]
            assert _flag(f) in action.option_strings
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            # a None default ("the tool decides") is explained in the help's own words instead of "None"
            said = f"(default: {default}" in action.help or (default is None and "default" in action.help)
            assert said or isinstance(default, dict), (f.name, action.help)


def test_job_script_has_the_catalog_and_clean_flags():
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / "clean_data.py"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cls in (CatalogConfig, CleanConfig):
        for f in config_fields(cls):
            assert _flag(f) in out, f.name


def test_a_flag_the_search_does_not_read_is_named_as_ignored(capsys):
    """`tune probe --workers-per-trial 7` and `tune scratch --weights none` were accepted without a word."""
    def line(*argv):
        cli.tune_config(cli.build_parser().parse_args(["tune", *argv, "--workdir", "w"]))
        return capsys.readouterr().out.strip()

    assert line("probe", "--workers-per-trial", "7", "--image-size", "96") == (
        "tune probe: --image-size, --workers-per-trial do not apply to probe trials; ignored")
    assert line("scratch", "--weights", "none", "--scheduler", "fifo", "--grace-period", "2") == (
        "tune scratch: --weights does not apply to scratch trials; --grace-period does not apply to a FIFO search; "
        "ignored")
    assert line("transfer", "--precision", "float32") == (
        "tune transfer: --precision does not apply to transfer trials; ignored")
    assert line("probe", "--no-image-cache", "--time-budget", "60") == (  # named as typed
        "tune probe: --no-image-cache does not apply to probe trials; ignored")
    # what a kind reads, and the smoke test's own defaults (weights none for scratch), say nothing
    assert line("transfer", "--weights", "none", "--image-size", "96", "--workers-per-trial", "1") == ""
    assert line("scratch", "--smoke-test", "--grace-period", "2") == ""
    assert line("probe", "--precision", "float32", "--num-samples", "3") == ""


def test_a_job_scripts_flag_error_names_the_script_and_python_m_speciesfam_runs():
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / "tune_probe.py"), "--workdir", "w", "--num-samples", "x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("tune_probe.py: error: argument --num-samples: 'x' is not "
                                                         "an integer") and "(see tune_probe.py --help)" in bad.stderr
    later = subprocess.run([sys.executable, str(ROOT / "jobs" / "tune_probe.py"), "--workdir", "nowhere"],
                           capture_output=True, text=True)  # an error found after the flags were read
    assert later.returncode == 2 and later.stderr.startswith("tune_probe.py: error: nowhere holds no catalogued run")
    same = subprocess.run([sys.executable, "-m", "speciesfam", "tune", "probe", "--workdir", "w", "--num-samples", "x"],
                          capture_output=True, text=True)
    assert same.returncode == 2 and same.stderr.startswith("speciesfam tune: error: argument --num-samples")


@pytest.mark.parametrize("flags,error", [
    (["--outlier-z", "-1"], "--outlier-z -1.0 is invalid"),
    (["--pretrained", "no-such-tag"], "could not load open_clip model 'ViT-S-32' with pretrained='no-such-tag'"),
    # a stage's own refusal named `speciesfam catalog`, which the user never typed (hostile tester)
    (["--data", "/nonexistent/speciesfam-images"], "/nonexistent/speciesfam-images does not exist")])
def test_the_clean_job_refuses_a_bad_clean_flag_before_it_catalogs(tmp_path, flags, error):
    """It catalogued the whole collection (12k images on a cluster) before the clean flag (or the CLIP weights it
    names) was checked."""
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / "clean_data.py"), "--smoke-test", "--workdir",
                          str(tmp_path / "run"), *flags], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith(f"clean_data.py: error: {error}"), bad.stderr
    assert not (tmp_path / "run").exists() and "catalog" not in bad.stdout


def test_flags_overlay_only_what_was_given():
    args = cli.build_parser().parse_args(["tune", "probe", "--workdir", "w", "--seed", "7", "--reduction-factor", "3"])
    assert cli.tune_config(args) == TuneConfig(kind="probe", seed=7, reduction_factor=3)
    smoke = cli.build_parser().parse_args(["tune", "scratch", "--workdir", "w", "--smoke-test", "--max-epochs", "4"])
    assert cli.tune_config(smoke) == TuneConfig.smoke(kind="scratch", max_epochs=4)
    none = cli.build_parser().parse_args(["tune", "transfer", "--workdir", "w", "--weights", "none",
                                          "--extra", '{"batch_size": 8}'])
    assert cli.tune_config(none).weights is None and cli.tune_config(none).extra == {"batch_size": 8}
    clean = cli.build_parser().parse_args(["clean", "--workdir", "w", "--smoke-test", "--batch-size", "8"])
    assert cli.clean_config(clean) == CleanConfig.smoke(batch_size=8)  # README: --smoke-test everywhere
    offline = cli.clean_config(cli.build_parser().parse_args(["clean", "--workdir", "w", "--pretrained", "none"]))
    # random weights make all images alike: 0.95 put a whole offline run in one near-duplicate group
    assert offline.pretrained is None and offline.near_threshold == 0.999 and CleanConfig().near_threshold == 0.95
    assert CleanConfig(pretrained=None, near_duplicate_threshold=0.9).near_threshold == 0.9
    from speciesfam.tune.space import load_space

    # --extra fixes a key of the space as well (it was silently ignored there: the space won)
    space = load_space(TuneConfig(kind="probe", extra={"batch_size": 32, "patience": 7}))
    assert space["batch_size"] == 32 and space["patience"] == 7 and hasattr(space["lr"], "sample")


@pytest.mark.parametrize("argv,message", [
    (["tune", "scratch", "--workdir", "w", "--num-samples", "0"], "--num-samples 0 is invalid"),
    (["tune", "scratch", "--workdir", "w", "--max-epochs", "0"], "--max-epochs 0 is invalid"),
    (["tune", "scratch", "--workdir", "w", "--cpus-per-worker", "0"], "--cpus-per-worker 0.0 is invalid"),
    (["tune", "probe", "--workdir", "w", "--max-epochs", "2", "--grace-period", "3"],
     "--grace-period 3 is invalid: expected an integer from 1 to the epochs per trial (2), or none for the default"),
    (["tune", "scratch", "--workdir", "w", "--searcher", "tpe"], "--searcher 'tpe' is invalid: unknown searcher 'tpe'"),
    (["tune", "scratch", "--workdir", "w", "--scheduler", "pbt"], "--scheduler 'pbt' is invalid: unknown "
     "scheduler 'pbt'; valid schedulers: "),
    (["clean", "--workdir", "w", "--detector", "lof2"], "--detector 'lof2' is invalid: unknown detector 'lof2'"),
    # a traceback from Optuna's sampler, and an experiment written outside the run folder (hostile tester)
    (["tune", "probe", "--workdir", "w", "--seed", "-1"], "--seed -1 is invalid: expected an integer in"),
    (["tune", "probe", "--workdir", "w", "--name", "../../ESCAPED"], "--name '../../ESCAPED' is invalid"),
    (["tune", "probe", "--workdir", "w", "--name", "a/b"], "--name 'a/b' is invalid"),
    (["catalog", "imgs", "--workdir", "w", "--seed", "-3"], "--seed -3 is invalid"),
    # every trial started, failed loading it and was retried: 3 minutes to exit 1 (hostile tester round 3)
    (["tune", "transfer", "--workdir", "w", "--weights", "/no/such/backbone.h5"],
     "--weights '/no/such/backbone.h5' is invalid"),
    (["clean", "--workdir", "w", "--model", "NoSuchArch"], "--model 'NoSuchArch' is not an open_clip architecture"),
    (["clean", "--workdir", "w", "--embedder", "no_such_module_xyz:make"], "cannot import module 'no_such_module_xyz'"),
    (["clean", "--workdir", "w", "--embedder", "json:no_such_factory"], "has no attribute 'no_such_factory'"),
    (["clean", "--workdir", "w", "--pretrained", "/no/such/weights.bin"], "--pretrained '/no/such/weights.bin' is invalid"),
    # a traceback from score_families, after every image was embedded (hostile tester, 2026-12-03)
    (["clean", "--workdir", "w", "--detector", "os:system"], "--detector 'os:system' failed on a family of 5 "
                                                              "embeddings (TypeError: system() takes at most 1"),
    (["clean", "--workdir", "w", "--pretrained", "none"], "manifest.parquet does not exist. Run `speciesfam catalog"),
    # a mistyped run folder: catalog comes first (it said "run clean first", which would fail in turn)
    (["tune", "probe", "--workdir", "w"], "holds no catalogued run (manifest.parquet not found). Run `speciesfam "
                                          "catalog SOURCE --workdir"),
    (["export", "--workdir", "w"], "does not exist; give the run folder of `speciesfam catalog`"),
    (["report", "--workdir", "w"], "does not exist; give a run folder"),
    (["predict", "b", "a.jpg", "--top-k", "0"], "--top-k 0: give 1 or more"),
    # the current folder, or '/manifest.parquet' (hostile tester)
    (["catalog", "imgs", "--workdir", ""], "--workdir '': give a path"),
    (["evaluate", "b", "--manifest", " "], "--manifest ' ': give a path"),
    (["catalog", "", "--workdir", "w"], "SOURCE '': give a path"),  # the current folder was catalogued
    (["predict", "b", "a.jpg", "--num-actors", "none"], "b does not exist: give a bundle folder"),  # none: parsed
    (["evaluate", "b", "--manifest", "semi.csv"], "(its header is separated by ';': save it comma-separated)"),
    (["predict", "b", "a.jpg", ""], "an empty image path was given"),
    # a traceback from range() or Ray Data for a folder; silently ignored for files (hostile tester)
    (["predict", "b", "a.jpg", "--batch-size", "0"], "--batch-size 0 is invalid: expected an integer >= 1"),
    (["predict", "b", "w", "--batch-size", "-3"], "--batch-size -3 is invalid: expected an integer >= 1"),
    (["predict", "b", "a.jpg", "--num-actors", "0"], "--num-actors 0 is invalid: expected an integer >= 1"),
])
def test_impossible_values_fail_in_one_line_before_any_work(argv, message, capsys, tmp_path):
    run = tmp_path / "w"
    (tmp_path / "semi.csv").write_text("path;label\na.jpg;Felidae\n")  # a spreadsheet's ';'-separated export
    argv = [str(run) if a == "w" else str(tmp_path / a) if a == "semi.csv" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists(), "a refused command must not create the run folder (logs, report)"


def test_a_programming_error_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(args):
        return {}["label"]

    monkeypatch.setitem(cli.COMMANDS, "export", broken)
    with pytest.raises(KeyError, match="label"):
        cli.main(["export", "--workdir", str(tmp_path / "w")])


def test_every_stage_that_ran_keeps_its_log(tmp_path, capsys):
    """RUN/logs/STAGE.log: a stage that logged nothing left no file, though the README promised each stage's."""
    from speciesfam.demo import demo_images

    assert cli.main(["catalog", demo_images(), "--workdir", str(tmp_path / "run")]) == 0
    log = (tmp_path / "run" / "logs" / "catalog.log").read_text()
    assert re.search(r"INFO speciesfam: catalog ended after [\d.]+ s: ", log), log


@pytest.mark.parametrize("argv,message", [(["tune", "probe", "--workdir", "w", "--extra", "{bad"], "--extra"),
                                          (["catalog", "x", "--workdir", "w", "--bogus"], "--bogus")])
def test_a_bad_flag_is_one_line_not_the_usage_block(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


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
])
def test_extra_refuses_names_nothing_reads_and_values_of_the_wrong_kind_before_any_work(extra, message, tmp_path,
                                                                                       capsys):
    """A typo in --extra used to run every trial with the key ignored (exit 0)."""
    assert cli.main(["tune", "transfer", "--workdir", str(tmp_path), "--extra", extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "tune").exists()


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
        "from ray import tune\n\ndef get_search_space(smoke):\n    return {'model': 'my_models:wide', "
        "'lr': tune.loguniform(1e-4, 1e-2), **({'width': 2} if smoke else {})}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_space(TuneConfig(space="wide_space", extra={"width": 4}, smoke_test=True))["width"] == 4
    assert load_space(TuneConfig(space="wide_space", extra={"width": 4}))["width"] == 4  # named by the smoke variant


def test_a_librarys_bare_logging_call_does_not_turn_every_later_warning_into_console_noise(tmp_path):
    """open_clip calls ``logging.info()`` at module level, which ran ``logging.basicConfig()``: `evaluate` then
    printed matplotlib's layout warnings as 'WARNING:py.warnings:...'. Outside a stage a warning still reaches
    stderr once, as Python prints it, but not TensorFlow's (evaluating two bundles in one process printed its
    retracing advice); inside one it goes to RUN/logs/STAGE.log only."""
    stages.finish(str(tmp_path), "catalog")  # a run folder: a stage's log goes into no other
    script = textwrap.dedent(f"""
        import logging, warnings
        from speciesfam import console
        console.setup(False)
        logging.info("a library's chatter")
        warnings.warn("outside a stage")
        logging.getLogger("tensorflow").warning("5 out of the last 5 calls triggered tf.function retracing")
        with console.stage_logs({str(tmp_path)!r}, "evaluate"):
            warnings.warn("inside a stage")
        print("done")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "done\n", out.stderr
    assert "UserWarning: outside a stage" in out.stderr and out.stderr.count("outside a stage") == 1, out.stderr
    assert "WARNING:" not in out.stderr and "inside a stage" not in out.stderr and "chatter" not in out.stderr
    assert "retracing" not in out.stderr
    assert "UserWarning: inside a stage" in (tmp_path / "logs" / "evaluate.log").read_text()


def test_a_pipelines_cpp_lines_go_to_the_log_and_pythons_own_stderr_stays(tmp_path):
    """Ray's core worker wrote an 'E ... core_worker.cc' line to the console for every Ray Data actor pool
    (clean, batch predict); a progress bar written through sys.stderr must still show."""
    stages.finish(str(tmp_path), "catalog")  # a run folder: a stage's log goes into no other
    script = textwrap.dedent(f"""
        import os, sys
        from speciesfam import console
        console.setup(False)
        with console.stage_logs({str(tmp_path)!r}, "clean"):
            with console.quiet_stderr("the embedding pipeline", python_too=False):
                os.write(2, b"[E core_worker.cc:2465] Actor ... max_restarts > 0\\n")
                sys.stderr.write("progress 10/10\\n")
            os.write(2, b"after\\n")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "progress 10/10\nafter\n", out.stderr
    assert "core_worker.cc:2465" in (tmp_path / "logs" / "clean.log").read_text()


def test_an_integer_ranges_upper_bound_is_checked_as_tune_draws_it():
    """tune.randint(0, 2) draws 0 or 1, yet weight_decay's limit [0, 1] refused it (hostile tester); qrandint
    draws its upper bound."""
    from ray import tune

    from speciesfam.tune.space import check_space

    check_space({"weight_decay": tune.randint(0, 2), "head_units": tune.lograndint(1, 64)}, "s", "probe", {})
    with pytest.raises(ConfigError, match=r"weight_decay=2 is outside \[0, 1\]"):
        check_space({"weight_decay": tune.qrandint(0, 2, 1)}, "s", "probe", {})


def test_a_value_a_function_draws_is_checked_when_the_trial_starts():
    """tune.sample_from(lambda spec: 1000.0) passed every check before the search (its values exist only once
    drawn) and trained to losses of 1e11 (hostile tester): the trial fails first, naming the value, a probe trial
    before any epoch and a CNN trial before its Ray Train workers start."""
    from speciesfam.config import TuneConfig
    from speciesfam.train.probe import probe_trial
    from speciesfam.tune.search import _trial

    with pytest.raises(ConfigError, match=r"^this trial's lr=1000.0 is outside \(0, 10\], the values lr can take"):
        probe_trial({"lr": 1000.0, "head_units": 8}, fixed={}, data={})
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
    assert load_space(TuneConfig(space="cnn_space", extra={"model": "my_models:build"}))["width"] == 3
    with pytest.raises(ConfigError, match="lr=-1 is outside"):  # limits hold for a user's own model too
        load_space(TuneConfig(space="cnn_space", extra={"model": "my_models:build", "lr": -1}))


def test_predict_takes_image_paths_after_a_flag(capsys):
    """`predict B --top-k 1 a.jpg` said 'unrecognized arguments: a.jpg': argparse ends a positional list at the
    first flag. Other commands still refuse stray words, and an unknown flag is still named."""
    for argv in (["predict", "B", "--top-k", "1", "a.jpg", "b.jpg"], ["predict", "B", "a.jpg", "--top-k", "1", "b.jpg"],
                 ["predict", "--top-k", "1", "B", "a.jpg", "b.jpg"]):
        args = cli.parse(argv)
        assert (args.bundle, args.paths, args.top_k) == ("B", ["a.jpg", "b.jpg"], 1), argv
    for argv, stray in ((["predict", "B", "a.jpg", "--nope"], "--nope"),
                        (["catalog", "src", "--workdir", "w", "more"], "more")):
        with pytest.raises(SystemExit) as exit_:
            cli.parse(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"unrecognized arguments: {stray}" in err, err
        assert err.startswith(f"speciesfam {argv[0]}: error: ") and err.endswith(f"(see speciesfam {argv[0]} --help)\n")


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


def test_a_path_the_machine_refuses_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    """A run folder or --out under a regular file (or an s3:// bucket that does not exist) ended in an OSError
    traceback, often after the work was done (hostile tester)."""
    from PIL import Image

    for k in range(3):
        (tmp_path / "img" / "A").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (k, 0, 0)).save(tmp_path / "img" / "A" / f"{k}.png")
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr("speciesfam.data.catalog.build_manifest",  # a large collection took minutes to read first
                        lambda *a, **k: pytest.fail("catalog read the images before trying its run folder"))
    assert cli.main(["catalog", str(tmp_path / "img"), "--workdir", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"speciesfam catalog: error: --workdir {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is not a "
                   "folder; give a folder for the run (it is created)"]
    # the storage's own answer, as google-cloud gives it for an unreachable gs:// source (1,000+ characters on one
    # line, an error_info dump at its end): a short line, the cause kept (hostile tester)
    gcs = ("google::cloud::Status(UNAVAILABLE: Retry policy exhausted, with a last message of Could not create a "
           "OAuth2 access token" + " (details)" * 60 + " Could not resolve hostname error_info={reason=, domain=, "
           "metadata={gcloud-cpp.retry.function=GetObjectMetadata}})")

    def unreachable(*a, **k):
        raise OSError(gcs)

    monkeypatch.setattr("speciesfam.data.catalog.build_manifest", unreachable)
    assert cli.main(["catalog", str(tmp_path / "img"), "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) < 500 and "error_info" not in err[0], err
    assert err[0].startswith("speciesfam catalog: error: OSError: google::cloud::Status(UNAVAILABLE: Retry policy ")
    assert "Could not resolve hostname" in err[0] and "for s3:// or gs://, the bucket, the credentials" in err[0]
    # predict: paths after a flag and after `--` (a file name starting with '-')
    assert cli.parse(["predict", "B", "--top-k", "1", "a.jpg", "--", "-x.jpg"]).paths == ["a.jpg", "-x.jpg"]
    with pytest.raises(SystemExit):
        cli.parse(["predict", "B", "-x.jpg"])
    assert "unrecognized arguments: -x.jpg (a file whose name starts with '-' goes after '--'" in capsys.readouterr().err
