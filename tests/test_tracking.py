"""The trial table from Tune's results: a trial's best epoch is the best one whose checkpoint is on storage,
and its epochs are the trial's own count, also when the search was interrupted or resumed."""

from __future__ import annotations

import pandas as pd
import pyarrow.fs as pafs
import pytest
from ray.tune import Checkpoint, Result

from speciesfam.tune.tracking import trial_table


def _trial(tmp_path, name: str, rows: list[tuple[int, float, str | None]], on_disk: list[str],
           tune_knows: list[str]) -> Result:
    """A probe trial's folder and Tune's Result for it: ``rows`` (epoch, val macro-F1, checkpoint_dir_name) as in
    its progress.csv, ``on_disk`` the checkpoint folders that exist, ``tune_knows`` those Tune's checkpoint
    manager recorded."""
    path = tmp_path / f"probe_trial_{name}_1"
    for d in on_disk:
        (path / d).mkdir(parents=True)
    hist = pd.DataFrame([{"val_macro_f1": f1, "epoch": epoch, "checkpoint_dir_name": ckpt, "training_iteration": i + 1,
                          "time_total_s": float(i + 1), "trial_id": name} for i, (epoch, f1, ckpt) in enumerate(rows)])
    f1_of = {ckpt: f1 for _, f1, ckpt in rows if ckpt}
    best = [(Checkpoint(str(path / d)), {"val_macro_f1": f1_of[d], "epoch": 1 + sorted(f1_of).index(d)})
            for d in tune_knows]
    return Result(metrics=hist.iloc[-1].to_dict(), checkpoint=None, error=None, path=str(path), metrics_dataframe=hist,
                  best_checkpoints=best, _storage_filesystem=pafs.LocalFileSystem())


def test_an_epoch_saved_and_reported_but_not_yet_recorded_by_tune_is_the_best(tmp_path):
    """Interrupted right after epoch 2's checkpoint and report: Tune's list still ends at epoch 1."""
    r = _trial(tmp_path, "a", [(1, 0.09, "checkpoint_000000"), (2, 0.25, "checkpoint_000001")],
               on_disk=["checkpoint_000000", "checkpoint_000001"], tune_knows=["checkpoint_000000"])
    row = trial_table([r], "probe").iloc[0]
    assert (row["best_val_macro_f1"], row["best_epoch"], row["epochs_run"]) == (0.25, 2, 2)
    assert row["best_checkpoint"] == str(tmp_path / "probe_trial_a_1" / "checkpoint_000001")


def test_a_deleted_best_checkpoint_falls_back_to_the_best_one_kept(tmp_path):
    """Tune keeps the top checkpoints only: the table names a score whose checkpoint can be exported."""
    rows = [(1, 0.5, "checkpoint_000000"), (2, 0.7, "checkpoint_000001"), (3, 0.6, "checkpoint_000002"), (4, 0.6, None)]
    kept = ["checkpoint_000000", "checkpoint_000002"]
    r = _trial(tmp_path, "b", rows, on_disk=kept, tune_knows=kept)
    row = trial_table([r], "probe").iloc[0]
    assert (row["best_val_macro_f1"], row["best_epoch"], row["epochs_run"]) == (0.6, 3, 4)
    assert row["best_checkpoint"].endswith("checkpoint_000002")


def test_a_resumed_trial_counts_its_own_epochs_not_tunes_iterations(tmp_path):
    """A probe trial resumed after an interrupt starts its epochs again; Tune's iteration count goes on."""
    rows = [(1, 0.3, "checkpoint_000000"), (2, 0.4, "checkpoint_000001"),  # before the interrupt
            (1, 0.3, None), (2, 0.4, None), (3, 0.5, "checkpoint_000002")]  # the resumed run
    r = _trial(tmp_path, "c", rows, on_disk=["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"],
               tune_knows=["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"])
    row = trial_table([r], "probe").iloc[0]
    assert (row["best_val_macro_f1"], row["best_epoch"], row["epochs_run"], row["status"]) == (0.5, 3, 3, "ok")


def test_a_trial_whose_first_report_never_arrived_is_not_trained_and_says_why(tmp_path):
    r = Result(metrics={}, checkpoint=None, error=None, path=str(tmp_path / "probe_trial_d_1"),
               metrics_dataframe=pd.DataFrame(), _storage_filesystem=pafs.LocalFileSystem())
    row = trial_table([r], "probe").iloc[0]
    assert row["status"] == "not_trained" and row["epochs_run"] == 0 and pd.isna(row["best_val_macro_f1"])
    assert "before its first epoch was recorded" in row["error"]


def test_a_keras_error_is_named_by_its_cause_not_its_arguments_block():
    """A trial that failed in a Keras layer showed 'failed: • kwargs=<class 'inspect._empty'>' on the console and
    'ValueError: Exception encountered when calling MaxPooling2D.call().' in trials.csv; the cause was only in
    error.txt."""
    import traceback

    import keras

    from speciesfam.lines import error_text, message_lines

    try:
        keras.Sequential([keras.Input((1, 1, 8)), keras.layers.MaxPooling2D(2)])
    except ValueError as err:
        text, trace = error_text(err), traceback.format_exc()
    assert text.startswith("ValueError: Computed output size would be zero or negative. Received: `inputs.shape=") \
        and text.endswith("(in MaxPooling2D.call())") and "\x1b" not in text, text
    assert message_lines(trace)[-1].startswith("Computed output size would be zero or negative"), trace[-500:]
    assert error_text(RuntimeError("plain\nsecond line")) == "RuntimeError: plain"
    # a Ray Train worker killed (SIGKILL, the OOM killer): 'A worker health check failed.' named no cause (round 33)
    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    died = WorkerHealthCheckFailedError("A worker health check failed.", ActorDiedError())
    assert error_text(died) == ("WorkerHealthCheckFailedError: A worker health check failed. (ActorDiedError: The "
                                "actor died unexpectedly before finishing this task.); a worker process died (killed "
                                "by a signal, or for memory: see logs/ray/ in the run folder)"), error_text(died)
    # Ray killed a trial's workers for memory: Tune's Result.error is the error file's text, a str, and writing
    # trials.csv raised AttributeError ('str' object has no attribute '__cause__'; seen in a slow test run)
    oom = ("Failure # 1 (occurred at 2026-12-05_20-33-44)\n4 worker(s) were killed due to the node running low on "
           "memory. Memory on the node was 7.5GB.\n")
    assert error_text(oom) == "4 worker(s) were killed due to the node running low on memory. Memory on the node " \
                              "was 7.5GB."


def test_an_image_unreadable_inside_a_training_step_is_named_by_the_trial_error(tmp_path):
    """A CNN trial whose input pipeline met an image deleted after catalog failed with 'InvalidArgumentError:
    Graph execution error' in trials.csv and on the console: the file and the cause were only in error.txt."""
    import numpy as np
    import tensorflow as tf

    import traceback

    from speciesfam.data.tfdata import dataset
    from speciesfam.lines import error_text, message_lines, tf_cause

    gone = str(tmp_path / "Felidae" / "gone.jpg")
    batches = iter(dataset(np.array([gone]), np.array([0]), 8, 1, repeat=True))

    @tf.function
    def step(it):  # the way the training loop reads its batches
        return tf.reduce_sum(next(it)[0])

    for read in (lambda: step(batches), lambda: next(iter(dataset(np.array([gone]), np.array([0]), 8, 1)))):
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            read()
        text = error_text(caught.value)
        assert text.startswith(f"DecodeError: {gone}: file not found; "), text
        assert text.endswith("re-run `speciesfam catalog` if the collection changed"), text
        # the trial's console line reads its error file, a traceback ending in "[[IteratorGetNext]] [Op:...]"
        # (that was the line: 'failed: [[IteratorGetNext]] [Op:__inference_step_5401]'; hostile tester)
        trace = "".join(traceback.format_exception(caught.value))
        cause = tf_cause(message_lines(trace))
        assert message_lines(trace)[-1].startswith("[[") and cause and ": ".join(cause) == text, trace[-800:]
    # --no-image-cache: a file replaced since catalog (its sha256 differs) fails the same way, naming it; it was
    # trained on (the image cache checks the hash; the per-epoch decode did not)
    from PIL import Image

    replaced = tmp_path / "Felidae" / "replaced.png"
    replaced.parent.mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(replaced)
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        next(iter(dataset(np.array([str(replaced)]), np.array([0]), 8, 1, hashes={str(replaced): "0" * 64})))
    text = error_text(caught.value)
    assert text.startswith(f"ChangedError: {replaced}: changed since catalog (its sha256 is not the one "), text


def test_trials_csv_keeps_epochs_whole_when_a_trial_has_none(tmp_path):
    """A trial with no epoch (not trained) made best_epoch a float column: 1.0 / 6.0 in trials.csv, 1.0000 in
    trials.md, for every trial of every search (hostile tester round 34)."""
    import pandas as pd

    from speciesfam.tune.tracking import whole_epochs, write_trials_md

    df = pd.DataFrame({"trial_id": ["a", "b"], "best_epoch": [6.0, float("nan")], "epochs_run": [8.0, 0.0],
                       "best_val_macro_f1": [0.5, float("nan")], "config": ["{}", "{}"]})
    whole_epochs(df).to_csv(tmp_path / "trials.csv", index=False)
    text = (tmp_path / "trials.csv").read_text()
    assert "a,6,8," in text and "b,,0," in text, text
    write_trials_md(str(tmp_path), df)
    md = (tmp_path / "trials.md").read_text()
    assert "| a |  |  |  |  | 0.5000 | 6 | 8 |" in md and "| b |  |  |  |  |  |  | 0 |" in md, md


def test_a_cnn_trial_resumed_in_a_copied_run_folder_names_the_copys_checkpoint(tmp_path):
    """Ray Train reports a CNN trial's checkpoints as absolute paths: a run folder copied and resumed named the
    original's checkpoints (exported from it), or none once the original was gone (round 70, helper's report)."""
    old, copy = tmp_path / "run" / "tune" / "cnn", tmp_path / "copy" / "tune" / "cnn"
    for experiment in (old, copy):
        (experiment / "train" / "t1" / "checkpoint_2026").mkdir(parents=True)
    hist = pd.DataFrame([{"val_macro_f1": 0.4, "epoch": 1, "training_iteration": 1, "time_total_s": 1.0,
                          "checkpoint_path": str(old / "train" / "t1" / "checkpoint_2026")}])
    r = Result(metrics=hist.iloc[-1].to_dict(), checkpoint=None, error=None, path=str(copy / "_trial_t1"),
               metrics_dataframe=hist, _storage_filesystem=pafs.LocalFileSystem())
    assert trial_table([r], "scratch").iloc[0]["best_checkpoint"] == str(copy / "train" / "t1" / "checkpoint_2026")
    import shutil

    shutil.rmtree(tmp_path / "run")
    assert trial_table([r], "scratch").iloc[0]["best_checkpoint"] == str(copy / "train" / "t1" / "checkpoint_2026")


def test_a_search_copied_elsewhere_resumes_with_its_searcher_creating_trials_in_the_copy(tmp_path, ray_session):
    """Tune rewrites the restored trials' storage to the folder resumed, not the one its searcher's saved state
    holds: trials drawn after the resume of a copied run folder wrote into the original (read as not trained)."""
    import shutil

    from ray import cloudpickle, tune

    from speciesfam.config import TuneConfig
    from speciesfam.tune.history import _storage_contexts, rehome_search_state
    from speciesfam.tune.search import make_tuner

    def toy(config):
        tune.report({"val_macro_f1": config["q"], "epoch": 1})

    for searcher in ("optuna", "random"):
        cfg = TuneConfig(searcher=searcher, scheduler="fifo", num_samples=1, max_epochs=1, max_concurrent=1)
        make_tuner(toy, {"q": tune.uniform(0, 1)}, cfg, str(tmp_path / searcher / "tune"), "s").fit()
        copy = shutil.copytree(tmp_path / searcher, tmp_path / f"{searcher}-copy") / "tune" / "s"
        rehome_search_state(str(copy))
        saved = [p for p in copy.iterdir() if p.name.startswith(("search_gen_state-", "basic-variant-state-"))]
        contexts = _storage_contexts(cloudpickle.loads(max(saved).read_bytes()), set())
        assert contexts and {c.experiment_fs_path for c in contexts} == {str(copy)}, searcher
