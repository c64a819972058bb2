"""Failures are failures: a search that trained nothing exits non-zero, defaults train, stale outputs are refused."""

import html
import json
import re
from pathlib import Path

import pandas as pd

import pytest
from conftest import recleaned

from speciesfam import cli, layout, stages
from speciesfam.config import CleanConfig
from speciesfam.errors import SearchFailedError, StageOrderError
from speciesfam.tune.search import check_some_trial_trained

TINY = ["--num-samples", "1", "--max-epochs", "1", "--workers-per-trial", "1", "--cpus-per-worker", "0.5",
        "--image-size", "32", "--smoke-test"]


@pytest.fixture(scope="module")
def catalogued(collection, tmp_path_factory):
    from speciesfam.data.catalog import run_catalog

    root, _ = collection
    workdir = tmp_path_factory.mktemp("run")
    run_catalog(str(root), str(workdir))
    return workdir


def test_no_successful_trial_is_a_failed_search():
    table = pd.DataFrame({"trial_id": ["a", "b"], "status": ["error", "error"], "best_val_macro_f1": [None, None],
                          "seconds": [1.0, 2.0],
                          "error": ["ValueError: optimizer='nope' is not supported", "ValueError: optimizer='nope'"]})
    with pytest.raises(SearchFailedError, match="no trial of 2 finished with a val macro-F1: ValueError"):
        check_some_trial_trained(table)
    check_some_trial_trained(table.assign(status=["error", "ok"], best_val_macro_f1=[None, 0.5]))
    with pytest.raises(SearchFailedError):  # trained, but every score is NaN: nothing to export
        check_some_trial_trained(table.assign(status=["error", "ok"], best_val_macro_f1=[None, float("nan")]))


@pytest.mark.parametrize("damage", [b"{\"stage\": \"catalog\", \"run_", b"\xff\xfe", b"[]", b"{\"run_id\": \"abc\"}"])
def test_a_damaged_stage_record_is_said_not_read_as_not_run(collection, tmp_path, capsys, damage):
    """A truncated or overwritten RUN/stages/catalog.json (a full disk, a hand edit) named with the command that
    rewrites it; it read as "no catalog recorded" and the next stage went on without its freshness check."""
    from speciesfam.data.catalog import run_catalog

    run_catalog(str(collection[0]), str(tmp_path))
    (tmp_path / layout.STAGES / "catalog.json").write_bytes(damage)
    assert cli.main(["clean", "--workdir", str(tmp_path), "--pretrained", "none"]) == 2
    err = capsys.readouterr().err
    assert "stages/catalog.json is damaged" in err and f"run `speciesfam catalog SOURCE --workdir {tmp_path}`" in err
    assert "Traceback" not in err
    assert not (tmp_path / layout.EMBEDDINGS).exists()  # said before the work, not after it
    from speciesfam.report import render

    html = render(str(tmp_path))
    assert "could not be rendered: " in html and "catalog.json is damaged" in html


@pytest.mark.parametrize("field", [{"searches": [1]}, {"searches": {"probe": [1]}}, {"summary": "x"}, {"config": [1]}])
def test_a_stage_record_whose_parts_are_not_records_is_damaged(tmp_path, capsys, field):
    """A tune.json whose searches were [1] (or a record's summary or config not an object) was a traceback in export
    and report (round 60): damage, named with the command that rewrites it; the report still writes its page."""
    (tmp_path / layout.STAGES).mkdir()
    for stage in ("catalog", "tune"):
        (tmp_path / layout.STAGES / f"{stage}.json").write_text(json.dumps(
            {"stage": stage, "run_id": stage, "built_from": {}, **(field if stage == "tune" else {})}))
    with pytest.raises(StageOrderError, match=f"tune.json is damaged \\(its {re.escape(next(iter(field)))}"):
        stages.load(str(tmp_path), "tune")
    assert cli.main(["export", "--workdir", str(tmp_path)]) == 2 and "Traceback" not in capsys.readouterr().err
    assert cli.main(["report", "--workdir", str(tmp_path)]) == 0
    said = capsys.readouterr()
    assert "Traceback" not in said.err and "tune.json is damaged" in said.out and (tmp_path / "report.html").exists()


def test_a_warm_start_with_nothing_to_start_from_is_refused_before_any_work(catalogued, capsys):
    """It was found after Ray started and the image cache was decoded (44 s on the demo data)."""
    assert cli.main(["tune", "scratch", "--workdir", str(catalogued), "--init-from", "probe", *TINY]) == 2
    said = capsys.readouterr()
    assert "--init-from 'probe': no finished trial scored on this run's val split" in said.err
    assert f"run `speciesfam clean --workdir {catalogued}`, then `speciesfam tune probe --workdir" in said.err  # catalog only
    # a search name that is no kind: the command to make it (it said `speciesfam tune nosuch`, no command)
    assert cli.main(["tune", "scratch", "--workdir", str(catalogued), "--init-from", "nosuch", *TINY]) == 2
    assert "then `speciesfam tune probe --name nosuch --workdir" in capsys.readouterr().err
    assert "image cache" not in said.out and "tune: search" not in said.out


def test_a_probe_search_on_a_catalogued_run_asks_for_clean(catalogued, capsys):
    assert cli.main(["tune", "probe", "--workdir", str(catalogued)]) == 2
    assert "clean_manifest.parquet does not exist: a probe search trains on" in capsys.readouterr().err


@pytest.mark.slow  # ~40 s: a Ray Train search whose one trial fails reading an image changed after catalog
def test_tune_scratch_with_default_weights_trains_and_all_failed_exits_1(collection, tmp_path, ray_session, capsys):
    import shutil

    from speciesfam.data.catalog import load_manifest, run_catalog

    root, workdir = tmp_path / "images", str(tmp_path / "run")
    shutil.copytree(collection[0], root)
    run_catalog(str(root), workdir)
    manifest = load_manifest(layout.path(workdir, layout.MANIFEST))
    ok = manifest.query("status == 'ok'").reset_index(drop=True)
    # a training image overwritten with other bytes after catalog (a deleted one is refused before any trial: tune
    # checks every train/val file is there): a trial that decodes its JPEGs fails on it
    gone = ok.loc[ok["split"] == "train", "path"].iloc[-1]
    Path(gone).write_bytes(b"not an image any more")
    # Every trial fails: the command says so, exits 1. The default --weights, imagenet, applies to transfer
    # backbones only: the scratch CNN builds and starts training (it failed building, "weights='imagenet' does
    # not apply", before the trial ever trained).
    code = cli.main(["tune", "scratch", "--workdir", workdir, "--weights", "imagenet", "--name", "bad",
                     "--no-image-cache", "--max-failures", "0", *TINY])
    assert code == 1
    out = capsys.readouterr()
    assert "no trial of 1 finished with a val macro-F1" in out.err
    assert out.err.rstrip().endswith(f"; see {workdir}/trials.csv"), out.err  # it said 'see RUN/trials.csv'
    bad = pd.read_csv(layout.path(workdir, layout.TRIALS)).query("status != 'ok'")  # the trial's own cause
    assert len(bad) == 1 and f"DecodeError: {gone}: not an image file (format not recognised); re-run `speciesfam " \
        "catalog`" in bad["error"].iloc[0], bad["error"].tolist()
    # the trial's console line says the same cause (it read '[[IteratorGetNext]] [Op:__inference_step_4440]')
    assert "failed: DecodeError: " in out.out, out.out
    # the stage's summary and report lines, as after any stage that ran (they were missing after a failure)
    assert "tune: 1 trial, none finished with a val macro-F1" in out.out and "report: " in out.out, out.out
    # --resume of it says that its trials failed (it said the search 'stopped before any trial reported')
    assert cli.main(["tune", "scratch", "--workdir", workdir, "--weights", "imagenet", "--name", "bad",
                     "--no-image-cache", "--max-failures", "0", "--resume", *TINY]) == 2
    assert "--resume --name bad: every trial of that search failed before reporting a result (1: see their " \
           "errors in trials.csv), so there is nothing to continue" in capsys.readouterr().err
    # a warm start from it names what happened (it said to run that search, whose name is taken)
    assert cli.main(["tune", "scratch", "--workdir", workdir, "--name", "warm", "--init-from", "bad", *TINY]) == 2
    assert "--init-from 'bad': that search ran on this run's val split, but none of its trials finished" in \
        capsys.readouterr().err


@pytest.mark.slow  # ~20 s (catalog, clean, catalog again); the default run stays near 5 minutes
def test_a_recatalogued_run_refuses_stale_clean_outputs(collection, tmp_path, ray_session, capsys):
    from speciesfam.config import CatalogConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean

    root, _ = collection
    workdir = str(tmp_path)
    run_catalog(str(root), workdir)
    run_clean(workdir, CleanConfig(embedder="speciesfam.data.embedders:color_histogram_embedder", detector="centroid"))
    assert stages.check_fresh(workdir, "clean")["built_from"]["catalog"] == stages.load(workdir, "catalog")["run_id"]
    run_catalog(str(root), workdir)  # the same outcome: its run id kept, clean's outputs current
    assert stages.check_fresh(workdir, "clean")
    run_catalog(str(root), workdir, CatalogConfig(seed=1))  # other splits: clean's outputs are now stale
    with pytest.raises(StageOrderError, match="run `speciesfam clean --workdir"):
        stages.check_fresh(workdir, "clean")
    assert cli.main(["tune", "probe", "--workdir", workdir, *TINY]) == 2
    assert "speciesfam clean --workdir" in capsys.readouterr().err


def test_a_search_of_a_name_that_is_running_is_refused(tmp_path, capsys):
    """Two `tune probe --name same` started together both ran into one Tune folder and one's trials vanished
    from trials.csv (hostile tester): while a search holds its name, another start of it is refused."""
    from speciesfam import storage
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.locks import search_lock

    run = tmp_path / "run"
    make_embedding_run(str(run), rows=60, dim=4, families=3)
    held = search_lock(storage.filesystem(str(run / "tune"))[1], "same")  # the first search, running
    try:
        assert cli.main(["tune", "probe", "--workdir", str(run), "--name", "same"]) == 2
        assert "--name same: a search of that name is running on this run folder now (pid " in \
            capsys.readouterr().err
    finally:
        held.close()
    assert not (run / "tune").exists()  # refused before anything was written
    search_lock(storage.filesystem(str(run / "tune"))[1], "same").close()  # free again once it ended


@pytest.mark.slow  # a search while catalog runs again (~10 s); the default run keeps the same for clean (below)
def test_a_catalog_re_run_during_a_search_leaves_that_searchs_trials_stale(tmp_path, monkeypatch, capsys):
    """A catalog that ended while a search ran became the search's recorded source: export took its trials for
    the new catalog's splits, and evaluate scored a 'test' set that was mostly training images (hostile tester).
    The search's record now names the runs it read at its start, and the console says what happened."""
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.tune import search

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=60, dim=4, families=3)
    real_fit = search.fit

    def fit_while_catalog_runs_again(*args, **kwargs):
        ended = real_fit(*args, **kwargs)
        stages.finish(run, "catalog", config={"source": "the same images, other splits"})  # ends meanwhile
        return ended

    monkeypatch.setattr(search, "fit", fit_while_catalog_runs_again)
    assert cli.main(["tune", "probe", "--workdir", run, "--num-samples", "1", "--max-epochs", "1"]) == 0
    said = capsys.readouterr().out
    assert f"tune: warning: catalog ran again on {run} while this tune worked; its outputs are built from the " \
           f"catalog run it read, so later stages refuse them: run `speciesfam tune probe --workdir {run}" in said, said
    assert "KIND" not in said  # the command as it runs (round 72)
    assert cli.main(["export", "--workdir", run]) == 2
    assert "the tune stage's outputs were built from an older catalog run" in capsys.readouterr().err


def test_a_catalog_re_run_during_clean_leaves_cleans_outputs_stale(collection, tmp_path, monkeypatch, capsys,
                                                                   ray_session):
    from speciesfam.config import CatalogConfig
    from speciesfam.data import clean
    from speciesfam.data.catalog import run_catalog

    root, _ = collection
    workdir = str(tmp_path)
    run_catalog(str(root), workdir)
    real = clean.cached_embeddings

    def embed_while_catalog_runs_again(*args, **kwargs):
        emb = real(*args, **kwargs)
        run_catalog(str(root), workdir, CatalogConfig(seed=1))  # a second catalog, with its own splits, ends while
        # clean works (one with the same outcome keeps its run id: nothing is stale)
        return emb

    monkeypatch.setattr(clean, "cached_embeddings", embed_while_catalog_runs_again)
    clean.run_clean(workdir, CleanConfig(embedder="speciesfam.data.embedders:color_histogram_embedder"))
    assert "clean: warning: catalog ran again on" in capsys.readouterr().out
    with pytest.raises(StageOrderError, match="run `speciesfam clean --workdir"):
        stages.check_fresh(workdir, "clean")


def test_catalog_says_a_search_running_on_its_run_folder_and_export_waits_for_one(collection, tmp_path, capsys):
    """catalog or clean re-run while a search ran on the folder said nothing (the search's trials were then of
    an older catalog), and export during a first search said to run tune first (hostile tester)."""
    import os

    from speciesfam import storage
    from speciesfam.data.catalog import run_catalog
    from speciesfam.locks import running_searches, search_lock

    root, _ = collection
    run, other = str(tmp_path / "run"), str(tmp_path / "other")
    run_catalog(str(root), run)
    assert "warning" not in capsys.readouterr().out
    held = search_lock(storage.filesystem(os.path.join(run, "tune"))[1], "conc", run)  # a search running on run
    elsewhere = search_lock(storage.filesystem(os.path.join(other, "tune"))[1], "conc", other)
    try:
        assert running_searches(run) == [f"'conc' (pid {os.getpid()})"]
        assert cli.main(["export", "--workdir", run]) == 2
        assert f"--workdir {run}: no search has ended there yet, and 'conc' (pid {os.getpid()}) runs now; export " \
               "when it has ended" in capsys.readouterr().err
        run_catalog(str(root), run)
        assert f"catalog: warning: a search is running on {run} now ('conc' (pid {os.getpid()})); it goes on " \
               "with the runs it read at its start, and export will refuse its trials once this catalog ends" in \
            capsys.readouterr().out
    finally:
        held.close()
        elsewhere.close()
    assert running_searches(run) == []


def test_a_bundle_made_stale_by_a_search_that_trained_nothing_advises_the_search_first(tmp_path, capsys):
    """After a re-clean, a search that trained nothing (stopped by its time budget): the report and evaluate
    said to run export again, which export then refused (no trial trained on this run)."""
    from speciesfam.data.synthetic_embeddings import make_embedding_run

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=60, dim=4, families=3)
    assert cli.main(["tune", "probe", "--workdir", run, "--num-samples", "1", "--max-epochs", "1"]) == 0
    stages.finish(run, "export", summary={"kind": "probe"})  # its bundle exported
    recleaned(run, "open_clip:another", config={"model": "another clean", "model_id": "open_clip:another"})  # a re-clean:
    # the search's trials are stale (another embedding model)
    assert cli.main(["tune", "probe", "--workdir", run, "--num-samples", "1", "--name", "empty",
                     "--time-budget", "0.001"]) != 0
    assert "its time budget (0.001 s) ended it first: give --time-budget more seconds, or leave it out" \
        in capsys.readouterr().err
    with pytest.raises(StageOrderError) as stale:
        stages.check_fresh(run, "export")
    # without the budget that ended it before any trial trained (the same --time-budget trained nothing again)
    advice = f"run `speciesfam tune probe --workdir {run} --num-samples 1 --name empty`, then " \
             f"`speciesfam export --workdir {run}` again"
    assert advice in str(stale.value), stale.value  # the report's and evaluate's staleness line
    from speciesfam.report import render

    # the page's search section says why nothing trained (it read '1 trials; 0 stopped early by ASHA.')
    page = html.unescape(render(run))
    assert "<p>1 trial;" in page or "<p>1 trial in" in page, "'1 trials'"
    assert "No trial trained and scored a val macro-F1, so there is nothing to export: 1 not trained: ended before " \
           "its first epoch was recorded" in page


@pytest.mark.slow  # two searches and two exports (~12 s); the default run keeps the test above
def test_a_search_that_trained_nothing_leaves_the_bundle_fresh_and_its_epochs_whole(probe_run, tmp_path, capsys):
    """A search stopped by its time budget before any trial trained made the bundle stale: the report said to
    export again, which made the same bundle anew and dropped its evaluation; exported after it, the epochs read
    1.0 (the not_trained row made the column floats) (hostile tester round 43)."""
    import json
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(probe_run, run)
    assert cli.main(["export", "--workdir", run]) == 0
    assert cli.main(["tune", "probe", "--workdir", run, "--num-samples", "1", "--name", "empty",
                     "--time-budget", "0.001"]) != 0
    stages.check_fresh(run, "export")  # not stale: raises StageOrderError if it is
    assert "Stale" not in (tmp_path / "run" / "report.html").read_text()
    assert cli.main(["export", "--workdir", run]) == 0
    metrics = json.loads((tmp_path / "run" / "bundle" / "metrics.json").read_text())
    assert isinstance(metrics["best_epoch"], int) and isinstance(metrics["epochs_run"], int), metrics
    assert f"at epoch {metrics['best_epoch']} (" in (tmp_path / "run" / "bundle" / "MODEL_CARD.md").read_text()
    # the same name again, now training: the run changes (its trials are export's to choose from)
    assert cli.main(["tune", "probe", "--workdir", run, "--num-samples", "1", "--max-epochs", "1",
                     "--name", "empty"]) == 0
    with pytest.raises(StageOrderError):
        stages.check_fresh(run, "export")
    capsys.readouterr()


@pytest.mark.slow  # two catalogs, a search and an export (~20 s); the default run keeps the stale-bundle tests beside it
def test_a_bundle_made_stale_by_a_re_catalog_advises_every_stage_to_re_run_and_its_own_search(tmp_path):
    """After another search and a re-catalog, the report said to run export again (export then refused: tune
    was stale too) and named the latest search, not the bundle's (hostile tester round 39)."""
    from speciesfam.data.synthetic_embeddings import make_embedding_run

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=60, dim=4, families=3)
    stages.finish(run, "catalog")
    stages.finish(run, "clean")
    tune = ["tune", "probe", "--workdir", run, "--num-samples", "1", "--max-epochs", "1"]
    assert cli.main(tune) == 0
    stages.finish(run, "export", summary={"kind": "probe", "search": "probe"})  # the bundle of search 'probe'
    assert cli.main([*tune, "--name", "later"]) == 0
    drawn = pd.read_parquet(f"{run}/manifest.parquet")
    drawn.assign(split=drawn["split"].iloc[::-1].to_numpy()).to_parquet(f"{run}/manifest.parquet")
    stages.finish(run, "catalog")  # a re-catalog that drew other splits (the same again keeps its run id)
    with pytest.raises(StageOrderError) as stale:
        stages.check_fresh(run, "export")
    assert f"run `speciesfam clean --workdir {run}`, then `speciesfam tune probe --workdir {run} --num-samples 1 " \
           f"--max-epochs 1 --name probe`, then `speciesfam export --workdir {run}` again" in str(stale.value), \
        stale.value
