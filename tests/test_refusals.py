"""Misuse of the search and ship commands found by a hostile new user: each is refused in one line (exit 2)
before any work, and nothing is written where it should not be."""

from __future__ import annotations

import os

import pandas as pd
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


def test_predict_refuses_an_empty_folder_and_an_output_that_is_not_its_own(tmp_path):
    from speciesfam.predict import input_rows
    from speciesfam.predict_resume import read_done

    (tmp_path / "empty").mkdir()
    with pytest.raises(SpeciesfamError, match="no files in it, nothing to predict"):
        input_rows(str(tmp_path / "empty"))
    for name, body in (("notes.txt", b"hello"), ("broken.parquet", b"PAR1 not really")):
        (tmp_path / name).write_bytes(body)
        with pytest.raises(SpeciesfamError, match=f"{name} exists and is not a speciesfam predictions file"):
            read_done(str(tmp_path / name))


def test_predict_of_a_folder_refuses_a_format_it_would_ignore(tmp_path, capsys):
    """'predict BUNDLE photos/ --format csv' wrote predictions.parquet and said nothing of the CSV asked for."""
    (tmp_path / "photos").mkdir()
    assert cli.main(["predict", str(tmp_path / "bundle"), str(tmp_path / "photos"), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "--format csv is how image files are printed here; a folder or --manifest is written to a Parquet file" \
        in err and "leave --format out" in err, err
    assert not (tmp_path / "predictions.parquet").exists()


def test_predict_refuses_an_output_it_could_not_write_whole_before_any_work(tmp_path):
    """--out DIR/ was refused only after every row was predicted, and --out P.csv lost the top-k lists and read
    its own empty errors back as errors (hostile tester)."""
    from speciesfam.predict import check_out

    (tmp_path / "dir").mkdir()
    for out in (str(tmp_path / "dir"), str(tmp_path / "new") + "/"):
        with pytest.raises(SpeciesfamError, match=r"is a folder; give a file in it, e\.g\. --out .*predictions.parquet"):
            check_out(out)
    with pytest.raises(SpeciesfamError, match=r"written as Parquet .* --out .*p\.parquet"):
        check_out(str(tmp_path / "p.csv"))
    check_out(str(tmp_path / "p.parquet")), check_out(str(tmp_path / "P.PARQUET"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SpeciesfamError, match=f"^--out {tmp_path / 'afile' / 'p.parquet'}: {tmp_path / 'afile'} is not a folder; "
                                              "give a folder for the predictions$"):  # found after every row
        check_out(str(tmp_path / "afile" / "p.parquet"))
    with pytest.raises(SpeciesfamError, match="^--out /proc/p.parquet: cannot create a folder in /proc"):  # as root
        check_out("/proc/p.parquet")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"schema": "speciesfam-bundle"}')
    with pytest.raises(SpeciesfamError, match="is inside a bundle"):  # a later export there was refused
        check_out(str(tmp_path / "b" / "p.parquet"))
    with pytest.raises(SpeciesfamError, match="is inside a bundle"):  # a file:// URI is that folder too
        check_out(f"file://{tmp_path / 'b' / 'p.parquet'}")
    # inside the folder predicted: its next predict listed the predictions and their parts as files to predict
    (tmp_path / "imgs").mkdir()
    (tmp_path / "in").symlink_to(tmp_path / "imgs")
    for out, source in ((tmp_path / "imgs" / "p.parquet", tmp_path / "imgs"),
                        (tmp_path / "in" / "sub" / "p.parquet", tmp_path / "imgs"),  # through a link
                        (tmp_path / "imgs" / "p.parquet", f"file://{tmp_path / 'in'}/")):
        with pytest.raises(SpeciesfamError, match=rf"^--out {out} is inside the folder being predicted \(.*\): .* "
                                                  rf"e\.g\. --out {tmp_path}/predictions\.parquet$"):
            check_out(str(out), str(source))
    check_out(str(tmp_path / "imgs.parquet"), str(tmp_path / "imgs"))  # beside it, a name starting alike


def test_predict_rows_of_a_folder_keep_why_a_file_cannot_be_read(tmp_path):
    """A file whose name is not UTF-8 was given 'No such file or directory'; as a path given alone, it made
    predict's folder check raise UnicodeEncodeError (hostile tester)."""
    from speciesfam.predict import input_rows

    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(b"x")
    name = os.fsencode(str(folder)) + b"/caf\xe9.jpg"
    open(name, "wb").close()
    rows = input_rows(str(folder)).set_index("path")["error"]
    (odd,) = [p for p in rows.index if "caf" in p]  # shown with the byte escaped, as catalog shows it
    assert rows[str(folder / "ok.jpg")] == "" and rows[odd].startswith("file name is not valid UTF-8 (a byte of "
                                                                       "another encoding): rename it to UTF-8")
    assert not storage.is_dir(os.fsdecode(name)) and storage.is_dir(str(folder))


def test_a_path_that_is_not_utf8_is_refused_in_one_line_and_a_file_says_why(tmp_path, capsys):
    """A source folder or --workdir with a Latin-1 byte in its name: a traceback (UnicodeEncodeError in pyarrow,
    the lock file); an image file of such a name given to predict: 'cannot read file: 'utf-8' codec can't encode
    character ...' (hostile tester round 42)."""
    from speciesfam.data.images import DecodeError, read_rgb

    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/src\xe9")
    os.makedirs(os.path.join(odd, "Alpha"))
    for argv, shown in ((["catalog", odd, "--workdir", str(tmp_path / "run")], "SOURCE"),
                        (["catalog", str(tmp_path), "--workdir", odd + "-run"], "--workdir")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{shown} {tmp_path}/src\\xe9" in err and "is not valid UTF-8" in err, err
    assert not os.path.exists(odd + "-run")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(os.path.join(odd, "Alpha", "x.png"))
    with pytest.raises(DecodeError, match=r"^folder name src\\xe9 is not valid UTF-8 .*rename the folder"):
        read_rgb(os.path.join(odd, "Alpha", "x.png"))  # its folder is at fault, not the file (round 44)
    with pytest.raises(DecodeError, match=r"^file not found$"):  # as catalog says it (it printed the path, its
        read_rgb(os.path.join(odd, "Alpha", "gone.png"))  # byte as '\udce9': round 46; the row names the path)
    os.symlink(os.path.join(odd, "nowhere"), os.path.join(odd, "Alpha", "link.png"))
    with pytest.raises(DecodeError, match=r"^broken symbolic link"):
        read_rgb(os.path.join(odd, "Alpha", "link.png"))
    Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(str(tmp_path)) + b"/x\xe9.png"))
    with pytest.raises(DecodeError, match="^file name is not valid UTF-8"):
        read_rgb(os.fsdecode(os.fsencode(str(tmp_path)) + b"/x\xe9.png"))
    # a family folder of such a name holds files: catalog said it held none (its files' rows say why)
    src = tmp_path / "src2"
    for fam in ("Alpha", "Beta", os.fsdecode(b"Gam\xe9")):
        for i in range(3):
            os.makedirs(src / fam, exist_ok=True)
            Image.new("RGB", (8, 8), (i, len(fam), 9)).save(src / fam / f"{i}.png")
    assert cli.main(["catalog", str(src), "--workdir", str(tmp_path / "run2"), "--min-images", "3"]) == 0
    out = capsys.readouterr().out
    assert "holding no file" not in out and "6 ok, 3 unreadable" in out.replace("3 unreadable, 6 ok", "6 ok, 3 unreadable"), out
    # the folder is at fault, not the file (its files were told to rename themselves: round 44)
    reasons = set(pd.read_parquet(tmp_path / "run2" / "manifest.parquet").query("status == 'unreadable'")["reason"])
    assert reasons == {"folder name Gam\\xe9 is not valid UTF-8 (a byte of another encoding): rename the folder to "
                       "UTF-8, e.g. `convmv -f latin1 -t utf8 --notest -r FOLDER`"}, reasons


def test_hidden_and_system_files_in_a_predicted_folder_are_skipped_not_failed(tmp_path):
    """A folder copied from a Mac (.DS_Store) or Windows (Thumbs.db, desktop.ini) made every batch predict exit 1
    (hostile testers); catalog skips the same files; a file that cannot be read still fails predict."""
    from speciesfam.data.sources import read_folder
    from speciesfam.predict import failed, input_rows

    folder = tmp_path / "imgs"
    (folder / "Felidae").mkdir(parents=True)
    junk = [".DS_Store", "Felidae/Thumbs.db", "Felidae/DESKTOP.INI", "Felidae/ehthumbs.db"]
    for name in ["Felidae/ok.jpg", "Felidae/thumbs.db.jpg", *junk]:
        (folder / name).write_bytes(b"x")
    rows = input_rows(str(folder)).set_index("path")
    assert rows.loc[str(folder / ".DS_Store"), "error"].startswith("skipped: hidden")
    assert rows.loc[str(folder / "Felidae/Thumbs.db"), "error"] == (
        "skipped: system file (Windows' thumbnail cache), not an image")
    assert failed(rows).sum() == 0 and (rows["error"] != "").sum() == len(junk)
    catalogued = read_folder(str(folder)).set_index("path")
    assert catalogued["status"].fillna("").to_dict() == {
        str(folder / p): "skipped" if p in junk else "" for p in ["Felidae/ok.jpg", "Felidae/thumbs.db.jpg", *junk]}
    os.mkfifo(folder / "pipe.jpg")
    assert failed(input_rows(str(folder)).set_index("path")).sum() == 1
    # named one by one: a find-made manifest's NAS thumbnails were images, a glob's Thumbs.db a failure (round 49)
    from speciesfam.data.sources import read_manifest

    (folder / "Felidae" / "@eaDir" / "ok.jpg").mkdir(parents=True)
    (folder / "Felidae" / "@eaDir" / "ok.jpg" / "SYNOPHOTO_THUMB_M.jpg").write_bytes(b"x")
    listed = ["Felidae/ok.jpg", "Felidae/Thumbs.db", "Felidae/@eaDir/ok.jpg/SYNOPHOTO_THUMB_M.jpg", ".DS_Store"]
    (folder / "find.csv").write_text("path,label\n" + "".join(f"{p},Felidae\n" for p in listed))
    rows = read_manifest(str(folder / "find.csv"))
    assert rows["status"].fillna("").tolist() == ["", "skipped", "skipped", "skipped"], rows
    assert rows["reason"].tolist()[2] == "in a system folder (Synology's thumbnails), not an image of the collection"
    assert input_rows(manifest=str(folder / "find.csv"))["error"].str.startswith("skipped: ").tolist() == \
        [False, True, True, True]


def test_a_bundle_given_as_a_file_uri_is_that_folder(tmp_path, capsys):
    """predict and evaluate looked for a bundle given as file:///x at CWD/file:/x (hostile tester)."""
    from speciesfam import cli

    (tmp_path / "m.csv").write_text("path,label\nx.jpg,Felidae\n")
    for argv in (["predict", f"file://localhost{tmp_path}/nob", str(tmp_path)],
                 ["evaluate", f"FILE://{tmp_path}/nob", "--manifest", str(tmp_path / "m.csv")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f" {tmp_path}/nob does not exist" in err and "file:" not in err.lower(), err


def test_predict_table_keeps_a_file_on_one_line_and_its_families_apart():
    """A family with a newline printed one file on two lines; families were two spaces apart, as were the
    words of a family such as '  spaced  '."""
    from speciesfam.predict import table_line

    line = table_line({"path": "/x/a\nb.png", "top": [("line1\nline2", 0.5), ("  spaced  ", 0.25)]})
    assert line.split("\t") == ["/x/a\\nb.png", "line1\\nline2 0.500", "\\x20\\x20spaced\\x20\\x20 0.250"]
    assert table_line({"path": "/x/c.png", "error": "cannot read\tfile"}) == "/x/c.png\tERROR: cannot read\\tfile"


def test_predict_table_tells_apart_two_families_that_render_alike(capsys):
    """'Café' in its two Unicode forms printed as the same name twice (hostile tester round 28); the reports
    showed them as JSON strings already. CSV and JSON keep the names exactly as written."""
    from speciesfam.predict import print_results

    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    results = [{"path": "a.png", "top": [(nfc, 0.5), (nfd, 0.3), ("Felidae", 0.2)]}]
    print_results(results, "table")
    assert capsys.readouterr().out == 'a.png\t"Caf\\u00e9" 0.500\t"Cafe\\u0301" 0.300\tFelidae 0.200\n'
    print_results(results, "csv")
    assert f"a.png,1,{nfc},0.500000," in capsys.readouterr().out
    # only one of the two among the top ones: it read 'Café' (round 37); the bundle's labels tell
    print_results([{"path": "a.png", "top": [(nfd, 0.5)]}], "table", labels=[nfc, nfd, "Felidae"])
    assert capsys.readouterr().out == 'a.png\t"Cafe\\u0301" 0.500\n'


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


def test_predict_names_a_semicolon_separated_manifest(tmp_path):
    """catalog said 'save it comma-separated'; predict only that the path column was missing (hostile tester)."""
    from speciesfam.predict import input_rows

    (tmp_path / "semi.csv").write_text("path;label\na.jpg;Felidae\n")
    with pytest.raises(SpeciesfamError, match=r"has no 'path' column \(columns: \['path;label'\]\) \(its header is "
                                              "separated by ';': save it comma-separated\\)$"):
        input_rows(manifest=str(tmp_path / "semi.csv"))


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
