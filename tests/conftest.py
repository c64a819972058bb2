"""Fixtures: tiny generated image collections, one shared local Ray session, one tiny demo run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # throwaway local test clusters
os.environ.setdefault("WANDB_MODE", "disabled")

# Tests run embedding (torch) and training/export (TensorFlow) in this one process; torch first is the
# safe order (TensorFlow first, then torchvision, segfaults: ../shared/STACK-FACTS.md).
from speciesfam._lazy import torch_modules  # noqa: E402

torch_modules()


def pickle_by_value(module_name: str) -> None:
    """Let Ray ship a test module's functions (toy trainables, training wrappers) to its workers by value."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[module_name])


class Tee:
    """Collects what the search prints on stdout (Tune's callbacks run in this process) and passes it on."""

    def __enter__(self):
        import io
        import sys

        self.old, self.buf = sys.stdout, io.StringIO()

        class Both:
            def write(inner, s):
                self.buf.write(s)
                return self.old.write(s)

            def flush(inner):
                self.old.flush()

        sys.stdout = Both()
        return self

    def __exit__(self, *exc):
        import sys

        sys.stdout = self.old
        self.lines = self.buf.getvalue().splitlines()


@pytest.fixture(autouse=True)
def _ray_console_handler_on_a_live_stream():
    """Ray's console handler keeps the stderr of the test that first imported Ray: pytest's capture, closed since.
    A later record through it printed logging's 'Logging error' into another test's stderr (which tests that the
    tool's own output is quiet fail on, in some test orders)."""
    import logging
    import sys

    for handler in logging.getLogger("ray").handlers:
        if getattr(getattr(handler, "stream", None), "closed", False):
            handler.stream = sys.stderr  # (setStream flushes the closed one first)
    yield


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (starting Ray costs ~5 s)."""
    import ray

    from speciesfam.raycluster import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def collection(tmp_path_factory):
    """A small collection: 3 families (14/10/8 images), planted outliers, grayscale, RGBA/palette, a duplicate
    and a corrupt file."""
    from speciesfam.data.synthetic import make_collection

    root = tmp_path_factory.mktemp("collection")
    planted = make_collection(root, counts={"Felidae": 14, "Ranidae": 10, "Salmonidae": 8}, size=64, seed=1)
    return root, planted


# The clean of the small collection that test_clean.py checks; other tests that clean the same images start from
# its embeddings (an open_clip actor's start is ~10-15 s of a 2-core machine's default test run).
CLEAN_CFG = dict(model="ViT-S-32", pretrained=None, batch_size=8, removal="quota", contamination=0.1, min_per_family=6)


@pytest.fixture(scope="session")
def cleaned(tmp_path_factory, collection, ray_session):
    """catalog -> clean of ``collection`` through the Ray Data pipeline (open_clip ViT-S-32, random weights):
    (workdir, manifest, cleaned manifest). Copy the workdir before changing it."""
    from speciesfam.config import CleanConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean

    root, _ = collection
    workdir = tmp_path_factory.mktemp("cleaned")
    manifest = run_catalog(str(root), str(workdir))
    return workdir, manifest, run_clean(str(workdir), CleanConfig(**CLEAN_CFG))


@pytest.fixture(scope="session")
def probe_run(tmp_path_factory, collection, cleaned):
    """catalog -> clean (open_clip ViT-S-32, random weights; the embeddings of ``cleaned``, the same images, so one
    image is embedded again, to check the length of the cache's vectors, which this run has no record of) -> probe
    search of 2 trials x 3 epochs (test_export.py, test_predict_bundle.py, test_evaluate.py)."""
    import shutil

    from speciesfam import layout
    from speciesfam.config import CleanConfig, TuneConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean
    from speciesfam.tune.search import run_search

    root, _ = collection
    workdir = tmp_path_factory.mktemp("probe_run")
    run_catalog(str(root), str(workdir))
    shutil.copy(cleaned[0] / layout.EMBEDDINGS, workdir / layout.EMBEDDINGS)
    run_clean(str(workdir), CleanConfig.smoke(min_per_family=3))
    run_search(str(workdir), TuneConfig(kind="probe", num_samples=2, max_epochs=3, smoke_test=True,
                                        cpus_per_trial=1, max_concurrent=2))
    return workdir


@pytest.fixture(scope="session")
def probe_bundle(probe_run):
    """The probe run's exported bundle (RUN/bundle)."""
    from pathlib import Path

    from speciesfam.export import export_bundle

    return Path(export_bundle(str(probe_run)))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, ray_session):
    """The demo pipeline end to end with tiny settings (1 trial x 2 epochs: a second trial, ~35 s on 2 cores,
    checked nothing more); its artifacts feed several tests."""
    from speciesfam.demo import run_demo

    workdir = tmp_path_factory.mktemp("demo")
    out = run_demo(str(workdir), num_samples=1, max_epochs=2)
    return workdir, out


def new_image_like(src, dst) -> None:
    """Image ``src`` saved again as PNG at ``dst``, with other bytes (a text chunk): to speciesfam a new image. A byte
    copy of a training image is one the model has seen, which evaluate leaves out of a labelled set's score."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("speciesfam-test", f"a new image like {os.path.basename(str(src))}")
    with Image.open(src) as img:
        img.save(dst, format="PNG", pnginfo=info)


def saved_as_finished(folder) -> set[str]:
    """The folders of the trials that a search's newest saved state records as finished (what --resume keeps)."""
    import json

    state = max(Path(folder).glob("experiment_state-*.json"), default=None)
    try:
        trials = [json.loads(t) for t, _ in json.loads(state.read_text())["trial_data"]] if state else []
    except (OSError, ValueError):  # being written
        return set()
    return {t["relative_logdir"] for t in trials if t["status"] == "TERMINATED"}


@pytest.fixture(scope="module")
def cnn_bundle(tmp_path_factory):
    """A run folder with one scratch CNN trial, its checkpoint, and the bundle exported from it (per module: a
    module's tests may add trials)."""
    from speciesfam.export import export_bundle

    from cnn_trial import write_cnn_trial

    workdir = tmp_path_factory.mktemp("cnn_run")
    ckpt = write_cnn_trial(workdir)
    return workdir, ckpt, Path(export_bundle(str(workdir)))


def recleaned(run: str, model_id: str, **record) -> None:
    """What a clean with another embedding model leaves on a run: its embeddings and its record."""
    import pandas as pd

    from speciesfam import layout, stages

    emb = pd.read_parquet(f"{run}/{layout.EMBEDDINGS}")
    emb.assign(model_id=model_id).to_parquet(f"{run}/{layout.EMBEDDINGS}")
    stages.finish(run, "clean", **record)
