"""Misuse of the search and ship commands found by a hostile new user: each is refused in one line (exit 2)
before any work, and nothing is written where it should not be."""

from __future__ import annotations

import os

import pytest

from speciesfam import cli, storage
from speciesfam.config import TuneConfig
from speciesfam.errors import ConfigError, SourceError, SpeciesfamError


@pytest.mark.parametrize("overrides, message", [
    ({"name": "x" * 201}, "at most 200 bytes"),
    ({"name": "a\nb"}, "without '/', '\\' or control characters"),  # a folder named so (round 52)
    ({"time_budget_s": float("inf")}, "time_budget_s=inf is invalid: expected seconds > 0"),  # JSON's Infinity
    ({"image_size": 100_000}, "image_size=100000 is invalid: expected an integer in [32, 1024]"),
    ({"wandb_project": "bad/proj name"}, "a W&B project name without /"),
])


def test_tune_settings_that_failed_after_ray_started_are_refused(overrides, message):
    with pytest.raises(ConfigError) as err:
        TuneConfig(**overrides).validate()
    assert message in str(err.value)


def test_a_searcher_or_scheduler_plugin_that_builds_something_else_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_algos.py").write_text("def not_one(*args, **kwargs):\n    return 42\n"
                                          "def fails(*args, **kwargs):\n    raise KeyError('sched')\n"
                                          "def two_args(space, seed):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for flag in ("--searcher", "--scheduler"):
        assert cli.main(["tune", "probe", "--workdir", str(tmp_path), "--smoke-test", flag, "my_algos:not_one"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "my_algos:not_one returned an object of type int" in err, err
        # one that raises when called: a traceback, exit 1 (hostile tester)
        assert cli.main(["tune", "probe", "--workdir", str(tmp_path), "--smoke-test", flag, "my_algos:fails"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{flag} my_algos:fails failed when built for this search: KeyError: " \
            "'sched'" in err, err
    # a searcher written as (space, seed): it passed here, then failed in the Tuner with a traceback (round 31)
    assert cli.main(["tune", "probe", "--workdir", str(tmp_path), "--smoke-test", "--searcher", "my_algos:two_args"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unexpected keyword argument 'points' (a searcher function is called as " \
        "(space, seed, points=None)" in err, err
    assert not (tmp_path / "tune").exists()
    from speciesfam.tune.checks import check_plugins
    from speciesfam.tune.space import load_space

    for searcher in ("random", "optuna", "grid"):
        cfg = TuneConfig(kind="probe", searcher=searcher, scheduler="fifo", smoke_test=True)
        check_plugins(cfg, load_space(cfg))


def test_report_refuses_a_folder_that_is_not_a_run_folder(collection, capsys):
    root, _ = collection
    assert cli.main(["report", "--workdir", str(root)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert not (root / "report.html").exists()  # the next catalog would have read it as an unusable file


def test_a_damaged_table_is_named_in_one_line(tmp_path):
    (tmp_path / "m.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError) as err:
        storage.read_table(str(tmp_path / "m.parquet"))
    assert len(str(err.value).splitlines()) == 1 and "cannot be read as a Parquet table" in str(err.value)


def test_imagenet_weights_that_cannot_be_downloaded_or_found_are_refused_in_seconds(tmp_path, monkeypatch):
    """Offline, every transfer trial failed after minutes with Keras's URL fetch error."""
    from speciesfam.tune.checks import check_imagenet_reachable

    from ray import tune

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    space = {"model": tune.choice(["mobilenetv3small", "efficientnetv2s"])}
    with pytest.raises(ConfigError, match=r"--weights imagenet: .* cannot be reached from here .* holds none for "
                                          r"efficientnetv2s, mobilenetv3small; give --weights none"):
        check_imagenet_reachable(space, "weights.invalid")  # .invalid never resolves (RFC 2606)
    # any file in the cache passed (hostile tester round 30: a README there, then every trial failed offline)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "README.txt").write_text("hi")
    def weights(name: str, size: int = 4 << 20) -> None:
        with open(tmp_path / "models" / name, "wb") as f:
            f.truncate(size)

    weights("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
    # a stub of bytes, or the backbone with its classifier (not what is built), passed too (round 31)
    weights("efficientnetv2-s_notop.h5", 6)
    weights("efficientnetv2-s.h5")
    with pytest.raises(ConfigError, match=r"holds none for efficientnetv2s; "):
        check_imagenet_reachable(space, "weights.invalid")
    weights("efficientnetv2-s_notop.h5")  # Keras' own file names
    check_imagenet_reachable(space, "weights.invalid")  # downloaded before: Keras reads the cache
    # another model's file whose name holds the backbone's passed (round 32)
    weights("weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5")
    (tmp_path / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5").unlink()
    with pytest.raises(ConfigError, match=r"holds none for mobilenetv3small; "):
        check_imagenet_reachable(space, "weights.invalid")
    check_imagenet_reachable({"model": "scratch_sequential"}, "weights.invalid")  # no backbone: nothing to fetch


@pytest.mark.slow  # builds every backbone (~1 min)
def test_the_imagenet_file_names_checked_are_the_ones_keras_loads(monkeypatch):
    """check_imagenet_reachable looks for exactly transfer.IMAGENET_FILES: each is the name keras.applications asks
    its cache for when the backbone is built as speciesfam builds it (include_top=False)."""
    import keras
    from keras.src.utils import file_utils

    from speciesfam.models.transfer import BACKBONES, IMAGENET_FILES

    asked = []

    def get_file(fname=None, origin=None, *args, **kwargs):
        asked.append(fname)
        raise LookupError(fname)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    assert set(IMAGENET_FILES) == set(BACKBONES)
    for name, (cls_name, _, _) in BACKBONES.items():
        with pytest.raises(LookupError):
            getattr(keras.applications, cls_name)(include_top=False, weights="imagenet", input_shape=(96, 96, 3))
        assert asked[-1] == IMAGENET_FILES[name], (name, asked[-1])
        keras.backend.clear_session()


@pytest.mark.parametrize("workdir", ["afile", "afile/"])  # under a file: test_config_cli
def test_a_stage_refuses_a_run_folder_at_or_under_a_file_naming_it(workdir, tmp_path, capsys):
    """`--workdir afile/` got past the file check and the error named afile/logs (hostile tester)."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "imgs").mkdir()
    # the demo too: it said "FileExistsError: [Errno 17] File exists" (hostile tester)
    for argv in (["catalog", str(tmp_path / "imgs")], ["demo"]):
        assert cli.main([*argv, "--workdir", str(tmp_path / workdir)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"--workdir {tmp_path / workdir}: {tmp_path / 'afile'} is not a folder; give a folder for "
                            "the run (it is created)") and len(err.splitlines()) == 1, err
        assert (tmp_path / "afile").read_text() == "x"


def test_export_refuses_an_out_folder_under_a_file_before_any_work(tmp_path):
    """`export --out afile/x` failed with a FileExistsError once the bundle had been written (hostile tester)."""
    from speciesfam.bundle_placement import check_out

    (tmp_path / "afile").write_text("x")
    with pytest.raises(SpeciesfamError, match=f"^--out {tmp_path / 'afile' / 'x'}: {tmp_path / 'afile'} is not a "
                                              "folder; give a folder for the bundle$"):
        check_out(str(tmp_path / "afile" / "x"), str(tmp_path / "run"))
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_run_folder_where_no_folder_can_be_made_is_refused_naming_the_flag(tmp_path, capsys):
    """As root, os.access says /proc is writable: catalog ended in pyarrow's error, not naming --workdir
    (hostile tester). The check now tries to make a folder there, and leaves none."""
    (tmp_path / "imgs").mkdir()
    for workdir in ("/proc/speciesfam-run", "/proc"):  # to be made there, or there already (5 tracebacks)
        assert cli.main(["catalog", str(tmp_path / "imgs"), "--workdir", workdir]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"speciesfam catalog: error: --workdir {workdir}: cannot create a folder in /proc (") \
            and len(err.splitlines()) == 1, err
    storage.check_creatable(str(tmp_path / "new" / "run"))  # a writable place passes, and is left as it was
    assert os.listdir(tmp_path) == ["imgs"]


def test_export_refuses_an_out_folder_inside_another_run_folder(tmp_path):
    """`export --workdir runs/m1 --out runs/f2/bundle` replaced f2's bundle without a word; f2's report then
    showed m1's model (hostile tester)."""
    import pandas as pd

    from speciesfam import stages
    from speciesfam.bundle_placement import check_out

    for run in ("m1", "f2"):
        stages.finish(str(tmp_path / run), "catalog")  # catalog's record: what makes a run folder
    for out in (tmp_path / "f2" / "bundle", tmp_path / "f2" / "deep" / "x"):
        with pytest.raises(SpeciesfamError, match=f"^--out {out} is inside another run folder \\({tmp_path / 'f2'}\\); "
                                                  f".* \\(default: {tmp_path / 'm1' / 'bundle'}\\)$"):
            check_out(str(out), str(tmp_path / "m1"))
    check_out(str(tmp_path / "m1" / "bundle"), str(tmp_path / "m1"))  # its own run folder, or none, is fine
    check_out(str(tmp_path / "elsewhere" / "bundle"), str(tmp_path / "m1"))
    # a folder with the user's own manifest.parquet (paths and labels) is no run folder: a bundle may go there
    mine = tmp_path / "photos"
    mine.mkdir()
    pd.DataFrame({"path": ["a.jpg"], "label": ["Felidae"]}).to_parquet(mine / "manifest.parquet")
    check_out(str(mine / "bundle"), str(tmp_path / "m1"))


def test_export_refuses_an_out_folder_inside_the_image_folder_catalog_read(tmp_path):
    """The next catalog took the bundle's files for images: MODEL_CARD.md, head.keras, ... as unreadable rows of
    a family, and a new family for the bundle's folder; evaluate refused the same place (hostile tester)."""
    from speciesfam import stages
    from speciesfam.bundle_placement import check_out

    (tmp_path / "imgs" / "Felidae").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "imgs")
    (tmp_path / "ext" / "Canidae").mkdir(parents=True)  # a family folder linked from elsewhere: catalog reads it
    (tmp_path / "imgs" / "Canidae").symlink_to(tmp_path / "ext" / "Canidae")
    stages.finish(str(tmp_path / "run"), "catalog", config={"source": str(tmp_path / "imgs")})
    for out in (tmp_path / "imgs" / "Felidae" / "bundle", tmp_path / "link" / "b", f"file://{tmp_path}/imgs/b2",
                tmp_path / "imgs" / "Canidae" / "b3", tmp_path / "ext" / "Canidae" / "sub" / "b4"):
        with pytest.raises(SpeciesfamError, match=f"^--out {out} is inside the image folder {tmp_path / 'imgs'} "
                                                  "that catalog read: the next catalog would take the bundle's files"):
            check_out(str(out), str(tmp_path / "run"))
    check_out(str(tmp_path / "imgs-bundle"), str(tmp_path / "run"))  # beside it: fine
    check_out(str(tmp_path / "ext" / "b5"), str(tmp_path / "run"))  # beside the linked family: fine


def test_export_refuses_a_mount_point_before_any_work(tmp_path, monkeypatch):
    """`export --out MOUNT` did the whole export, then failed with EBUSY on the rename that swaps the bundle in
    (hostile tester). A real mount needs privileges a test does not have: os.path.ismount says which it is."""
    from speciesfam import bundle_placement

    mount = tmp_path / "usb"
    mount.mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == str(mount))
    with pytest.raises(SpeciesfamError, match=f"^--out {mount} is a mount point, which cannot be renamed.* give a "
                                              f"folder inside it, e.g. {mount / 'bundle'}"):
        bundle_placement.check_out(str(mount), str(tmp_path / "run"))
    bundle_placement.check_out(str(mount / "bundle"), str(tmp_path / "run"))


def test_a_second_catalog_or_clean_on_a_run_folder_waits_for_the_first(tmp_path, capsys):
    """Two cleans started at once on one folder both wrote its manifest, embeddings and records; nothing stopped
    either (hostile tester round 36)."""
    from speciesfam.data.synthetic import make_collection
    from speciesfam.locks import stage_lock

    make_collection(tmp_path / "images", counts={"Felidae": 4, "Ranidae": 4}, size=32, seed=0)
    run = tmp_path / "run"
    held = stage_lock(str(run), "clean")  # as a clean running in another process holds it
    try:
        for command in (["catalog", str(tmp_path / "images")], ["clean"]):
            assert cli.main([*command, "--workdir", str(run)]) == 2
            assert f"--workdir {run}: clean (pid {os.getpid()}) is running there now; wait for it to end" in \
                capsys.readouterr().err
        assert not run.exists()  # refused before its logs folder was made
    finally:
        held.close()
    assert cli.main(["catalog", str(tmp_path / "images"), "--workdir", str(run)]) == 0


@pytest.mark.parametrize("entry", ["gallery", "eval_test", "stages/export.json", "logs/ray/ray-data", "bundle"])
def test_every_stage_refuses_a_run_folder_whose_entries_are_links(tmp_path, capsys, entry):
    """Only catalog refused them: clean deleted and wrote gallery PNGs, evaluate deleted reports, export rewrote a
    record and replaced a bundle in the folders the links named (hostile tester round 70)."""
    from speciesfam import stages

    run, victim = tmp_path / "run", tmp_path / "victim"
    stages.finish(str(run), "catalog")
    victim.mkdir()
    (victim / "mine.png").write_bytes(b"theirs")
    (run / entry).parent.mkdir(parents=True, exist_ok=True)
    (run / entry).symlink_to(victim)
    for argv in (["report", "--workdir", str(run)], ["export", "--workdir", str(run)],
                 ["clean", "--workdir", str(run), "--smoke-test"]):
        assert cli.main(argv) == 2
        assert f"'{entry}' is a link ({entry} -> {victim}); a run writes its own files" in capsys.readouterr().err
    assert [p.name for p in victim.iterdir()] == ["mine.png"] and (victim / "mine.png").read_bytes() == b"theirs"
