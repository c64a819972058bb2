"""report.html's sections marked when what they show is not current: built from an older run of an earlier stage
(a bundle of an older clean, trials a re-catalog made stale), or a stage's table gone since it ran."""

from __future__ import annotations

import json

import pandas as pd

from speciesfam import stages
from speciesfam.report import render


def test_run_bundle_of_an_older_clean_is_stale_when_a_later_export_went_elsewhere(tmp_path):
    """Clean ran again, then tune and export --out B2: the section showed RUN/bundle, trained on the old clean,
    and its evaluation as current (the export record, fresh, was B2's; hostile tester round 65)."""
    from speciesfam.bundle import checksums

    catalog = stages.finish(str(tmp_path), "catalog")["run_id"]
    cleaned = stages.finish(str(tmp_path), "clean")["run_id"]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"kind": "cnn", "model": "m", "labels": ["A", "B"],
                                                    "image_size": 32, "trial": {"trained_on": {
                                                        "catalog": catalog, "clean": cleaned}}}))
    (bundle / "checksums.json").write_text(json.dumps(checksums(str(bundle))))
    stages.finish(str(tmp_path), "tune")
    stages.finish(str(tmp_path), "export", summary={"trial_id": "aaaa1111", "bundle": str(bundle)})
    assert "Stale" not in render(str(tmp_path))
    again = stages.finish(str(tmp_path), "clean")["run_id"]
    stages.finish(str(tmp_path), "tune")
    stages.finish(str(tmp_path), "export", summary={"trial_id": "bbbb2222", "bundle": str(tmp_path / "b2")})
    page = render(str(tmp_path))
    assert f"this bundle was trained on clean run {cleaned[:8]}; the run&#39;s clean is now run {again[:8]}" in page
    assert "Stale: what follows was built from an older run" in page


def test_a_deleted_clean_manifest_is_said_not_shown_as_empty_counts(tmp_path):
    """clean_manifest.parquet deleted after clean: the 'after cleaning' column was all dashes, unsaid, and the page
    still advised evaluate --manifest RUN/clean_manifest.parquet (round 37)."""
    pd.DataFrame({"path": ["/a", "/b"], "label": ["A", "B"], "status": "ok", "split": "train",
                  "reason": ""}).to_parquet(tmp_path / "manifest.parquet")
    stages.finish(str(tmp_path), "clean", config={}, summary={"removed": 0})
    page = render(str(tmp_path))
    assert f'No "after cleaning" counts: {tmp_path}/clean_manifest.parquet is gone: run `speciesfam clean ' \
           f'--workdir {tmp_path}` again' in page
    pd.DataFrame({"path": ["/a", "/b"], "label": ["A", "B"], "status": "ok", "split": "train",
                  "reason": ""}).to_parquet(tmp_path / "clean_manifest.parquet")
    assert "is gone: run" not in render(str(tmp_path))


def test_a_bundle_of_trials_a_recatalog_made_stale_is_marked_stale_too(tmp_path):
    """After catalog ran again, the search section was marked stale but 'The best model' showed its bundle as
    current (its record is fresh against the tune record, which is itself of the older catalog; round 38)."""
    from speciesfam.bundle import checksums

    run = str(tmp_path)
    for stage in ("catalog", "clean", "tune", "export"):
        stages.finish(run, stage, config={}, summary={})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"kind": "cnn", "model": "m", "labels": ["A", "B"],
                                                    "image_size": 32}))
    (bundle / "checksums.json").write_text(json.dumps(checksums(str(bundle))))
    model = lambda html: html[html.index('<section id="model">'):html.index('<section id="reproduce">')]  # noqa: E731
    assert "Stale:" not in model(render(run))
    stages.finish(run, "catalog", config={}, summary={})  # catalog again: clean, tune and the bundle are of the old
    section = model(render(run))
    assert "Stale:" in section and "built from the tune stage, itself stale: " in section, section
    # How to reproduce lists the re-catalog beside the older commands: those say they are stale (round 47)
    steps = render(run).split("<h2>How to reproduce</h2>")[1].split("<pre>", 1)[1].split("</pre>")[0].splitlines()
    marked = {line.split()[1]: "# stale here" in line for line in steps if line.startswith("speciesfam ")}
    assert marked == {"catalog": False, "clean": True, "tune": True, "export": True}, steps


def test_only_the_stage_whose_table_is_not_what_it_wrote_is_marked(tmp_path):
    """An interrupted catalog or clean left a table its record does not describe: the page marked that stage and
    every stage after it ('built from the tune stage, itself stale', 'run again here' on tune, which has no
    table), though running that one stage again as it was brought them all up to date (round 75)."""
    run = str(tmp_path)
    table = pd.DataFrame({"path": ["/a", "/b"], "label": ["A", "B"], "status": "ok", "split": "train", "reason": ""})
    table.to_parquet(tmp_path / "manifest.parquet")
    table.to_parquet(tmp_path / "clean_manifest.parquet")
    for stage in ("catalog", "clean", "tune", "export"):
        stages.finish(run, stage, config={"source": "/data"} if stage == "catalog" else {}, summary={})
    table.assign(status=["ok", "removed"]).to_parquet(tmp_path / "clean_manifest.parquet")
    page = render(run)

    def section(name: str) -> str:
        part = page[page.index(f'<section id="{name}">'):]
        return part[:part.index("</section>")]

    assert f"Not current: {tmp_path}/clean_manifest.parquet is not what the last finished clean wrote" in \
        section("cleaning")
    for name in ("collection", "search", "model"):
        assert "Stale:" not in section(name) and "Not current:" not in section(name), section(name)
    assert page.count("# run again here: its table is not what it wrote") == 1 and "# stale here" not in page
