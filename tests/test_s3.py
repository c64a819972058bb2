"""s3:// end to end against an S3-compatible server on loopback (moto): catalog and clean read the images from
a bucket and write every artifact back to it, as on a cluster whose data and run folder live in S3."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from speciesfam import storage
from speciesfam.data.catalog import build_manifest, load_manifest, run_catalog

BUCKET = "speciesfam-test"


@pytest.fixture(scope="module")
def s3(collection):
    """A bucket holding the test collection; the AWS_* settings point pyarrow and boto3 at the local server."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    root, _ = collection
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"images/{path.relative_to(root).as_posix()}")
    yield env, client
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    server.stop()


def test_catalog_of_a_bucket_matches_the_local_catalog(s3, collection, tmp_path):
    root, _ = collection
    remote = run_catalog(f"s3://{BUCKET}/images", f"s3://{BUCKET}/catalog-only")
    local = build_manifest(str(root))
    assert remote["path"].str.startswith(f"s3://{BUCKET}/images/").all()
    key = lambda df: sorted(zip(df["label"], df["path"].str.rsplit("/", n=1).str[-1], df["status"], df["sha256"]))  # noqa: E731
    assert key(remote) == key(local)
    assert remote["split"].tolist() == local["split"].tolist()  # same seed, same order: same split
    back = load_manifest(f"s3://{BUCKET}/catalog-only/manifest.parquet")
    assert back["path"].tolist() == remote["path"].tolist()
    assert storage.read_bytes(f"s3://{BUCKET}/catalog-only/catalog.md").startswith(b"# Catalog of s3://")


def test_catalog_clean_and_search_keep_every_artifact_in_the_bucket(s3):
    env, client = s3
    run = f"s3://{BUCKET}/run"
    cli = [sys.executable, "-m", "speciesfam.cli"]
    for args in (["catalog", f"s3://{BUCKET}/images", "--workdir", run],
                 ["clean", "--workdir", run, "--model", "ViT-S-32", "--pretrained", "none", "--batch-size", "16",
                  "--contamination", "0.2"],
                 ["tune", "probe", "--workdir", run, "--smoke-test"]):
        # A fresh process starts its own Ray, whose workers inherit the S3 settings, as on a cluster's nodes.
        child_env = {k: v for k, v in {**os.environ, **env}.items() if k != "RAY_ADDRESS"}
        done = subprocess.run(cli + args, env=child_env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="run/")["Contents"]}
    manifest = load_manifest(f"{run}/manifest.parquet")
    families = sorted(manifest["label"].unique())
    assert {"run/embeddings.parquet", "run/clean_manifest.parquet", "run/removed.csv", "run/clean.md",
            "run/class_counts.png", *(f"run/gallery/{f}.png" for f in families)} <= keys
    assert not any(".tmp-" in k for k in keys)  # atomic writes left no temporary objects behind
    cleaned = load_manifest(f"{run}/clean_manifest.parquet")
    assert len(cleaned) == len(manifest)
    assert (cleaned["status"] == "removed").sum() == len(storage.read_table(f"{run}/removed.csv")) > 0
    emb = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{run}/embeddings.parquet")))
    assert len(emb) == (manifest["status"] == "ok").sum()
    # The search keeps Tune's experiment state and checkpoints in the bucket, and its reports beside them.
    trials = storage.read_table(f"{run}/trials.csv")
    assert len(trials) == 2 and (trials["status"] == "ok").all(), trials
    assert trials["best_checkpoint"].str.startswith(f"s3://{BUCKET}/run/tune/probe/").all()
    assert {"run/trials.md", "run/search_progress.png"} <= keys
    assert any(k.startswith("run/tune/probe/experiment_state") for k in keys)


def test_export_copies_the_best_checkpoint_out_of_the_bucket(s3, demo_run, tmp_path):
    import keras
    import numpy as np

    from speciesfam.export import best_trial, export_bundle, load_bundle

    _, client = s3
    workdir, _ = demo_run
    ckpt = best_trial(str(workdir))["best_checkpoint"]
    run = f"s3://{BUCKET}/trained"
    for path in sorted(p for p in Path(ckpt).rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"trained/ckpt/{path.relative_to(ckpt).as_posix()}")
    trials = pd.read_csv(workdir / "trials.csv")
    trials["best_checkpoint"] = [f"{run}/ckpt" if p == ckpt else None for p in trials["best_checkpoint"]]
    storage.write_table(trials, f"{run}/trials.csv")
    bundle = export_bundle(run, out=str(tmp_path / "bundle"))
    model, config = load_bundle(bundle)
    trained = keras.saving.load_model(f"{ckpt}/model.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (3, config["image_size"], config["image_size"], 3)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(x), trained.predict_on_batch(x), rtol=1e-5, atol=1e-6)
