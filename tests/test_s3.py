"""s3:// end to end against an S3-compatible server on loopback (moto): catalog and clean read the images from
a bucket and write every artifact back to it, as on a cluster whose data and run folder live in S3."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pandas as pd
import pytest

from speciesfam import layout, storage
from speciesfam.data.catalog import build_manifest, load_manifest, run_catalog

pytestmark = pytest.mark.slow  # see README: the default run skips these, .ci/run runs them

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
    # what predict asks to choose batch prediction of a folder over predicting files here
    assert storage.is_dir(f"s3://{BUCKET}/images") and storage.is_dir(f"s3://{BUCKET}/images/")
    assert not storage.is_dir(remote["path"].iloc[0]) and not storage.is_dir(f"s3://{BUCKET}/no-such-folder")


def test_a_whole_run_lives_in_the_bucket(s3, ray_session, tmp_path):
    """catalog -> clean -> probe search -> CNN search -> export. Clean and the searches are CLI processes, each
    with its own local Ray while this test session's Ray also runs (two Ray instances on one machine: Ray Train
    used to hang on that); catalog and export run here (neither starts Ray)."""
    env, client = s3
    run = f"s3://{BUCKET}/run"

    def speciesfam(*args: str) -> None:
        # A fresh process starts its own Ray, whose workers inherit the S3 settings, as on a cluster's nodes.
        child_env = {k: v for k, v in {**os.environ, **env}.items() if k != "RAY_ADDRESS"}
        done = subprocess.run([sys.executable, "-m", "speciesfam.cli", *args], env=child_env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="run/")
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    from speciesfam.cli import main

    assert main(["catalog", f"s3://{BUCKET}/images", "--workdir", run]) == 0
    speciesfam("clean", "--workdir", run, "--model", "ViT-S-32", "--pretrained", "none", "--batch-size", "16",
               "--removal", "quota", "--contamination", "0.2",
               "--near-duplicate-threshold", "0.999")  # random weights: everything looks alike
    manifest = load_manifest(f"{run}/manifest.parquet")
    families = sorted(manifest["label"].unique())
    assert {"run/embeddings.parquet", "run/clean_manifest.parquet", "run/removed.csv", "run/clean.md",
            "run/class_counts.png", *(f"run/gallery/{layout.label_slug(f)}.png" for f in families)} <= keys()
    cleaned = load_manifest(f"{run}/clean_manifest.parquet")
    assert len(cleaned) == len(manifest)
    assert (cleaned["status"] == "removed").sum() == len(storage.read_table(f"{run}/removed.csv")) > 0
    emb = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{run}/embeddings.parquet")))
    assert len(emb) == (manifest["status"] == "ok").sum()

    # Searches keep Tune's experiment state and checkpoints in the bucket, and their reports beside them.
    for kind in ("probe", "scratch"):
        speciesfam("tune", kind, "--workdir", run, "--smoke-test", "--max-epochs", "2", "--num-samples", "1")
        trials = storage.read_table(f"{run}/trials.csv")  # every search on the run: probe and CNN side by side
        trials = trials[trials["kind"] == kind]
        assert len(trials) == 1 and (trials["status"] == "ok").all(), trials  # one trial: CI time (~20 s each)
        assert trials["best_checkpoint"].str.startswith(f"s3://{BUCKET}/run/tune/{kind}/").all()
        assert any(k.startswith(f"run/tune/{kind}/experiment_state") for k in keys())
    assert {"run/trials.md", "run/search_progress.png"} <= keys()
    assert not any(".tmp-" in k for k in keys())  # atomic writes left no temporary objects behind

    assert main(["export", "--workdir", run, "--out", str(tmp_path / "bundle")]) == 0
    from speciesfam.bundle import read_config

    config = read_config(str(tmp_path / "bundle"))
    assert config["labels"] == sorted(cleaned.loc[cleaned["status"] == "ok", "label"].unique())
