"""report.html: rendered from a run folder's data, opened in headless Chromium, never failing on a partial run;
one console line per finished trial that agrees with it (the other console lines: test_console_lines.py);
clean.md's tables and the plots with any family or file name.

The run folder is built cheaply: a real catalog of the small generated collection, a real (toy) Tune search
with ASHA, and clean/export/evaluate outputs written with the columns those stages write. The slow test
opens the report of the real demo run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pandas as pd
import pytest
from conftest import Tee, pickle_by_value

from speciesfam import cli, console, layout, stages
from speciesfam.report import render, write_report

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"headless Chromium is not installed at {CHROMIUM} (Debian: apt-get install -y chromium; .ci/run "
           "installs it): report.html was not opened in a browser")
MAX_EPOCHS = 6


def toy(config):
    """A trial whose val_macro_f1 rises towards config['quality'] over MAX_EPOCHS epochs, then drops in the last
    (so a trial's last epoch is not its best)."""
    from ray import tune

    for epoch in range(1, MAX_EPOCHS + 1):
        drop = 0.1 if epoch == MAX_EPOCHS else 0.0
        tune.report({layout.METRIC: config["quality"] * (1 - 0.5 ** epoch) - drop, "epoch": epoch})


@pytest.fixture(scope="module")
def run(tmp_path_factory, collection, ray_session):
    """A run folder with every section's data; returns (workdir, console lines of the search)."""
    from ray import tune

    from speciesfam.config import TuneConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.tune.search import make_tuner
    from speciesfam.tune.tracking import write_trial_table

    console.setup()  # as every `speciesfam` command does (quiet frameworks, one line per trial)
    workdir = tmp_path_factory.mktemp("run")
    root, _ = collection
    manifest = run_catalog(str(root), str(workdir))
    ok = manifest[manifest["status"] == "ok"]
    # The clean stage's outputs (its columns): two images per family removed as outliers, one label issue,
    # one near-duplicate pair.
    removed = ok.groupby("label").head(2)
    cleaned = manifest.copy()
    cleaned.loc[removed.index, ["status", "reason"]] = ["removed", "isolation_forest outlier: top 5% score in family"]
    cleaned.to_parquet(workdir / layout.CLEAN_MANIFEST)
    pd.DataFrame({"path": removed["path"], "family": removed["label"],
                  "score": [0.9 - 0.1 * i for i in range(len(removed))],
                  "detector": "isolation_forest", "reason": "isolation_forest outlier: top 5% score in family"}
                 ).to_csv(workdir / layout.REMOVED, index=False)
    pd.DataFrame({"path": [ok["path"].iloc[5]], "label": [ok["label"].iloc[5]], "suggested": ["Ranidae"],
                  "label_quality": [0.04]}).to_csv(workdir / layout.LABEL_ISSUES, index=False)
    pd.DataFrame({"path": [ok["path"].iloc[6]], "duplicate_of": [ok["path"].iloc[7]], "similarity": [0.991]}
                 ).to_csv(workdir / layout.NEAR_DUPLICATES, index=False)
    stages.finish(str(workdir), "clean", config={"model_id": "open_clip:ViT-S-32:none", "detector": "isolation_forest",
                                                 "contamination": 0.05}, summary={"removed": len(removed),
                                                                                  "label_issue_threshold": 0.1})
    # A real search: toy trials, ASHA stops the weak ones.
    pickle_by_value(__name__)
    # Strong trials first, so ASHA's rungs hold their results when the weak ones arrive: the weak ones are
    # stopped on any machine, whatever its speed (with random qualities a fast machine sometimes stopped none).
    cfg = TuneConfig(searcher="grid", scheduler="asha", num_samples=1, max_epochs=MAX_EPOCHS, grace_period=1,
                     max_failures=0, max_concurrent=2, seed=3)
    with Tee() as tee:
        space = {"quality": tune.grid_search([0.9, 0.85, 0.8, 0.3, 0.25, 0.2])}
        results = make_tuner(tune.with_resources(toy, {"CPU": 0.5}), space, cfg,
                             str(workdir / "tune"), "toy").fit()
    write_trial_table(results, str(workdir))
    stages.finish(str(workdir), "tune", config={"kind": "scratch", "scheduler": "asha", "max_epochs": MAX_EPOCHS,
                                                "num_samples": 6, "searcher": "random"})
    # export's and evaluate's files (their names and columns)
    labels = sorted(ok["label"].unique())
    bundle = workdir / layout.BUNDLE
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"model": "scratch_small", "labels": labels, "image_size": 48,
                                                    "trial_id": "t1", "hp": {"lr": 0.001}}))
    per_family = dict(zip(labels, [0.5, 0.9, 1.0]))
    (bundle / "metrics.json").write_text(json.dumps({"best_val_macro_f1": 0.8, "best_epoch": 5, "epochs_run": 6,
                                                     "checkpoint": {"per_class_f1": per_family}}))
    (bundle / "MODEL_CARD.md").write_text("# speciesfam model: scratch_small\n\n- <b>not bold</b>\n")
    ev = workdir / "eval_test"
    ev.mkdir()
    pd.DataFrame({"family": labels, "precision": [0.5, 1.0, 0.75], "recall": [0.5, 0.75, 1.0],
                  "f1": [0.5, 0.857, 0.857], "support": [2, 4, 3]}).to_csv(ev / "per_class.csv", index=False)
    pd.DataFrame({"true": [labels[0], labels[1]], "predicted": [labels[2], labels[0]], "count": [1, 1]}
                 ).to_csv(ev / "confused_pairs.csv", index=False)
    (ev / "metrics.json").write_text(json.dumps({"test_macro_f1": 0.738, "test_accuracy": 0.778, "images": 9}))
    assert write_report(str(workdir)) == str(workdir / layout.REPORT)
    return workdir, tee.lines


def test_one_console_line_per_trial_agrees_with_the_trial_table_and_the_report(run):
    workdir, lines = run
    trials = pd.read_csv(workdir / layout.TRIALS)
    trial_lines = [ln for ln in lines if re.match(r"\s+trial \d+/6 ", ln)]  # a grid of 6: counted to 6
    assert len(trial_lines) == len(trials) == 6, lines
    pattern = re.compile(r"trial \d/6 (\S+)\s+toy\s+(\d+) epochs?\s+best val macro-F1 (\d\.\d{3})  "
                         r"(finished|stopped by ASHA)$")
    parsed = {m.group(1): m for m in map(pattern.search, trial_lines) if m}
    assert len(parsed) == 6, trial_lines
    for t in trials.itertuples():
        m = parsed[t.trial_id]
        assert int(m.group(2)) == t.epochs_run
        assert m.group(3) == f"{getattr(t, layout.BEST_METRIC):.3f}"  # the best epoch's, as in trials.csv
        # ASHA's cut is exactly the trials that stopped before MAX_EPOCHS (the toy has no patience of its own)
        assert (m.group(4) == "stopped by ASHA") == (t.epochs_run < MAX_EPOCHS)
    assert (trials["epochs_run"] < MAX_EPOCHS).any(), "ASHA stopped no trial: the test shows nothing"
    html = (workdir / layout.REPORT).read_text()
    assert html.count("stopped by ASHA") - html.count("stopped by ASHA.") >= (trials["epochs_run"] < MAX_EPOCHS).sum()


def test_report_holds_the_main_numbers_inline(run):
    workdir, _ = run
    html = (workdir / layout.REPORT).read_text()
    manifest = pd.read_parquet(workdir / layout.MANIFEST)
    trials = pd.read_csv(workdir / layout.TRIALS)
    best = trials.iloc[0]
    assert f'<b id="best-f1">{best[layout.BEST_METRIC]:.3f}</b>' in html
    assert f"{len(manifest)} rows" in html and "0.738" in html  # catalog rows, test macro-F1
    for t in trials["trial_id"]:
        assert t in html
    for reason in manifest.loc[manifest["status"] == "unreadable", "reason"]:
        assert str(reason).split(":")[0] in html  # unreadable files with their reasons
    for section in ("Taken out by cleaning (", "Label issues (1)", "Near-duplicates (1)", "Most-confused families",
                    "Model card", "How to reproduce", "speciesfam tune scratch --workdir"):
        assert section in html, section
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html  # the card is text, escaped
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # opens offline, from anywhere
    assert "http://" not in html and "https://" not in html


def test_report_of_a_partial_or_damaged_run_still_renders(tmp_path, collection, capsys):
    from speciesfam.data.catalog import run_catalog

    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(str(empty)) == str(empty / layout.REPORT)
    assert (empty / layout.REPORT).read_text().count("Not run yet") == 4
    run_catalog(str(collection[0]), str(tmp_path / "cat"))
    (tmp_path / "cat" / layout.TRIALS).write_text("not,a\ntrial,table\n")  # damaged: the search section says so
    html = render(str(tmp_path / "cat"))
    assert "could not be rendered: ValueError: trials.csv lacks column(s)" in html
    assert "Not run yet: <code>speciesfam clean" in html
    assert f"{len(pd.read_parquet(tmp_path / 'cat' / layout.MANIFEST))} rows" in html
    # the console gets one line, not a traceback (a damaged file is not a bug of the tool)
    assert cli.main(["report", "--workdir", str(tmp_path / "cat")]) == 0
    err = capsys.readouterr().err
    assert "report: the search section could not be rendered (ValueError: trials.csv lacks" in err
    assert "Traceback" not in err
    # a search whose trials all failed: the best-model section says why there is nothing to export (it said
    # "Not run yet: speciesfam export", which then fails)
    pd.DataFrame({"trial_id": ["a"], "status": ["failed"], "best_val_macro_f1": [None], "seconds": [0.0],
                  "kind": ["probe"],
                  "trial_path": [str(tmp_path)], "config": ["{}"]}).to_csv(tmp_path / "cat" / layout.TRIALS,
                                                                         index=False)
    html = render(str(tmp_path / "cat"))
    assert "Nothing to export yet: no trial of the searches on this run trained and scored" in html
    assert "Not run yet: <code>speciesfam export" not in html


def test_cli_report_and_verbose_anywhere(run, capsys, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    workdir, _ = run
    assert cli.main(["report", "--workdir", str(workdir), "--verbose"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {workdir / layout.REPORT}"
    assert console.verbose() and console.worker_env() == {console.VERBOSE_ENV: "1"} and console.log_to_driver()
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    assert not console.verbose() and not console.log_to_driver() and console.tune_verbosity() == 0


def _open_in_chromium(report, tmp_path) -> tuple[dict, str]:
    """Open a copy of ``report`` with a probe script in headless Chromium: returns what the probe saw after
    the load event (images, broken ones, JS errors, the first trial after sorting by F1) and Chromium's stderr."""
    probe = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
var _err = console.error;
console.error = function () { window.__errors.push([].join.call(arguments, " ")); _err.apply(console, arguments); };
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var th = Array.prototype.find.call(document.querySelectorAll("#trials th"),
                                     function (h) { return h.textContent === "val macro-F1"; });
  if (th) { th.click(); th.click(); }
  var first = document.querySelector("#trials tbody tr td");
  var out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({images: imgs.length, errors: window.__errors, first: first && first.textContent,
    broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.alt; })});
  document.body.appendChild(out);
});
</script>"""
    page = tmp_path / "probed.html"
    page.write_text(report.read_text().replace("<head>", "<head>" + probe, 1))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the probe did not run: rc={dom.returncode} {dom.stderr[-2000:]}"
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1280,2000", f"--screenshot={shot}", report.as_uri()], capture_output=True,
                   timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, "blank screenshot"
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1))), dom.stderr


@needs_chromium
def test_report_in_a_real_browser(run, tmp_path):
    workdir, _ = run
    seen, stderr = _open_in_chromium(workdir / layout.REPORT, tmp_path)
    assert seen["errors"] == [] and "Uncaught" not in stderr, (seen["errors"], stderr[-2000:])
    assert seen["images"] >= 8 and seen["broken"] == [], seen  # plots and gallery thumbnails all decoded
    best = pd.read_csv(workdir / layout.TRIALS).iloc[0]["trial_id"]
    assert seen["first"] == best  # the trials table sorted by val macro-F1, highest first, in the browser


@pytest.mark.slow
@needs_chromium
def test_demo_report_in_a_real_browser(demo_run, tmp_path):
    workdir, out = demo_run
    report = workdir / layout.REPORT
    assert os.path.samefile(out["artifacts"]["report"], report)
    seen, stderr = _open_in_chromium(report, tmp_path)
    # class counts, removed-outlier thumbnails, search progress, confusion matrix: all decoded
    assert seen["errors"] == [] and seen["broken"] == [] and seen["images"] >= 4, seen
    html = report.read_text()
    best = pd.read_csv(workdir / layout.TRIALS).iloc[0]
    assert f'<b id="best-f1">{best[layout.BEST_METRIC]:.3f}</b>' in html and "Most-confused families" in html
    assert any((workdir / "logs" / "ray").iterdir())  # the workers' full logs, kept


def test_sections_built_from_an_older_run_are_marked_stale(run, tmp_path):
    """After clean ran again, export refused the old search but the report showed it as current beside the new
    cleaning (hostile tester): a stale section now says so, with the command that rebuilds it."""
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(run[0], workdir)
    record = workdir / layout.STAGES / "tune.json"  # its search was interrupted: the report offers to resume it
    tune = json.loads(record.read_text())
    summary = {"experiment": "toy", "interrupted": True, "resumable": True, "trials": 6, "planned": 12}
    record.write_text(json.dumps({**tune, "summary": summary, "searches": {"toy": {"config": tune["config"],
                                                                                    "summary": summary}}}))
    html = render(str(workdir))
    assert "Stale:" not in html and "Search <b>toy</b> was interrupted" in html and "--resume</code>" in html
    stages.finish(str(workdir), "clean", config={"model_id": "x"}, summary={"removed": 0})  # clean ran again
    html = render(str(workdir))
    search = html[html.index('<section id="search">'):html.index('<section id="model">')]
    assert "Stale:" in search and "built from an older clean run" in search and "speciesfam tune" in search
    assert "--resume" not in html  # a search of an older clean cannot be resumed (tune refuses it): not offered
    headline = html[html.index('id="headline"'):html.index('<section id="collection">')]  # no stale tiles (tester)
    assert "best val macro-F1" not in headline and "removed by cleaning" in headline
    cleaning = html[html.index('<section id="cleaning">'):html.index('<section id="search">')]
    assert "Stale:" not in cleaning
    # catalog ran again (on another source): clean's counts are of other rows. The cleaning section said so, but
    # the collection's "after cleaning" column (0 everywhere: "every image removed") and the headline did not.
    assert "removed by cleaning" in html and 'No "after cleaning" counts' not in html
    stages.finish(str(workdir), "catalog", config={"source": "elsewhere"}, summary={})
    html = render(str(workdir))
    collection = html[html.index('<section id="collection">'):html.index('<section id="cleaning">')]
    assert 'No "after cleaning" counts: clean ran on an older catalog' in collection
    assert "removed by cleaning" not in html and "built from an older catalog run" in html


def test_the_cleaning_section_counts_each_kind_taken_out():
    """The page said '39 images removed' under 'Outliers removed (39)' for 6 outliers, 9 dropped label issues
    and 24 dropped near-duplicates (the console: '15 removed, 24 near-duplicates dropped')."""
    from speciesfam.report import taken_out

    removed = pd.DataFrame({"detector": ["centroid"] * 5 + ["zero_shot"] + ["cleanlab"] * 9 + ["near_duplicate"] * 24})
    assert taken_out(removed) == "6 outliers, 9 label issues, 24 near-duplicates"
    assert taken_out(removed[removed["detector"] == "near_duplicate"]) == "24 near-duplicates"
    assert taken_out(removed.head(0)) == taken_out(None) == ""


def test_the_cleaning_section_shows_the_rule_in_force_in_plain_words(tmp_path):
    """It listed the quota's contamination beside the threshold rule in force, and Python reprs of dicts."""
    from speciesfam.report import cleaning

    stages.finish(str(tmp_path), "clean", config={"removal": "threshold", "outlier_z": 5.0, "contamination": 0.05},
                  summary={"removed": 0, "near_duplicates": {"dropped": 0, "groups": 2}, "split_lost": {}})
    section = cleaning(str(tmp_path), {"clean": stages.load(str(tmp_path), "clean")})
    assert section["settings"] == {"removal": "threshold", "outlier_z": 5.0}
    assert section["summary"]["near_duplicates"] == "dropped 0, groups 2" and section["summary"]["split_lost"] == "none"
    assert section["lost"] == []
    # a family left with no train image showed only as 'split_lost train Tiny' in the table (hostile tester)
    stages.finish(str(tmp_path), "clean", config={}, summary={"removed": 1, "split_lost": {"train": ["Tiny"],
                                                                                         "val": ["A", "B"]},
                                                             "split_lost_cause": {"train": "its removals"}})
    section = cleaning(str(tmp_path), {"clean": stages.load(str(tmp_path), "clean")})
    assert section["lost"] == ["1 family has no train images left (Tiny): its removals took them all, so no model "
                               "learns them", "2 families have no val images left (A, B), so they count in no val "
                               "score"]  # (a record from before clean named the cause)
    assert "split_lost_cause" not in section["summary"]  # said in the lines above, not again in the table


def test_reports_and_plots_take_any_family_or_file_name(tmp_path):
    """clean.md's table row broke in two on a newline in a file name; `evaluate` printed matplotlib's warnings
    for a tab in a family name ('Glyph 9 missing') and for long names ('Tight layout not applied')."""
    import warnings

    import numpy as np
    import pandas as pd

    from speciesfam import plots
    from speciesfam.data.clean_report import _table

    removed = pd.DataFrame({"path": ["/x/new\nline|pipe.jpg"], "family": ["Tab\tX"], "score": [0.5]})
    rows = _table(removed, ["path", "family", "score"], {"score": ".3f"})
    assert rows[-1] == "| /x/new\\\\nline\\|pipe.jpg | Tab\\\\tX | 0.500 |"
    labels = ["Tab\tX", "a" * 200, "a" * 199 + "b", "001"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.confusion(np.eye(4, dtype=int), labels, str(tmp_path / "cm.png"))
        plots.per_class_f1(pd.DataFrame({"family": labels, "f1": [0.1, 0.2, 0.3, 0.4]}), str(tmp_path / "f1.png"))
        plots.class_counts(pd.Series([5, 4, 3, 2], index=labels), pd.Series([5, 4, 3, 2], index=labels))
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "cm.png").stat().st_size > 1000 and (tmp_path / "f1.png").stat().st_size > 1000


def test_a_trial_that_never_trained_is_not_called_finished(tmp_path):
    """The report's trial table said 'finished' for a trial the interrupt stopped before its first epoch."""
    import pandas as pd

    from speciesfam import layout
    from speciesfam.report_search import search

    pd.DataFrame({"trial_id": ["a", "b"], "status": ["ok", "not_trained"], "best_val_macro_f1": [0.5, None],
                  "trial_path": [str(tmp_path / "a"), str(tmp_path / "b")], "config": ["{}", "{}"]}).to_csv(
        layout.path(str(tmp_path), layout.TRIALS), index=False)
    assert [(r["trial_id"], r["ended"]) for r in search(str(tmp_path), {})["trials"]] == [
        ("a", "finished"), ("b", "not trained")]


def test_an_evaluation_of_an_earlier_bundle_is_not_shown_as_this_ones(tmp_path):
    """RUN/eval_test/ was shown under whatever bundle RUN/bundle now holds (a new export since, or a failed
    evaluation leaving the older scores)."""
    from speciesfam.bundle import checksums

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"kind": "cnn", "model": "m", "labels": ["A", "B"],
                                                    "image_size": 32}))
    (bundle / "checksums.json").write_text(json.dumps(checksums(str(bundle))))
    from speciesfam.bundle import bundle_id

    evaluation = tmp_path / "eval_test"
    evaluation.mkdir()
    pd.DataFrame({"family": ["A", "B"], "precision": [1.0, 0.5], "recall": [0.5, 1.0], "f1": [0.667, 0.667],
                  "support": [2, 1]}).to_csv(evaluation / "per_class.csv", index=False)
    pd.DataFrame(columns=["true", "predicted", "count"]).to_csv(evaluation / "confused_pairs.csv", index=False)
    for of, shown in ((bundle_id(str(bundle)), True), ("0123456789abcdef", False), (None, True)):
        (evaluation / "metrics.json").write_text(json.dumps({"test_macro_f1": 0.667, "bundle_id": of}))
        assert ("Evaluation on the test split" in render(str(tmp_path))) is shown, of


def test_an_export_to_another_folder_is_named_beside_run_bundle(tmp_path):
    """After `export --trial T --out B2` the section showed RUN/bundle while 'How to reproduce' ended with the
    export to B2, unexplained (hostile tester)."""
    from speciesfam.bundle import checksums

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"kind": "cnn", "model": "m", "labels": ["A", "B"],
                                                    "image_size": 32}))
    (bundle / "checksums.json").write_text(json.dumps(checksums(str(bundle))))
    stages.finish(str(tmp_path), "export", config={"trial": None, "out": str(bundle)},
                  summary={"trial_id": "aaaa1111", "bundle": str(bundle)})
    assert "The last export" not in render(str(tmp_path))
    other = tmp_path / "b2"
    stages.finish(str(tmp_path), "export", config={"trial": "bbbb2222", "out": str(other)},
                  summary={"trial_id": "bbbb2222", "bundle": str(other)})
    assert f"The last export (trial bbbb2222) wrote <code>{other}</code>, not this bundle" in render(str(tmp_path))


def test_the_search_section_judges_only_finished_trials_and_names_their_own_search(tmp_path):
    """After a search whose every trial failed, the report named a failed trial 'Best', counted it as stopped by
    ASHA, showed the latest search's settings for a best trial of an earlier search, and counted the time
    between two searches as search wall time (hostile tester)."""
    import pandas as pd

    from speciesfam import layout
    from speciesfam.report_search import search

    def trial(name: str, tid: str, start: float, epochs: int, done: bool, final: bool | None = None) -> str:
        path = tmp_path / "tune" / name / f"trial_{tid}"
        path.mkdir(parents=True)
        pd.DataFrame({"timestamp": [start + 1 + e for e in range(epochs)], "time_total_s": [1 + e for e in range(epochs)],
                      "training_iteration": list(range(1, epochs + 1)), "done": [False] * (epochs - 1) + [done],
                      **({"final_epoch": [False] * (epochs - 1) + [final]} if final is not None else {})}
                     ).to_csv(path / "progress.csv", index=False)
        return str(path)

    rows = [("good", 0.5, "ok", trial("first", "good", 1000, 4, True)),  # 4 s of search
            ("nan", 0.9, "error", trial("second", "nan", 5000, 1, False)),  # a NaN loss in epoch 1: 1 s
            ("fine", 0.3, "ok", trial("second", "fine", 5001, 2, True))]  # ends at 5003: 3 s for that search
    pd.DataFrame({"trial_id": [r[0] for r in rows], "best_val_macro_f1": [r[1] for r in rows],
                  "status": [r[2] for r in rows], "trial_path": [r[3] for r in rows], "config": "{}",
                  "seconds": 1.0}).to_csv(layout.path(str(tmp_path), layout.TRIALS), index=False)
    second = {"kind": "probe", "num_samples": 2, "max_epochs": 4}
    records = {"tune": {"config": second, "summary": {"experiment": "second"},
                        "searches": {"first": {"config": {"kind": "probe", "num_samples": 7, "max_epochs": 4}},
                                     "second": {"config": second}}}}
    s = search(str(tmp_path), records)
    assert s["best"]["trial_id"] == "good" and s["settings"]["num_samples"] == 7  # its own search's settings
    assert [r["ended"] for r in s["trials"]][1] == "error" and s["stopped"] == 1  # 'fine': cut at 2 of 4
    assert s["wall_s"] == 4 + 3  # not the 4,003 s from the first search's start to the second's end
    assert [r["search"] for r in s["trials"]] == ["first", "second", "second"] and s["unfinished"] == []

    # A later search with more epochs: the earlier trials keep their own search's ending (a 4-of-4 trial read
    # 'early stopping' against the latest search's 20; tester), and an interrupted search says so, with the
    # command that continues it (its last trial 'stopped by the search's end', the search looked done).
    records["tune"]["summary"] = {"experiment": "third", "interrupted": True, "resumable": True, "trials": 1,
                                  "planned": 30}
    records["tune"]["config"] = third = {"kind": "probe", "num_samples": 30, "max_epochs": 20, "scheduler": "fifo"}
    records["tune"]["searches"]["third"] = {"config": third}
    rows.append(("cut", 0.2, "ok", trial("third", "cut", 9000, 5, False, final=False)))  # as a real one reads
    pd.DataFrame({"trial_id": [r[0] for r in rows], "best_val_macro_f1": [r[1] for r in rows],
                  "status": [r[2] for r in rows], "trial_path": [r[3] for r in rows], "config": "{}",
                  "seconds": 1.0}).to_csv(layout.path(str(tmp_path), layout.TRIALS), index=False)
    s = search(str(tmp_path), records)
    assert [r["ended"] for r in s["trials"]] == ["finished", "error", "stopped by ASHA", "stopped by the interrupt"]
    assert s["stopped"] == 1 and s["unfinished"] == [{
        "name": "third", "trials": 1, "planned": 30, "resumable": True,
        "command": f"speciesfam tune probe --workdir {tmp_path} --scheduler fifo --num-samples 30 --max-epochs 20 "
                   "--resume"}]


def test_trial_histories_read_a_resumed_trials_results_whole(tmp_path):
    """Tune appends a resumed trial's progress.csv rows under the keys of its first result since the resume; a
    probe result without a checkpoint has two keys fewer, so the report read shifted columns (found by a flaky
    test). result.json, a JSON line per result, is read instead; progress.csv only where it is missing."""
    import json

    import pandas as pd

    from speciesfam.report_search import trial_histories

    results = [{"epoch": e, "timestamp": 100 + e, "time_total_s": e,  # Tune's order: checkpoint keys, then its own
                **({"checkpoint_dir_name": f"checkpoint_{e:06d}", "should_checkpoint": True} if e < 3 else {}),
                "training_iteration": e, "trial_id": "t1"} for e in (1, 2, 3, 4)]
    path = tmp_path / "trial_t1"
    path.mkdir()
    (path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    with open(path / "progress.csv", "w") as f:  # as Tune leaves it: the header from epoch 1, rows 3-4 shorter
        f.write(",".join(results[0]) + "\n")
        f.writelines(",".join(map(str, r.values())) + "\n" for r in results)
    assert pd.read_csv(path / "progress.csv")["training_iteration"].tolist()[2:] != [3, 4]  # what it used to read
    table = pd.DataFrame({"trial_id": ["t1", "old"], "trial_path": [str(path), str(tmp_path / "trial_old")]})
    (tmp_path / "trial_old").mkdir()  # a trial with only progress.csv (written by hand, or by an older Ray)
    pd.DataFrame({"epoch": [1], "training_iteration": [1]}).to_csv(tmp_path / "trial_old" / "progress.csv", index=False)
    histories = trial_histories(table)[0]
    assert histories["t1"]["epoch"].tolist() == [1, 2, 3, 4] == histories["t1"]["training_iteration"].tolist()
    assert histories["old"]["epoch"].tolist() == [1]
