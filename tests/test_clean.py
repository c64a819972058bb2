"""Clean stage through the real Ray Data pipeline with real open_clip (random weights: offline)."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import CLEAN_CFG

from speciesfam.config import CleanConfig
from speciesfam.data.catalog import run_catalog
from speciesfam.data.clean import run_clean
from speciesfam.data.embedding import embed_plain, embed_with_ray

CFG = CleanConfig(**CLEAN_CFG)


def test_clean_accounts_for_every_row_and_reuses_embeddings(cleaned, tmp_path, capsys):
    done, manifest, cleaned = cleaned  # catalog -> clean with CFG (conftest.py)
    shutil.copytree(done, tmp_path, dirs_exist_ok=True)
    assert len(cleaned) == len(manifest)
    counts = cleaned["status"].value_counts()
    assert counts.get("ok", 0) + counts.get("removed", 0) == (manifest["status"] == "ok").sum()
    removed = pd.read_csv(tmp_path / "removed.csv")
    assert list(removed.columns) == ["path", "family", "score", "z", "detector", "reason"]
    assert len(removed) == counts.get("removed", 0) > 0
    per_family = cleaned[cleaned["status"] == "ok"].groupby("label").size()
    assert (per_family >= CFG.min_per_family).all()
    from speciesfam.layout import label_slug

    assert {f"{label_slug(f)}.png" for f in ("Felidae", "Ranidae", "Salmonidae")} <= {
        p.name for p in (tmp_path / "gallery").glob("*.png")}
    emb = pd.read_parquet(tmp_path / "embeddings.parquet")
    assert len(emb) == (manifest["status"] == "ok").sum() and len(emb["embedding"].iloc[0]) == 384
    capsys.readouterr()
    # vectors of another model beside this one's (made by hand: a probe search refuses them, and a clean that
    # found everything cached left them, so the refusal repeated: round 73) are dropped from the cache
    pd.concat([emb, emb.assign(model_id="open_clip:ViT-B-32:random-init-seed0")]).to_parquet(
        tmp_path / "embeddings.parquet")
    run_clean(str(tmp_path), CFG)  # same inputs, same model: nothing is embedded again
    assert "embeddings cached" in capsys.readouterr().out
    assert pd.read_parquet(tmp_path / "embeddings.parquet").equals(emb)

    # A threshold so low that every family is one near-duplicate group: each group goes to one split, so no
    # family keeps val or test images. Said on the console and in clean.md, not left to be found.
    from dataclasses import replace

    grouped = run_clean(str(tmp_path), replace(CFG, near_duplicate_threshold=0.5))
    ok = grouped[grouped["status"] == "ok"]
    assert set(ok["split"]) == {"train"}
    out = capsys.readouterr().out
    assert "clean: warning: 3 families have no val images left" in out and "no test images left" in out
    # random weights (pretrained None) make unlike images alike: said, with what to give (round 62)
    assert re.search(r"clean: warning: \d+ images moved split with \d+ near-duplicate groups?, found with random "
                     r"weights \(--pretrained none\), under which unlike images look alike: give the model's "
                     r"pretrained weights, or a --near-duplicate-threshold nearer 1 than 0.5\n", out), out
    md = (tmp_path / "clean.md").read_text()
    # how far the scoring splits shrank, and each family's val and test images left (round 62: neither said)
    assert re.search(r"- usable images per split, before -> after: train \d+ -> \d+, val [1-9]\d* -> 0, test "
                     r"[1-9]\d* -> 0\n", md), md
    assert "| family | before | after | val after | test after |" in md and re.search(r"\| `?Felidae`? \| \d+ \| \d+ "
                                                                                  r"\| 0 \| 0 \|", md)
    assert "**warning**: 3 families have no val images left (`Felidae`, " in md and "near-duplicate groups moved " \
        "to another split (raise --near-duplicate-threshold: each group goes whole to the split most of it was in) " \
        "took them from " \
        "`Felidae`, `Ranidae`, `Salmonidae`, so they count in no val score" in md
    assert "no test images left (`Felidae`, `Ranidae`, `Salmonidae`): near-duplicate groups moved to another split " \
        "(raise --near-duplicate-threshold: each group goes whole to the split most of it was in) took them all" in md

    # the rule met, the floor kept them: status ok with an empty reason, in no report (hostile tester round 33)
    floored = run_clean(str(tmp_path), replace(CFG, removal="threshold", outlier_z=1.0, min_per_family=1000))
    spared = floored[(floored["status"] == "ok") & (floored["outlier_z"] > 1.0)]
    assert len(spared) and (floored["status"] != "removed").all()
    assert spared["reason"].str.fullmatch(r"kept, though centroid outlier: robust z-score [\d.]+ > 1 within its "
                                          r"family: --min-per-family 1000 keeps that many of its family").all(), \
        spared["reason"].tolist()
    assert (floored.loc[(floored["status"] == "ok") & (floored["outlier_z"] <= 1.0), "reason"].fillna("") == "").all()
    md = (tmp_path / "clean.md").read_text()
    assert f"; {len(spared)} more met the rule but are kept, so that each family keeps --min-per-family 1000 " in md
    assert "## Kept by --min-per-family" in md and all(p in md for p in spared["path"])
    from speciesfam.summaries import summary_line

    assert f"; {len(spared)} outliers kept by --min-per-family (see clean.md)" in summary_line(str(tmp_path), "clean")


@pytest.mark.slow  # ~15 s; the default run goes through the Ray pipeline in the test above
def test_ray_pipeline_and_plain_loop_give_the_same_embeddings(collection, tmp_path, ray_session, monkeypatch,
                                                                capsys):
    from speciesfam import console

    root, _ = collection
    manifest = run_catalog(str(root), str(tmp_path))
    rows = manifest[manifest["status"] == "ok"].head(12)
    cfg = CleanConfig(model="ViT-S-32", pretrained=None, batch_size=4)
    a = embed_plain(rows, cfg).set_index("path")
    monkeypatch.setattr(console, "PROGRESS_EVERY_S", 0.0)  # a progress line after every batch but the last
    b = embed_with_ray(rows, cfg).set_index("path").loc[a.index]
    progress = [ln for ln in capsys.readouterr().out.splitlines() if ln.endswith("images embedded")]
    assert progress and progress[-1].startswith("clean: ") and all(f"/{len(rows)} " in ln for ln in progress)
    assert (a["error"] == "").all() and (b["error"] == "").all()
    ea, eb = np.stack(a["embedding"].to_numpy()), np.stack(b["embedding"].to_numpy())
    assert ea.shape == (12, 384)
    np.testing.assert_allclose(ea, eb, atol=1e-5)
    assert np.abs(ea - ea[0]).max() > 1e-3  # different images give different embeddings


@pytest.mark.slow  # ~25 s (a text tower on CPU); the default run stays near 5 minutes
def test_zero_shot_wiring_removes_with_reasons_and_respects_the_minimum(collection, tmp_path, ray_session):
    root, _ = collection
    manifest = run_catalog(str(root), str(tmp_path))
    cfg = CleanConfig(model="ViT-S-32", pretrained=None, batch_size=8, removal="quota", contamination=0.0, min_per_family=7,
                      zero_shot=True, zero_shot_threshold=0.01)  # random weights: everything looks "non-photo"
    cleaned = run_clean(str(tmp_path), cfg)
    before = manifest[manifest["status"] == "ok"].groupby("label").size()
    after = cleaned[cleaned["status"] == "ok"].groupby("label").size()
    assert (after == before.clip(upper=7)).all()
    removed = pd.read_csv(tmp_path / "removed.csv")
    assert (removed["detector"] == "zero_shot").all() and removed["reason"].str.startswith("zero-shot: looks like").all()
    md = (tmp_path / "clean.md").read_text()  # it named only the centroid rule for removals the zero-shot check made
    assert f"; {len(removed)} of them by the zero-shot check (CLIP's non-photo probability > 0.01)" in md, md[:600]
    kept = cleaned[cleaned["status"] == "ok"]  # "non-photos" too, kept by the floor: said with the zero-shot reason
    said = kept["reason"].fillna("")
    assert said.str.startswith("kept, though zero-shot: looks like").sum() > 0, said.tolist()
    assert (said.str.startswith("kept, though zero-shot: looks like") | (said == "")).all(), said.tolist()


def test_planted_outliers_score_highest_with_a_custom_embedder(tmp_path, ray_session):
    """Maps, labels and drawings planted among colour creature photos get their family's top outlier score,
    through the whole Ray pipeline with a user `module:factory` embedder (colour histograms: no weights
    needed). No grayscale scans here: to colour histograms those are as unusual as the planted non-photos."""
    from speciesfam.data.synthetic import make_collection

    root = tmp_path / "images"
    planted = make_collection(root, counts={"Felidae": 14, "Ranidae": 10, "Salmonidae": 8}, grayscale=0,
                              extras=False, size=64, seed=2)
    run_catalog(str(root), str(tmp_path))
    cfg = CleanConfig(embedder="speciesfam.data.embedders:color_histogram_embedder", detector="centroid",
                      removal="quota", contamination=0.0, batch_size=8)
    cleaned = run_clean(str(tmp_path), cfg)
    emb = pd.read_parquet(tmp_path / "embeddings.parquet")
    assert emb["model_id"].str.fullmatch(r"custom:speciesfam\.data\.embedders:color_histogram_embedder \(code digest "
                                         r"[0-9a-f]{12}\)").all(), emb["model_id"].unique()
    ok = cleaned[cleaned["outlier_score"].notna()]
    top = ok.loc[ok.groupby("label")["outlier_score"].idxmax(), "path"]
    found = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in top}
    assert set(planted["outliers"]) <= found, (planted["outliers"], found)


def test_bad_custom_embedder_names_the_problem():
    from speciesfam.data.embedders import load_embedder

    with pytest.raises(ValueError, match="cannot import 'nope'"):
        load_embedder(CleanConfig(embedder="speciesfam.data.embedders:nope"))


@pytest.mark.slow  # ~10 s (open_clip loads in a fresh process); keeps the default run under 5 minutes
def test_pretrained_weights_that_cannot_be_had_fail_in_one_line_before_any_actor(tmp_path, monkeypatch):
    """Offline, the default tag made every embedding actor fail with a traceback on the console while Ray retried
    them for about a minute (hostile tester: 241 lines, 65 s); now the driver checks first, in a child process.
    The hub is pointed at a closed local port and the cache at an empty folder, so this holds online too."""
    import time

    from speciesfam.data.embedders import LOAD_FAILED, fetch_pretrained
    from speciesfam.errors import SpeciesfamError

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    start = time.time()
    with pytest.raises(SpeciesfamError) as err:
        fetch_pretrained(CleanConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    text = str(err.value)
    assert text.startswith(f"{LOAD_FAILED} 'ViT-B-32' with pretrained='laion2b_s34b_b79k': 127.0.0.1 cannot be "
                           "reached") and "\n" not in text and text.endswith("--pretrained none (random weights).")
    assert time.time() - start < 40  # the client's own retries took ~45 s
    with pytest.raises(SpeciesfamError, match="'nope' is neither a local file nor an open_clip tag for ViT-B-32"):
        fetch_pretrained(CleanConfig(model="ViT-B-32", pretrained="nope"))
    # the README's reference recipe: a hub model took ~1 minute and 238 lines, its error said pretrained=None
    with pytest.raises(SpeciesfamError) as err:
        fetch_pretrained(CleanConfig(model="hf-hub:imageomics/bioclip"))
    text = str(err.value)
    assert text.startswith(f"{LOAD_FAILED} 'hf-hub:imageomics/bioclip': 127.0.0.1 cannot be reached") and \
        "pretrained=" not in text and "--model local-dir:PATH" in text and "\n" not in text, text
    for nothing_to_fetch in (CleanConfig(pretrained=None), CleanConfig(pretrained=str(tmp_path))):
        fetch_pretrained(nothing_to_fetch)  # random weights, a local file: no child process, no error
    # a local-dir: copy that open_clip cannot load: every actor failed (136 lines of Ray's retries), and one without
    # weights would have embedded with random ones, unsaid (hostile tester round 31)
    local = tmp_path / "bioclip"
    for made, problem in ((None, f"{local} is not a folder"), ("dir", f"{local} holds no open_clip_config.json"),
                          ("{}", "open_clip_config.json has no 'model_cfg'"), ("{oops", "cannot be read as JSON"),
                          ('{"model_cfg": {}}', f"{local} holds no weights file (*.safetensors, *.bin or *.pth)")):
        if made == "dir":
            local.mkdir()
        elif made:
            (local / "open_clip_config.json").write_text(made)
        with pytest.raises(SpeciesfamError) as err:
            fetch_pretrained(CleanConfig(model=f"local-dir:{local}"))
        assert str(err.value).startswith(f"{LOAD_FAILED} 'local-dir:{local}': ") and problem in str(err.value) and \
            "Copy a hub model's files there" in str(err.value), str(err.value)
    # damaged weights, a Git LFS pointer (a clone without LFS): every actor failed with a page of errors (round 32)
    for name, data, problem in (("open_clip_model.safetensors", b"version https://git-lfs.github.com/spec/v1\n",
                                 "is a Git LFS pointer, not the weights: run `git lfs pull`"),
                                ("open_clip_model.safetensors", b"garbage", "is no safetensors file"),
                                ("open_clip_pytorch_model.bin", b"garbage", "is no PyTorch weights file")):
        for old in local.glob("*.safetensors"):
            old.unlink()
        (local / name).write_bytes(data)
        with pytest.raises(SpeciesfamError, match=f"{local / name} {problem}"):
            fetch_pretrained(CleanConfig(model=f"local-dir:{local}"))
    import torch

    torch.save({"w": torch.zeros(1)}, local / "open_clip_pytorch_model.bin")
    fetch_pretrained(CleanConfig(model=f"local-dir:{local}"))  # looks like weights: open_clip says the rest
    # loading it where the bundle's predictor does: one line, not a 46-line traceback (round 32)
    from speciesfam.data.embedders import open_clip_embedder

    with pytest.raises(SpeciesfamError, match=f"{LOAD_FAILED} 'local-dir:{local}'"):
        open_clip_embedder(CleanConfig(model=f"local-dir:{local}"))
    # weights of another size than its config says: torch's detail spans lines, and clean's driver kept the first
    # ('... state_dict for CLIP:'; round 45)
    from test_local_weights import TINY, tiny_open_clip

    other = tiny_open_clip(tmp_path / "other", 0)
    (other / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**TINY, "embed_dim": 32}}))
    with pytest.raises(SpeciesfamError, match=f"{LOAD_FAILED} 'local-dir:{other}'") as err:
        open_clip_embedder(CleanConfig(model=f"local-dir:{other}"))
    assert "\n" not in str(err.value) and "state_dict for CLIP: size mismatch for " in str(err.value), str(err.value)


def test_a_very_thin_image_is_embedded_from_its_middle_with_the_same_pixels():
    """A 10,000 x 1 image took 3.5 GB in open_clip's preprocessing (its short side resized to 224 first); the
    model's centre crop keeps the middle square, so the middle 10:1 gives the same input, up to where the crop
    falls within a pixel of the resized image (round 42)."""
    import open_clip
    from PIL import Image

    from speciesfam.data.embedders import MAX_ASPECT, Embedder

    transform, seen = open_clip.image_transform(224, is_train=False), []

    def preprocess(img):
        seen.append(img.size)
        return transform(img).numpy()

    embedder = Embedder("t", preprocess, lambda batch: batch.reshape(len(batch), -1))
    for shape in ((3, 500, 3), (701, 5, 3), (40, 60, 3)):
        y, x = np.mgrid[:shape[0], :shape[1]]  # a picture, not noise: smooth along the long side
        image = np.stack([(127 + 120 * np.sin(x / 7 + y / 9 + c)).astype(np.uint8) for c in range(3)], -1)
        whole = transform(Image.fromarray(image)).numpy().reshape(-1)
        diff = np.abs(embedder.embed([image])[0] - whole)
        assert diff.max() < 0.05 and diff.mean() < 0.005, (shape, diff.max(), diff.mean())
        assert max(seen[-1]) <= MAX_ASPECT * min(seen[-1]) + 1  # + 1: as much cut from each end
    assert seen == [(30, 3), (5, 51), (60, 40)]
