"""Embedders read from local files (a ``--model local-dir:FOLDER`` copy of an open_clip model, a ``--pretrained``
weights file, a ``module:factory``'s source): the weights' (or code's) sha256 is part of the embeddings' identity, so weights replaced in place are never
mistaken for the ones clean embedded with (the cache embeds again, export refuses a head trained on the old)."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from speciesfam.config import CleanConfig
from speciesfam.data.embedders import model_id, split_id, weights_files

TINY = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def tiny_open_clip(folder: Path, seed: int) -> Path:
    """A real open_clip model folder (config + safetensors, ~7 MB) as `huggingface-cli download` leaves one."""
    import torch
    from safetensors.torch import save_file

    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_file(open_clip.CLIP(**TINY).state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY}))
    return folder


def files_only(tmp_path: Path) -> tuple[Path, CleanConfig]:
    """A local-dir folder of files that only look like a model (ids and digests read no weights)."""
    local = tmp_path / "model"
    local.mkdir()
    (local / "open_clip_config.json").write_text('{"model_cfg": {}}')
    (local / "open_clip_model.safetensors").write_bytes(b"first weights")
    return local, CleanConfig(model=f"local-dir:{local}")


def test_a_local_models_id_carries_its_weights_digest(tmp_path):
    local, cfg = files_only(tmp_path)
    first = model_id(cfg)
    assert split_id(first)[0] == f"local-dir:{local}" and len(split_id(first)[1]) == 12, first
    assert weights_files(cfg) == [str(local / "open_clip_config.json"), str(local / "open_clip_model.safetensors")]
    assert model_id(cfg) == first  # the same bytes: the same id
    (local / "open_clip_model.safetensors").write_bytes(b"the other weights")  # another size: the same tick of the clock
    second = model_id(cfg)
    assert second != first and split_id(second)[0] == split_id(first)[0]
    (local / "open_clip_pytorch_model.bin").write_bytes(b"PK\x03\x04")  # open_clip still loads the safetensors
    assert model_id(cfg) == second
    (local / "open_clip_model.safetensors").unlink()  # now it loads the .bin
    assert model_id(cfg) not in (first, second)
    weights = tmp_path / "vit.pt"
    weights.write_bytes(b"a weights file")
    by_file = model_id(CleanConfig(model="ViT-B-32", pretrained=str(weights)))
    assert split_id(by_file)[0] == f"open_clip:ViT-B-32:{weights}" and split_id(by_file)[1]
    # a tag or random weights: no local file, the id as before (existing caches stay valid)
    assert model_id(CleanConfig(model="ViT-S-32", pretrained=None)) == "open_clip:ViT-S-32:random-init-seed0"
    assert split_id("open_clip:ViT-S-32:random-init-seed0") == ("open_clip:ViT-S-32:random-init-seed0", "")


def test_a_factory_embedders_id_carries_its_modules_code_digest(tmp_path, monkeypatch):
    """A ``module:factory`` embedder whose code changed kept its id: clean reused the vectors of the old code, and
    export made a bundle of the new code for a head trained on them (round 72)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_embedder.py").write_text("def make():\n    return lambda images: images\n")
    cfg = CleanConfig(embedder="my_embedder:make")
    first = model_id(cfg)
    assert re.fullmatch(r"custom:my_embedder:make \(code digest [0-9a-f]{12}\)", first), first
    assert split_id(first)[0] == "custom:my_embedder:make" and weights_files(cfg) == [str(tmp_path / "my_embedder.py")]
    (tmp_path / "my_embedder.py").write_text("def make():\n    return lambda images: images * 2\n")
    assert model_id(cfg) != first and split_id(model_id(cfg))[0] == split_id(first)[0]
    assert model_id(CleanConfig(embedder="no_such_module:make")) == "custom:no_such_module:make"  # said when loaded
    # a bundle of the head trained on the first code's vectors is refused on load, saying why
    from speciesfam.bundle import BundleError
    from speciesfam.bundle_embedder import embedder_config

    with pytest.raises(BundleError, match=re.escape(
            f"embedder module {tmp_path / 'my_embedder.py'} changed since this bundle's head was trained on its "
            f"vectors (code digest {split_id(first)[1]} -> {split_id(model_id(cfg))[1]}): restore it, or run clean, "
            "the probe search and export again")):
        embedder_config({"embedder": "my_embedder:make", "model_id": first})
    assert embedder_config({"embedder": "my_embedder:make", "model_id": model_id(cfg)}).embedder == "my_embedder:make"
    with pytest.raises(BundleError, match=re.escape(  # not importable here: not 'changed' (round 75)
            "this bundle embeds with gone_embedder:make, whose module 'gone_embedder' cannot be found here: put the "
            "folder that holds it on PYTHONPATH")):
        embedder_config({"embedder": "gone_embedder:make", "model_id": "custom:gone_embedder:make (code digest "
                                                                      "0123456789ab)"})
    # a probe search on the embeddings of the first code is refused before Ray starts (it trained on them: round 75)
    from speciesfam import layout, stages
    from speciesfam.data.synthetic_embeddings import make_embedding_run
    from speciesfam.errors import StageOrderError
    from speciesfam.train.probe import probe_arrays

    run = str(tmp_path / "run")
    make_embedding_run(run, rows=30, dim=4, families=3)
    emb = pd.read_parquet(tmp_path / "run" / layout.EMBEDDINGS)
    emb.assign(model_id=first).to_parquet(tmp_path / "run" / layout.EMBEDDINGS)
    stages.finish(run, "clean", config={"model": "ViT-B-32", "embedder": "my_embedder:make", "model_id": first})
    labels = sorted(set(emb["label"]))
    with pytest.raises(StageOrderError, match=re.escape(
            f"clean embedded with {first!r}, but {tmp_path / 'my_embedder.py'} now holds other code (digest "
            f"{split_id(model_id(cfg))[1]}): restore it, or run `PYTHONPATH=")):
        probe_arrays(run, labels)
    (tmp_path / "my_embedder.py").write_text("def make():\n    return lambda images: images\n")  # restored
    assert len(probe_arrays(run, labels)[0]["train"][0])


@pytest.mark.slow
def test_weights_replaced_in_place_are_embedded_again_and_refused_by_export(collection, ray_session, tmp_path,
                                                                            capsys):
    """The folder's weights replaced after clean: export made a bundle of the new weights for a head trained on
    embeddings of the old (other predictions, exit 0), and clean again reused the old embeddings."""
    from speciesfam.config import TuneConfig
    from speciesfam.data.catalog import run_catalog
    from speciesfam.data.clean import run_clean
    from speciesfam.errors import StageOrderError
    from speciesfam.export import export_bundle
    from speciesfam.tune.search import run_search

    root, _ = collection
    local = tiny_open_clip(tmp_path / "model", seed=0)
    workdir = str(tmp_path / "run")
    run_catalog(str(root), workdir)
    cfg = CleanConfig(model=f"local-dir:{local}", pretrained=None, batch_size=8, removal="quota", contamination=0.1,
                      min_per_family=6, near_duplicate_threshold=1.0)  # random weights: every image alike
    tune = TuneConfig(kind="probe", num_samples=1, max_epochs=2, smoke_test=True, cpus_per_trial=1)
    run_clean(workdir, cfg)
    run_search(workdir, tune)
    bundle = json.loads(Path(export_bundle(workdir, out=str(tmp_path / "b1")), "config.json").read_text())
    trained_on = bundle["embedder"]["model_id"]
    assert split_id(trained_on)[1], trained_on

    shutil.copy(tiny_open_clip(tmp_path / "other", seed=1) / "open_clip_model.safetensors", local)
    with pytest.raises(StageOrderError) as err:
        export_bundle(workdir, out=str(tmp_path / "b2"))
    said = str(err.value)
    assert f"{local / 'open_clip_model.safetensors'} now hold other weights" in said and \
        f"speciesfam clean --workdir {workdir} --model local-dir:{local}" in said, said
    assert not (tmp_path / "b2").exists()
    # the bundle made before refuses the new weights: a folder's prediction too, before any actor starts (each
    # actor failed with a traceback of 60 lines)
    from speciesfam.bundle import BundleError
    from speciesfam.predict import predict_collection

    with pytest.raises(BundleError, match="open_clip_model.safetensors is not the file this bundle's head was "
                                          "trained on"):
        predict_collection(str(tmp_path / "b1"), out=str(tmp_path / "p.parquet"), source=str(root))

    capsys.readouterr()
    run_clean(workdir, cfg)
    out = capsys.readouterr().out
    assert re.search(rf"\(0 cached, [1-9]\d* cached with other weights than {re.escape(str(local))} now holds: "
                     "embedded again", out), out
    with pytest.raises(StageOrderError, match="built from an older clean run"):  # the head still has the old ones
        export_bundle(workdir, out=str(tmp_path / "b2"))
    run_search(workdir, tune)
    again = json.loads(Path(export_bundle(workdir, out=str(tmp_path / "b2")), "config.json").read_text())
    assert again["embedder"]["model_id"] != trained_on
    assert split_id(again["embedder"]["model_id"])[0] == split_id(trained_on)[0]


def test_a_folder_of_several_weights_files_is_said_once_in_the_tools_words(tmp_path, caplog):
    """open_clip logged 'Multiple checkpoints found in ...' in every actor (of a single non-preferred file too);
    clean says once which file it loads."""
    import logging

    from speciesfam.data.embedders import local_dir_choice, open_clip_embedder

    local = tiny_open_clip(tmp_path / "model", seed=0)
    (local / "open_clip_model.safetensors").rename(local / "b.safetensors")
    assert local_dir_choice(str(local)) == ""  # one file: nothing to choose
    shutil.copy(local / "b.safetensors", local / "a.safetensors")
    (local / "c.bin").write_bytes(b"PK\x03\x04")
    assert local_dir_choice(str(local)) == (f"{local} holds 3 weights files; open_clip loads 'a.safetensors' (not "
                                            "'b.safetensors', 'c.bin'): remove the others if that is not the one meant")
    with caplog.at_level(logging.INFO):
        open_clip_embedder(CleanConfig(model=f"local-dir:{local}"))
    assert "Multiple checkpoints" not in caplog.text and "a.safetensors" in caplog.text  # its own info line stays


def test_weights_replaced_while_clean_runs_stop_it_before_it_records_them(tmp_path):
    """clean recorded the digest of the weights there when it ended, not of those it embedded with: export then
    told the user to re-run the probe search, which changed nothing (hostile tester round 36)."""
    from speciesfam.data.embedding import weights_changed
    from speciesfam.errors import SpeciesfamError

    local, cfg = files_only(tmp_path)
    read = model_id(cfg)
    weights_changed(read, model_id(cfg))  # the same: nothing to say
    (local / "open_clip_model.safetensors").write_bytes(b"the other weights")
    with pytest.raises(SpeciesfamError) as err:
        weights_changed(read, model_id(cfg))
    assert str(err.value) == (f"the weights of local-dir:{local} changed while clean ran (digest {split_id(read)[1]} "
                              f"-> {split_id(model_id(cfg))[1]}): run clean again once they stay put")


def test_a_probe_bundle_shipped_to_another_machine_reads_its_weights_from_weights_dir(tmp_path):
    """A probe bundle records where clean read its local weights (local-dir:/abs/folder): shipped elsewhere it was
    refused ('copy it there') with no way to say where the copy is (hostile tester round 45). --weights-dir: the
    same files by name, each checked against its sha256; the same model embeds the same."""
    import numpy as np

    from speciesfam.bundle import BundleError
    from speciesfam.bundle_embedder import embedder_config
    from speciesfam.data.embedders import load_embedder
    from speciesfam.bundle_embedder import embedder_record

    local = tiny_open_clip(tmp_path / "clip", 0)
    cfg = CleanConfig(model=f"local-dir:{local}", pretrained=None)
    spec = embedder_record({"model_id": model_id(cfg), "model": cfg.model, "pretrained": None})
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    before = load_embedder(embedder_config(spec)).embed([image])
    shipped = tmp_path / "elsewhere" / "models"
    shutil.copytree(local, shipped)
    shutil.rmtree(local)  # the machine it was exported on
    with pytest.raises(BundleError, match="which is not on this machine; copy it there, or give --weights-dir FOLDER"):
        embedder_config(spec)
    moved = embedder_config(spec, str(shipped))
    assert moved.model == f"local-dir:{shipped}"
    assert np.allclose(load_embedder(moved).embed([image]), before, atol=1e-6)
    (shipped / "open_clip_model.safetensors").write_bytes(b"other weights")  # not the copy it was trained on
    with pytest.raises(BundleError, match="is not the file this bundle's head was trained on"):
        embedder_config(spec, str(shipped))
    with pytest.raises(BundleError, match=f"which is not in --weights-dir {tmp_path}"):
        embedder_config(spec, str(tmp_path))
    with pytest.raises(BundleError, match="--weights-dir .*nowhere is not a folder"):
        embedder_config(spec, str(tmp_path / "nowhere"))
    # a --pretrained weights file: the file of its name in that folder
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"trained weights")
    from speciesfam.bundle import sha256_file

    file_spec = {"model_id": model_id(CleanConfig(model="ViT-S-32", pretrained=str(weights))), "model": "ViT-S-32",
                 "pretrained": str(weights), "pretrained_sha256": sha256_file(str(weights))}
    (tmp_path / "copy").mkdir()
    shutil.move(weights, tmp_path / "copy" / "w.bin")
    assert embedder_config(file_spec, str(tmp_path / "copy")).pretrained == str(tmp_path / "copy" / "w.bin")


def test_a_probe_bundle_of_a_pretrained_tag_offline_is_refused_in_one_line_with_a_fix_for_predict(tmp_path):
    """A bundle of clean's default (an open_clip tag): offline, predict retried the hub for 50 s, printing 46
    lines, then advised clean's --pretrained; a tag open_clip does not know was a traceback (hostile tester round
    47). The weights are looked for as clean looks for them, and the advice is predict's."""
    from speciesfam.bundle import BundleError
    from speciesfam.bundle_embedder import embedder_config

    for tag in ("laion2b_s34b_b79k", "no_such_tag"):
        spec = {"model_id": f"open_clip:ViT-S-32:{tag}", "model": "ViT-S-32", "pretrained": tag,
                "source": "open_clip pretrained tag"}
        with pytest.raises(BundleError, match=r"^could not load open_clip model 'ViT-S-32' with pretrained=.* The "
                                              r"bundle's embedder needs those weights: on an offline machine, copy the "
                                              r"Hugging Face cache") as err:
            embedder_config(spec, str(tmp_path))  # --weights-dir has nothing to read for it
        assert "\n" not in str(err.value) and "--pretrained none" not in str(err.value), str(err.value)
