"""One source of truth: config dataclasses drive the CLI, the jobs and the demo (plug-ins: test_registry.py);
user errors are one line (exit 2), programming errors keep their traceback."""

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speciesfam import cli, stages
from speciesfam.cli_args import build_parser
from speciesfam.config import CatalogConfig, CleanConfig, DemoConfig, TuneConfig
from speciesfam.errors import ConfigError
from speciesfam.flags import config_fields

ROOT = Path(__file__).resolve().parents[1]


def _flag(f):
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


@pytest.mark.parametrize("command,classes", [("catalog", [CatalogConfig]), ("clean", [CleanConfig]),
                                             ("tune", [TuneConfig]), ("demo", [DemoConfig])])
def test_every_config_field_is_a_flag_with_its_default(command, classes):
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
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
        cli.tune_config(build_parser().parse_args(["tune", *argv, "--workdir", "w"]))
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
    # the tune jobs took --address; export_best.py refused it, `speciesfam clean` lacked it (round 53)
    export = subprocess.run([sys.executable, str(ROOT / "jobs" / "export_best.py"), "--workdir", "nowhere",
                             "--address", "127.0.0.1:1"], capture_output=True, text=True)
    assert export.returncode == 2 and export.stderr.startswith("export_best.py: error: --workdir nowhere does not "
                                                               "exist"), export.stderr
    assert cli.main(["clean", "--workdir", "nowhere", "--address", "127.0.0.1:1"]) == 2


@pytest.mark.parametrize("flags,error", [
    (["--outlier-z", "-1"], "--outlier-z -1.0 is invalid"),
    (["--pretrained", "no-such-tag"], "could not load open_clip model 'ViT-S-32' with pretrained='no-such-tag'"),
    # a stage's own refusal named `speciesfam catalog`, which the user never typed (hostile tester)
    (["--data", "/nonexistent/speciesfam-images"], "/nonexistent/speciesfam-images does not exist"),
    (["RAY_ADDRESS=127.0.0.1:1"], "RAY_ADDRESS 127.0.0.1:1: no Ray cluster answers there"),  # round 43
    (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster answers there")])  # only RAY_ADDRESS (53)
def test_the_clean_job_refuses_a_bad_clean_flag_before_it_catalogs(tmp_path, flags, error):
    """It catalogued the whole collection (12k images on a cluster) before the clean flag (or the CLIP weights it
    names, or the cluster's address) was checked."""
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **dict(f.split("=", 1) for f in flags
                                                                             if "=" in f)}
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / "clean_data.py"), "--smoke-test", "--workdir",
                          str(tmp_path / "run"), *[f for f in flags if "=" not in f]], capture_output=True, text=True,
                         env=env)
    assert bad.returncode == 2 and bad.stderr.startswith(f"clean_data.py: error: {error}"), bad.stderr
    assert not (tmp_path / "run").exists() and "catalog" not in bad.stdout


def test_advice_quotes_a_run_folder_with_spaces(tmp_path, capsys):
    """'Run `speciesfam clean --workdir ../runs/my run é` first' could not be pasted into a shell (round 32)."""
    import shlex

    run = tmp_path / "my run é"
    assert cli.main(["tune", "probe", "--workdir", str(run)]) == 2
    assert f"`speciesfam clean --workdir {shlex.quote(str(run))}` first" in capsys.readouterr().err


def test_a_relative_model_folder_or_weights_file_is_recorded_absolute(tmp_path, monkeypatch):
    """'--model local-dir:models/real' was recorded as written: predict from another folder loaded whatever
    'models/real' held there (other weights: wrong predictions, exit 0; hostile tester round 32)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"PK\x03\x04")
    args = build_parser().parse_args(["clean", "--workdir", "w", "--model", "local-dir:models/real"])
    assert cli.clean_config(args).model == f"local-dir:{tmp_path / 'models' / 'real'}"
    # and recorded with no pretrained tag, which it does not read (the record said laion2b_s34b_b79k)
    assert cli.clean_config(args).pretrained is None
    args = build_parser().parse_args(["clean", "--workdir", "w", "--pretrained", "w.bin"])
    assert cli.clean_config(args).pretrained == str(tmp_path / "w.bin")
    assert cli.clean_config(build_parser().parse_args(["clean", "--workdir", "w"])) == CleanConfig()  # tags
    # file URIs, as every other path flag takes them ('local-dir:file:///x' became '<cwd>/file:/x')
    (tmp_path / "my models").mkdir()
    uri = (tmp_path / "my models").as_uri()  # '%20' for the space
    args = build_parser().parse_args(["clean", "--workdir", "w", "--model", f"local-dir:{uri}"])
    assert cli.clean_config(args).model == f"local-dir:{tmp_path / 'my models'}"
    args = build_parser().parse_args(["clean", "--workdir", "w", "--pretrained", (tmp_path / "w.bin").as_uri()])
    assert cli.clean_config(args).pretrained == str(tmp_path / "w.bin")
    # --pretrained beside a model of its own weights was recorded and reproduced, and read by nothing (round 37)
    for given in ("none", "w.bin"):
        args = build_parser().parse_args(["clean", "--workdir", "w", "--model", "local-dir:models/real",
                                              "--pretrained", given])
        with pytest.raises(ConfigError, match=f"--pretrained {given} is not read with --model local-dir:"):
            cli.clean_config(args)
    from speciesfam.reproduce import command

    assert "--pretrained" not in command("clean", {"config": {"model": "local-dir:/m", "pretrained": None}})
    # 'LOCAL-DIR:/m' was called no open_clip architecture, with a list of forms that left out local-dir: (round 38)
    with pytest.raises(ConfigError, match="model='LOCAL-DIR:/m' is not read as a local-dir model: the prefix is lower "
                                          "case, at the start; give local-dir:/m"):
        CleanConfig(model="LOCAL-DIR:/m").validate()


def test_flags_overlay_only_what_was_given():
    args = build_parser().parse_args(["tune", "probe", "--workdir", "w", "--seed", "7", "--reduction-factor", "3"])
    assert cli.tune_config(args) == TuneConfig(kind="probe", seed=7, reduction_factor=3)
    smoke = build_parser().parse_args(["tune", "scratch", "--workdir", "w", "--smoke-test", "--max-epochs", "4"])
    assert cli.tune_config(smoke) == TuneConfig.smoke(kind="scratch", max_epochs=4)
    none = build_parser().parse_args(["tune", "transfer", "--workdir", "w", "--weights", "none",
                                          "--extra", '{"batch_size": 8}'])
    assert cli.tune_config(none).weights is None and cli.tune_config(none).extra == {"batch_size": 8}
    clean = build_parser().parse_args(["clean", "--workdir", "w", "--smoke-test", "--batch-size", "8"])
    assert cli.clean_config(clean) == CleanConfig.smoke(batch_size=8)  # README: --smoke-test everywhere
    offline = cli.clean_config(build_parser().parse_args(["clean", "--workdir", "w", "--pretrained", "none"]))
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
    (["clean", "--workdir", "w", "--pretrained", "none"], "manifest.parquet does not exist. Run `speciesfam catalog SOURCE "
                                                                "--workdir {run}` first"),  # it said 'RUN'
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
    (["evaluate", "b", "--manifest", "semi.csv"], "(its header is separated by ';': save it comma-separated, or make its first line sep=;)"),
    (["predict", "b", "a.jpg", ""], "an empty image path was given"),
    (["catalog", "imgs", "--workdir", "w", "--val-fraction", "inf"], "--val-fraction inf is invalid"),
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
    assert message.replace("{run}", str(run)) in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists(), "a refused command must not create the run folder (logs, report)"


def test_a_number_too_large_for_a_float_is_refused_as_typed(capsys, tmp_path):
    """'--val-fraction 1e400' was refused as '--val-fraction inf is invalid': not what was typed (hostile tester)."""
    with pytest.raises(SystemExit) as ended:
        cli.main(["catalog", "imgs", "--workdir", str(tmp_path / "w"), "--val-fraction", "1e400"])
    assert ended.value.code == 2
    assert "argument --val-fraction: '1e400' is not a number (too large: it reads as infinity)" in \
        capsys.readouterr().err


def test_a_programming_error_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(args):
        return {}["label"]

    monkeypatch.setitem(cli.COMMANDS, "export", broken)
    with pytest.raises(KeyError, match="label"):
        cli.main(["export", "--workdir", str(tmp_path / "w")])


def test_an_error_raised_while_a_ctrl_c_unwinds_is_an_interrupt(monkeypatch, tmp_path, capsys):
    """Ctrl-C in clean once printed a 60-line traceback ending 'RuntimeError: release unlocked lock': the
    KeyboardInterrupt reached a lock inside Ray Data's iterator, which failed while it unwound (hostile tester)."""
    import threading

    def interrupted_in_a_lock(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            threading.Lock().release()  # what the unwinding iterator did

    monkeypatch.setitem(cli.COMMANDS, "export", interrupted_in_a_lock)
    assert cli.main(["export", "--workdir", str(tmp_path / "w")]) == 130
    assert capsys.readouterr().err == "speciesfam export: interrupted\n"


def test_every_stage_that_ran_keeps_its_log(tmp_path, capsys):
    """RUN/logs/STAGE.log: a stage that logged nothing left no file, though the README promised each stage's."""
    from speciesfam.demo import demo_images

    assert cli.main(["catalog", demo_images(), "--workdir", str(tmp_path / "run")]) == 0
    log = (tmp_path / "run" / "logs" / "catalog.log").read_text()
    assert re.search(r"INFO speciesfam: catalog ended after [\d.]+ s \(ok\): ", log), log
    # what the console said, in the log too (a batch job's log held none of its lines: hostile tester round 28)
    said = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert said and said[-1].startswith("report: ")
    for line in said:
        assert f"INFO speciesfam.console: {line}\n" in log, (line, log)
    # a stage that failed says how in its log (it read 'ended after 2.8 s' alike for a success and a refusal)
    assert cli.main(["export", "--workdir", str(tmp_path / "run")]) == 2
    log = (tmp_path / "run" / "logs" / "export.log").read_text()
    assert re.search(r"export ended after [\d.]+ s \(StageOrderError: .*speciesfam tune KIND", log), log
    # the command as it can be pasted again (it was sys.argv joined with spaces, unquoted)
    assert cli.main(["catalog", demo_images(), "--workdir", str(tmp_path / "my run")]) == 0
    typed = f"speciesfam catalog {demo_images()} --workdir '{tmp_path / 'my run'}'"
    assert (tmp_path / "my run" / "logs" / "catalog.log").read_text().endswith(f" s (ok): {typed}\n")


@pytest.mark.parametrize("argv,message", [(["tune", "probe", "--workdir", "w", "--extra", "{bad"], "--extra"),
                                          (["catalog", "x", "--workdir", "w", "--bogus"], "--bogus"),
                                          # JSON kept the last, unsaid (hostile tester round 31)
                                          (["tune", "probe", "--workdir", "w", "--extra", '{"lr": 0.1, "lr": 0.2}'],
                                           "('lr' given more than once; keep one)")])
def test_a_bad_flag_is_one_line_not_the_usage_block(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_librarys_bare_logging_call_does_not_turn_every_later_warning_into_console_noise(tmp_path):
    """open_clip calls ``logging.info()`` at module level, which ran ``logging.basicConfig()``: `evaluate` then
    printed matplotlib's layout warnings as 'WARNING:py.warnings:...'. Outside a stage a warning still reaches
    stderr once, as Python prints it, but not TensorFlow's (evaluating two bundles in one process printed its
    retracing advice); inside one it goes to RUN/logs/STAGE.log only."""
    stages.finish(str(tmp_path), "catalog")  # a run folder: a stage's log goes into no other
    script = textwrap.dedent(f"""
        import logging, warnings
        from speciesfam import console, stage_log
        console.setup(False)
        logging.info("a library's chatter")
        warnings.warn("outside a stage")
        logging.getLogger("tensorflow").warning("5 out of the last 5 calls triggered tf.function retracing")
        with stage_log.stage_logs({str(tmp_path)!r}, "evaluate"):
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
        from speciesfam import console, stage_log
        console.setup(False)
        with stage_log.stage_logs({str(tmp_path)!r}, "clean"):
            with console.quiet_stderr("the embedding pipeline", python_too=False):
                os.write(2, b"[E core_worker.cc:2465] Actor ... max_restarts > 0\\n")
                sys.stderr.write("progress 10/10\\n")
            os.write(2, b"after\\n")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "progress 10/10\nafter\n", out.stderr
    assert "core_worker.cc:2465" in (tmp_path / "logs" / "clean.log").read_text()


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


def test_a_weights_file_that_is_not_hdf5_is_refused_before_any_work(tmp_path, capsys):
    """`--weights bad.weights.h5` (not HDF5) started Ray and every trial, each failing with 'Unable to synchronously
    open file (file signature not found)', which named no file (hostile tester); a missing file was refused."""
    import h5py

    bad, good = tmp_path / "bad.weights.h5", tmp_path / "backbone.h5"
    bad.write_bytes(b"garbage")
    with h5py.File(good, "w") as f:
        f["w"] = [1.0]
    assert cli.main(["tune", "transfer", "--workdir", str(tmp_path / "run"), "--weights", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"--weights '{bad}' is invalid: expected a Keras weights file (HDF5: .h5 / .weights.h5); this file is " \
           "not HDF5" in err and len(err.strip().splitlines()) == 1, err
    TuneConfig(kind="transfer", weights=str(good)).validate()
