"""report.html: rendered from a run folder's data, opened in headless Chromium, never failing on a partial run;
one console line per finished trial that agrees with it (the other console lines: test_console_lines.py).
Each section from its stage's files alone: test_report_sections.py.

The run folder is built cheaply: a real catalog of the small generated collection, a real (toy) Tune search
with ASHA, and clean/export/evaluate outputs written with the columns those stages write. The slow test
opens the report of the real demo run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

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
    pd.DataFrame({"path": [ok["path"].iloc[6]], "duplicate_of": [ok["path"].iloc[7]], "similarity": [0.99953]}
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
    (bundle / "MODEL_CARD.md").write_text("# speciesfam model: scratch_small\n\n- <b>not bold</b>\n\n"
                                          "| family | val F1 |\n|---|---:|\n| Felidae | 0.500 |\n")
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
    # the headline's first count is every catalogued file (it read "images catalogued"), then the usable images
    usable = (manifest["status"] == "ok").sum()
    assert usable < len(manifest) and f'<div class="v">{len(manifest)}</div><div class="k">files or rows catalogued' \
        f'</div></div>\n  <div class="card"><div class="v">{usable}</div><div class="k">usable images</div>' in html
    for t in trials["trial_id"]:
        assert t in html
    for reason in manifest.loc[manifest["status"] == "unreadable", "reason"]:
        assert str(reason).split(":")[0] in html  # unreadable files with their reasons
    # a near-duplicate pair's similarity as in its CSV (0.999 to 0.99993 all read 1.000), both its files named
    pair = pd.read_csv(workdir / layout.NEAR_DUPLICATES).iloc[0]
    assert re.search(r"score 0\.99953</span>.*?" + re.escape(f"{Path(pair['path']).name} · "
                                                             f"{Path(pair['duplicate_of']).name}"), html, re.S)
    assert "<th>predicted as</th>" in html  # the most-confused pairs, listed under their matrix (round 62)
    for section in ("Taken out by cleaning (", "Label issues (1)", "Near-duplicates (1)", "Most-confused families",
                    "Model card", "How to reproduce", "speciesfam tune scratch --workdir"):
        assert section in html, section
    # the card is rendered Markdown (it was raw text in a <pre>); HTML in it stays text, escaped
    assert "<h1>speciesfam model: scratch_small</h1>" in html and "<td>Felidae</td>" in html
    assert "<li>&lt;b&gt;not bold&lt;/b&gt;</li>" in html
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # opens offline, from anywhere
    # RUN/search_progress.png is the page's timeline of every search (it was the last search's own plot: round 47)
    import base64

    timeline = re.search(r'alt="val macro-F1 of every trial against search wall time" src="data:image/png;base64,'
                         r'([^"]+)"', html).group(1)
    assert (workdir / layout.SEARCH_PROGRESS).read_bytes() == base64.b64decode(timeline)
    assert "http://" not in html and "https://" not in html


def test_report_of_a_partial_or_damaged_run_still_renders(tmp_path, collection, capsys):
    from speciesfam.data.catalog import run_catalog

    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(str(empty)) == str(empty / layout.REPORT)
    assert (empty / layout.REPORT).read_text().count("Not run yet") == 4
    run_catalog(str(collection[0]), str(tmp_path / "cat"))
    (tmp_path / "cat" / layout.TRIALS).write_text("not,a\ntrial,table\n")  # damaged: the search section says so
    assert "trials.csv is damaged: it is not a table of trials (no column trial_id, status or config)" in \
        render(str(tmp_path / "cat"))
    (tmp_path / "cat" / layout.TRIALS).write_text('trial_id,status,config\nx,ok,"{}"\n')  # a section's error
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
    # a page that cannot be written (a full disk, a read-only folder; here a folder in its place): one line
    (tmp_path / "cat" / layout.REPORT).unlink()
    (tmp_path / "cat" / layout.REPORT).mkdir()
    (tmp_path / "cat" / layout.REPORT / "x").write_text("x")
    assert cli.main(["report", "--workdir", str(tmp_path / "cat")]) == 1
    err = capsys.readouterr().err
    assert f"could not write {tmp_path / 'cat' / layout.REPORT}: " in err and "Traceback" not in err, err
    assert sorted(p.name for p in (tmp_path / "cat").iterdir() if ".tmp-" in p.name) == []


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
    assert f'No "after cleaning" counts: {workdir}: the clean stage&#39;s outputs were built from an older catalog ' \
        "run" in collection
    assert "removed by cleaning" not in html and "built from an older catalog run" in html


def test_the_headline_test_score_says_over_how_many_families_when_not_all():
    """At the reference size the tile read '0.882 test macro-F1' though 109 of 202 families counted (round 62)."""
    from speciesfam.report import headline

    metrics = {"test_macro_f1": 0.882, "families": 202, "families_with_images": 108, "families_predicted_absent": 1}
    s = {"collection": {}, "cleaning": {}, "search": {}, "model": {"eval": {"metrics": metrics}}}
    assert headline(s) == [("test macro-F1 (over 109 of 202 families)", "0.882")]
    metrics.update(families_with_images=202, families_predicted_absent=0)
    assert headline(s) == [("test macro-F1", "0.882")]
