"""export's bundle folder: replaced whole or not at all (a killed swap), never a folder that is not a bundle,
never from trials an older catalog made stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speciesfam import layout

from cnn_trial import write_cnn_trial


def make_bundle(path: Path, tag: str) -> None:
    """A stand-in bundle: many files, each saying which bundle it belongs to."""
    path.mkdir()
    for i in range(20):
        (path / f"part{i:02d}.txt").write_text(tag)


def state_of(folder: Path) -> str:
    """'old' or 'new' for a whole bundle, 'missing', or 'HALF' for anything else."""
    if not folder.exists():
        return "missing"
    tags = {p.read_text() for p in folder.iterdir()}
    return tags.pop() if len(tags) == 1 and len(list(folder.iterdir())) == 20 else "HALF"


SWAP_KILLED = """
import os, shutil, sys
from speciesfam import bundle_placement
calls, kill_at = [0], int(sys.argv[3])
def counted(fn):
    def wrapped(*a, **k):
        if calls[0] == kill_at:
            os._exit(9)  # like SIGKILL: no cleanup, no finally blocks
        calls[0] += 1
        return fn(*a, **k)
    return wrapped
os.replace, shutil.rmtree, os.unlink = counted(os.replace), counted(shutil.rmtree), counted(os.unlink)
bundle_placement.swap_into_place(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("kill_at", range(6))  # before/after each rename, inside the delete, never
def test_a_killed_swap_leaves_the_old_or_the_new_bundle_and_recover_cleans_up(tmp_path, kill_at):
    from speciesfam.bundle_placement import recover

    out, new = tmp_path / "bundle", tmp_path / ".bundle-new-abc"
    make_bundle(out, "old")
    make_bundle(new, "new")
    subprocess.run([sys.executable, "-c", SWAP_KILLED, str(new), str(out), str(kill_at)], check=False,
                   cwd=Path(__file__).resolve().parents[1])
    seen = state_of(out)
    # 0: killed before anything moved; 1: between the renames (only the old one, aside); 2+: the new one is in
    # place (killed before or while deleting the old one); 5: not killed.
    assert seen == ["old", "missing", "new", "new", "new", "new"][kill_at]
    recover(str(out))
    assert state_of(out) == ("old" if seen == "missing" else seen)
    assert sorted(os.listdir(tmp_path)) == ["bundle"]  # every temp folder cleaned up


def test_export_never_replaces_a_folder_that_is_not_a_bundle(cnn_bundle, tmp_path):
    from speciesfam.errors import SpeciesfamError
    from speciesfam.export import export_bundle

    workdir, _, _ = cnn_bundle
    victim = tmp_path / "photos"
    victim.mkdir()
    (victim / "important.txt").write_text("precious")
    with pytest.raises(SpeciesfamError, match="exists and is not a speciesfam bundle"):
        export_bundle(str(workdir), out=str(victim))
    assert (victim / "important.txt").read_text() == "precious"
    for out, said in ((workdir, "is the run folder"), (workdir.parent, "holds the run folder")):
        with pytest.raises(SpeciesfamError, match=f"--out .* {said} .*the bundle would replace the run"):
            export_bundle(str(workdir), out=str(out))
    assert (workdir / layout.TRIALS).exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpeciesfamError, match="is a file"):
        export_bundle(str(workdir), out=str(tmp_path / "file"))
    with pytest.raises(SpeciesfamError, match="--workdir .*nowhere does not exist"):  # said "no trials.csv"
        export_bundle(str(tmp_path / "nowhere"), out=str(tmp_path / "b"))
    (tmp_path / "empty").mkdir()  # an empty folder the user made for it is fine
    assert export_bundle(str(workdir), out=str(tmp_path / "empty")) == str(tmp_path / "empty")
    assert export_bundle(str(workdir), out=str(tmp_path / "empty")) == str(tmp_path / "empty")  # again: replaced
    # a bundle the user saved notes or predictions in: replacing it deleted them without a word
    (tmp_path / "empty" / "sub").mkdir()
    (tmp_path / "empty" / "sub" / "predictions.parquet").write_text("mine")
    export_bundle(str(workdir), out=str(tmp_path / "empty"))  # the same model, unchanged: kept, and they are left
    assert (tmp_path / "empty" / "sub" / "predictions.parquet").read_text() == "mine"
    (tmp_path / "empty" / "MODEL_CARD.md").write_text("edited")  # to be replaced: refused while they are there
    with pytest.raises(SpeciesfamError, match=r"holds files that are not its bundle's \(sub/predictions.parquet\)"):
        export_bundle(str(workdir), out=str(tmp_path / "empty"))
    assert (tmp_path / "empty" / "sub" / "predictions.parquet").read_text() == "mine"
    # a bundle inside a bundle was written, and the next export to the outer one refused its files
    for inner in (tmp_path / "empty" / "inner", tmp_path / "empty" / "sub" / "deeper"):
        with pytest.raises(SpeciesfamError, match=f"--out .* is inside the bundle {tmp_path / 'empty'}"):
            export_bundle(str(workdir), out=str(inner))
        assert not inner.exists()


def test_export_refuses_trials_of_a_search_built_from_an_older_catalog(tmp_path):
    from speciesfam import stages
    from speciesfam.errors import StageOrderError
    from speciesfam.export import export_bundle

    write_cnn_trial(tmp_path)
    for stage in ("catalog", "clean", "tune"):
        stages.finish(str(tmp_path), stage)
    bundle = export_bundle(str(tmp_path))
    trained_on = json.loads((Path(bundle) / "config.json").read_text())["trial"]["trained_on"]
    assert trained_on == {s: stages.load(str(tmp_path), s)["run_id"] for s in ("catalog", "clean")}
    stages.finish(str(tmp_path), "catalog")  # catalog again: new splits, the trials were scored on the old ones
    with pytest.raises(StageOrderError, match="tune stage's outputs were built from an older catalog run") as err:
        export_bundle(str(tmp_path))
    # what to run, in order, on this folder: clean is stale too (it said 'run `speciesfam tune KIND --workdir RUN`')
    assert str(err.value).endswith(f"run `speciesfam clean --workdir {tmp_path}`, then "
                                   f"`speciesfam tune KIND --workdir {tmp_path}` again"), err.value
    stages.finish(str(tmp_path), "clean")
    with pytest.raises(StageOrderError, match="older catalog run") as err:
        export_bundle(str(tmp_path))
    assert str(err.value).endswith(f"run `speciesfam tune KIND --workdir {tmp_path}` again"), err.value
    searches = {"wide": {"config": {"kind": "scratch"}, "finished_at": "2026-12-02"},
                "first": {"config": {"kind": "probe", "num_samples": 4}, "finished_at": "2026-12-01"}}
    stages.finish(str(tmp_path), "tune", searches=searches)
    stages.finish(str(tmp_path), "clean")
    with pytest.raises(StageOrderError, match="older clean run") as err:  # every search again, not the latest alone
        export_bundle(str(tmp_path))
    assert str(err.value).endswith(f"run `speciesfam tune probe --workdir {tmp_path} --num-samples 4 --name first`, "
                                   f"then `speciesfam tune scratch --workdir {tmp_path} --name wide` again"), err.value
    # a search with trials on the split the folder holds now (a clean run again as it was, after another): started
    # again under its name it is refused, so it is resumed (round 75)
    from speciesfam.tune.tracking import val_split_id

    (tmp_path / "tune" / "first" / "t1").mkdir(parents=True)
    (tmp_path / "tune" / "first" / "t1" / "result.json").write_text('{"val_macro_f1": 0.5}\n')
    (tmp_path / "tune" / "first" / "speciesfam_split.json").write_text(json.dumps({"val_split": val_split_id(
        str(tmp_path))}))
    with pytest.raises(StageOrderError, match="older clean run") as err:
        export_bundle(str(tmp_path))
    assert f"`speciesfam tune probe --workdir {tmp_path} --num-samples 4 --name first --resume`, then" in str(err.value)


def test_export_replaces_a_bundle_and_cleans_what_a_killed_export_left(cnn_bundle):
    from speciesfam.bundle import load_bundle
    from speciesfam.export import export_bundle

    workdir, _, bundle = cnn_bundle
    from speciesfam.errors import SpeciesfamError

    (workdir / layout.TRIALS_MD).unlink()
    (workdir / layout.TRIALS_MD).mkdir()  # it failed on it after writing the bundle (round 51): refused first
    with pytest.raises(SpeciesfamError, match=r"trials.md is a folder, where export writes its trials.md"):
        export_bundle(str(workdir))
    (workdir / layout.TRIALS_MD).rmdir()
    (workdir / ".bundle-new-1234").mkdir()  # a killed export's half-written bundle
    (workdir / ".bundle-new-1234" / "model.keras").write_bytes(b"half")
    first = json.loads((bundle / "config.json").read_text())["exported_at"]
    write_cnn_trial(workdir, trial_id="cnn00002", f1=0.9, seed=1)
    assert export_bundle(str(workdir)) == str(bundle)
    assert load_bundle(str(bundle)).config["trial"]["trial_id"] == "cnn00002"
    assert json.loads((bundle / "config.json").read_text())["exported_at"] >= first
    assert not [n for n in os.listdir(workdir) if n.startswith(".bundle")]
    md = (workdir / layout.TRIALS_MD).read_text()
    assert "**Exported**: trial `cnn00002` (cnn, scratch_sequential)" in md
