"""Image embedders: open_clip (architecture + pretrained tag, ``hf-hub:`` models such as BioCLIP, or a local
weights file) and a user's own ``module:factory``.

Every embedder has one interface: ``preprocess(PIL RGB image) -> float32 array`` (the model's own eval
transform) and ``encode(stacked batch) -> (N, D) float32 L2-normalised embeddings``. A user factory is a
callable returning ``(preprocess, encode)``; DINOv2, BioCLIP or Keras features plug in without code changes.

These functions import torch: they run inside Ray actors (or a benchmark process), never in the driver.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..config import CleanConfig
from ..errors import SpeciesfamError

RANDOM_INIT_SEED = 0
LOAD_FAILED = "could not load open_clip model"  # the driver finds this line in an actor's error


@dataclass
class Embedder:
    model_id: str  # recorded next to every embedding; a different id invalidates the cache
    preprocess: Callable[[Any], np.ndarray]
    encode: Callable[[np.ndarray], np.ndarray]
    encode_text: Callable[[list[str]], np.ndarray] | None = None

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 arrays -> (N, D) float32 embeddings: the one path from images to embeddings, for the clean
        stage and for probe bundles alike (a head must see its training embeddings' preprocessing)."""
        from PIL import Image

        x = np.stack([self.preprocess(Image.fromarray(centre_crop_aspect(np.asarray(im, np.uint8))))
                      for im in images])
        return np.asarray(self.encode(x), np.float32)


# The longest side an image keeps, in multiples of its shortest, before the model's preprocessing. open_clip's
# resizes the shortest side to 224 first: a 10,000 x 1 image became a 2,240,000 x 224 float image (3.5 GB; one of
# 100,000 x 1, a few hundred bytes on disk, ~20 GB: hostile tester round 42). Its centre crop keeps only the middle
# square, so keeping the middle 10:1 gives it the same input, up to where the crop falls within a pixel of the
# resized image (checked in tests/test_clean.py).
MAX_ASPECT = 10


def centre_crop_aspect(image: np.ndarray, limit: int = MAX_ASPECT) -> np.ndarray:
    """The middle of an (H, W, 3) image whose long side is over ``limit`` times its short side, cut to that."""
    h, w = image.shape[:2]
    keep = limit * max(1, min(h, w))
    if max(h, w) <= keep:
        return image
    keep += (max(h, w) - keep) % 2  # as much cut from each end: the middle stays the middle
    if w > h:
        return image[:, (w - keep) // 2:(w - keep) // 2 + keep]
    return image[(h - keep) // 2:(h - keep) // 2 + keep]


def model_id(cfg: CleanConfig) -> str:
    """The identity of the embeddings ``cfg`` produces (cache key). A model read from local files (a
    ``local-dir:`` folder, a ``--pretrained`` weights file) carries a digest of their sha256s: weights replaced in place
    are another model (the cache embeds again; export refuses a probe trained on the old ones). So does a
    ``module:factory`` embedder, of its module's source file: its code changed, its vectors cached before were
    reused (round 72)."""
    if cfg.embedder:
        base = f"custom:{cfg.embedder}"
    elif cfg.model.startswith(("hf-hub:", "local-dir:")):
        base = cfg.model
    else:
        base = f"open_clip:{cfg.model}:{cfg.pretrained or f'random-init-seed{RANDOM_INIT_SEED}'}"
    files = weights_files(cfg)
    if not files:
        return base
    digest = hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()
    return f"{base} ({'code' if cfg.embedder else 'weights'} digest {digest[:12]})"


def split_id(mid: str) -> tuple[str, str]:
    """A model id -> (the model as named, the digest of its local weights files or code, '' for none)."""
    found = re.fullmatch(r"(.*) \((?:weights|code) digest ([0-9a-f]{12})\)", mid or "")
    return (found[1], found[2]) if found else (mid, "")


def embedder_source(embedder: str) -> str | None:
    """The source file of a ``module:factory`` embedder's module, found without importing it (it may import
    torch, and TensorFlow may be loaded); None when it is not found or is no file."""
    try:
        origin = importlib.util.find_spec(embedder.partition(":")[0]).origin
    except (ImportError, AttributeError, ValueError):
        return None
    return origin if origin and os.path.isfile(origin) else None


def weights_files(cfg: CleanConfig) -> list[str]:
    """The local files that hold ``cfg``'s weights (absolute paths): a ``local-dir:`` folder's config and the
    weights file open_clip loads, or a ``--pretrained`` file; a factory's module source; none for a tag or a hub
    model."""
    if cfg.embedder:
        files = [embedder_source(cfg.embedder)]
    elif cfg.model.startswith("hf-hub:"):
        return []
    elif cfg.model.startswith("local-dir:"):
        folder = cfg.model[len("local-dir:"):]
        files = [os.path.join(folder, "open_clip_config.json"), local_dir_weights(folder)]
    else:
        files = [cfg.pretrained] if cfg.pretrained else []
    return [os.path.abspath(f) for f in files if f and os.path.isfile(f)]


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: str) -> str:
    """sha256 of a file, read once per process for a given size and modification time (weights are GBs)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


# Python that imports open_clip.pretrained's functions without the package's __init__, which imports timm and
# torchvision's ops (~5 s more here: benchmarks/clean_start.py); the whole package if its layout ever changes.
PRETRAINED_ALONE = """
import importlib.util, sys, types
try:
    pkg = types.ModuleType("open_clip")
    pkg.__path__ = list(importlib.util.find_spec("open_clip").submodule_search_locations)
    sys.modules["open_clip"] = pkg
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg, list_pretrained_tags_by_model
except ImportError:
    for name in [m for m in sys.modules if m.split(".")[0] == "open_clip"]:
        del sys.modules[name]
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg, list_pretrained_tags_by_model
"""

_FETCH = """
import os, socket, sys, urllib.parse
model, tag, host = sys.argv[1:4]
try:  # unreachable: the local cache only (Hugging Face's client retries a failed request for ~45 s)
    socket.create_connection((host, 443), timeout=5).close()
except OSError as err:
    os.environ["HF_HUB_OFFLINE"] = "1"
    print(f"{host} cannot be reached ({err}); looked in the local cache only", file=sys.stderr)
if model.startswith("hf-hub:"):  # the hub model's open_clip config: where it is missing, so are its weights
    from huggingface_hub import hf_hub_download
    hf_hub_download(model[len("hf-hub:"):], "open_clip_config.json")
    sys.exit(0)
""" + PRETRAINED_ALONE + """
tags = list_pretrained_tags_by_model(model)
if tag not in tags:
    sys.exit(f"pretrained={tag!r} is neither a local file nor an open_clip tag for {model}; tags: {tags}")
download_pretrained(get_pretrained_cfg(model, tag))
"""


def local_dir_problem(folder: str) -> str:
    """Why ``--model local-dir:FOLDER`` cannot load, as open_clip reads such a folder ('' if it can): the folder,
    its ``open_clip_config.json`` with a 'model_cfg', and a weights file (without one open_clip builds random
    weights and only logs a warning)."""
    import json

    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    config = os.path.join(folder, "open_clip_config.json")
    try:
        with open(config, encoding="utf-8") as f:
            ok = "model_cfg" in json.load(f)
    except FileNotFoundError:
        return f"{folder} holds no open_clip_config.json"
    except (OSError, ValueError) as err:
        return f"{config} cannot be read as JSON ({err})"
    if not ok:
        return f"{config} has no 'model_cfg'"
    weights = local_dir_weights(folder)
    return weights_problem(weights) if weights else f"{folder} holds no weights file (*.safetensors, *.bin or *.pth)"


def local_dir_weights(folder: str) -> str:
    """The weights file open_clip loads from a ``local-dir:`` folder ('' if it holds none). Hidden files count:
    open_clip's ``Path.glob`` finds '.x.safetensors' (a macOS '._' file too), ``glob.glob`` did not."""
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    found = {ext: [os.path.join(folder, n) for n in names if n.endswith(f".{ext}")]
             for ext in ("safetensors", "bin", "pth")}
    files = sorted(found["safetensors"]) + sorted(found["bin"] + found["pth"])  # open_clip's order
    named = [f for f in files if os.path.basename(f) in PREFERRED_WEIGHTS]  # the one open_clip takes
    if named:
        return min(named, key=lambda f: PREFERRED_WEIGHTS.index(os.path.basename(f)))
    return files[0] if files else ""


# open_clip's order of preference among a local-dir folder's weights files (factory._find_checkpoint_in_dir)
PREFERRED_WEIGHTS = ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                     "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth",
                     "model.pth"]


def weights_problem(path: str) -> str:
    """Why weights file ``path`` is no weights ('' if it looks like some), from its first bytes: a Git LFS pointer
    (a clone without LFS), a safetensors file whose header is damaged, a .bin/.pth that is no PyTorch file. Each
    failed in every actor with a page of errors ('header too large', torch's weights_only advice)."""
    with open(path, "rb") as f:
        head = f.read(64)
    size = os.path.getsize(path)
    if head.startswith(b"version https://git-lfs"):
        return f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` where it was cloned"
    if path.endswith(".safetensors"):
        n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
        if not (0 < n <= size - 8 and head[8:9] == b"{"):
            return f"{path} is no safetensors file (its header is damaged or missing)"
    elif not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save: a zip archive, or an old pickle
        return f"{path} is no PyTorch weights file (torch.save writes a zip archive)"
    return ""


def offline_options(cfg: CleanConfig) -> str:
    """What an offline machine can use instead of weights it cannot download."""
    if cfg.model.startswith("local-dir:"):
        return ("Copy a hub model's files there (open_clip_config.json and open_clip_model.safetensors, e.g. from "
                "huggingface-cli download ORG/NAME --local-dir FOLDER), or give an open_clip architecture with "
                "--pretrained none (random weights).")
    if cfg.model.startswith("hf-hub:"):
        return ("Offline machines need the model in the Hugging Face cache (HF_HOME), a copy of its files given as "
                "--model local-dir:PATH, or an open_clip architecture with --pretrained none (random weights).")
    return ("Offline machines need a local weights file (--pretrained PATH) or --pretrained none (random "
            "weights).")


def what_was_loaded(cfg: CleanConfig) -> str:
    """The model and its weights as the user named them, for error messages."""
    schema = cfg.model.startswith(("hf-hub:", "local-dir:"))
    return repr(cfg.model) if schema else f"{cfg.model!r} with pretrained={cfg.pretrained!r}"


def fetch_pretrained(cfg: CleanConfig) -> None:
    """Before any embedding actor starts: find the open_clip weights ``cfg.pretrained`` names in the local
    cache, or download them there once (the actors on this node then read the cache), in a child process
    (torch stays out of the driver). Offline or with a bad tag it fails in seconds with one line; before,
    every actor failed with a traceback on the console and Ray retried them for about a minute.

    Raises:
        SpeciesfamError: the weights cannot be had (``LOAD_FAILED``, the cause, and the offline options).
    """
    import subprocess
    import sys
    import urllib.parse

    hub = cfg.model.startswith("hf-hub:")
    if not cfg.embedder and cfg.model.startswith("local-dir:"):
        problem = local_dir_problem(cfg.model[len("local-dir:"):])
        if problem:
            raise SpeciesfamError(f"{LOAD_FAILED} {what_was_loaded(cfg)}: {problem}. {offline_options(cfg)}")
        return
    if cfg.embedder or (not hub and (not cfg.pretrained or os.path.exists(cfg.pretrained))):
        return
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    run = subprocess.run([sys.executable, "-c", _FETCH, cfg.model, str(cfg.pretrained), host or "huggingface.co"],
                         capture_output=True, text=True)
    if run.returncode:
        lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip()]
        cause = " ".join(ln for ln in lines if "cannot be reached" in ln)  # offline: say so first
        last = lines[-1] if lines else f"exit status {run.returncode}"
        if len(last) > 300:  # at a sentence's end (a cut word read as a typo)
            last = last[:last.rfind(". ", 0, 300) + 1 or 300]
        cause = (f"{cause}; " if cause else "") + last
        raise SpeciesfamError(f"{LOAD_FAILED} {what_was_loaded(cfg)}: {cause.rstrip('.')}. {offline_options(cfg)}")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@contextlib.contextmanager
def _quiet_open_clip(random_intended: bool) -> Iterator[None]:
    """Drop two of open_clip's root-logger warnings: "No pretrained weights loaded ... initialized randomly" when
    random weights were asked for (``--pretrained none``; a probe bundle, which loads its own weights next): on
    the console it reads as a failure that did not happen; and "Multiple checkpoints found" of a ``local-dir:``
    folder, which clean says once in its own words (``local_dir_choice``; each actor said it, even of one file)."""
    def keep(record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("Multiple checkpoints found")
                    or (random_intended and msg.startswith("No pretrained weights loaded")))

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def local_dir_choice(folder: str) -> str:
    """Which weights file open_clip loads from a ``local-dir:`` folder holding several ('' for one)."""
    loads = local_dir_weights(folder)
    others = sorted(n for n in os.listdir(folder) if n.endswith((".safetensors", ".bin", ".pth"))
                    and n != os.path.basename(loads)) if loads else []
    if not others:
        return ""
    return (f"{folder} holds {len(others) + 1} weights files; open_clip loads {os.path.basename(loads)!r} (not "
            + ", ".join(repr(n) for n in others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            + "): remove the others if that is not the one meant")


def open_clip_embedder(cfg: CleanConfig, device: str | None = None) -> Embedder:
    """Build an open_clip embedder; fp16 on GPU, fp32 on CPU.

    ``cfg.pretrained`` may be an open_clip tag (downloads, needs the network), a local file (air-gapped
    clusters) or ``None`` (random weights: offline tests and demos).
    """
    from .._lazy import torch_modules

    torch, open_clip = torch_modules()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    schema = cfg.model.startswith(("hf-hub:", "local-dir:"))
    pretrained = None if schema else cfg.pretrained
    if pretrained and not os.path.exists(pretrained) and pretrained not in open_clip.list_pretrained_tags_by_model(cfg.model):
        raise ValueError(f"pretrained={pretrained!r} is neither a local file nor an open_clip tag for "
                         f"{cfg.model}; tags: {open_clip.list_pretrained_tags_by_model(cfg.model)}")
    try:
        with torch.random.fork_rng(devices=[]):
            # Random weights (pretrained=None) are seeded, so every actor and every re-run builds the same
            # model: embeddings stay comparable across processes and the cache stays valid.
            torch.manual_seed(RANDOM_INIT_SEED)
            with _quiet_open_clip(pretrained is None):
                model, _, preprocess = open_clip.create_model_and_transforms(
                    cfg.model, pretrained=pretrained, device=device,
                    precision="fp16" if device == "cuda" else "fp32")
    except Exception as err:  # hub/network failures come in many types; name what was being fetched
        if pretrained or schema:
            # a SpeciesfamError: predict/evaluate loading a probe bundle's model say it in one line (a traceback)
            detail = " ".join(str(err).split()).rstrip(".")  # torch's state_dict mismatch spans lines: one line
            raise SpeciesfamError(f"{LOAD_FAILED} {what_was_loaded(cfg)}: {detail}. {offline_options(cfg)}") from err
        raise
    model.eval()
    dtype = next(model.parameters()).dtype

    def prep(img: Any) -> np.ndarray:
        return preprocess(img).numpy()

    @torch.no_grad()
    def encode(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device=device, dtype=dtype)
        return _normalise(model.encode_image(x).float().cpu().numpy())

    tokenizer = open_clip.get_tokenizer(cfg.model)

    @torch.no_grad()
    def encode_text(prompts: list[str]) -> np.ndarray:
        return _normalise(model.encode_text(tokenizer(prompts).to(device)).float().cpu().numpy())

    return Embedder(model_id(cfg), prep, encode, encode_text)


def load_embedder(cfg: CleanConfig) -> Embedder:
    """The embedder ``cfg`` names: a user ``module:factory`` or open_clip."""
    if not cfg.embedder:
        return open_clip_embedder(cfg)
    module, _, attr = cfg.embedder.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"embedder={cfg.embedder!r}: cannot import {attr!r} from module {module!r} ({err})") from err
    out = factory()
    if not (isinstance(out, tuple) and len(out) == 2 and all(callable(f) for f in out)):
        raise TypeError(f"embedder factory {cfg.embedder!r} must return (preprocess, encode) callables, got {out!r}")
    preprocess, encode = out
    return Embedder(model_id(cfg), preprocess, lambda b: _normalise(encode(b)))


def color_histogram_embedder(bins: int = 4):
    """A tiny CPU embedder: joint RGB histograms (bins^3) plus a coarse 4x4 layout of mean colours.

    An example of the ``module:factory`` interface (``--embedder speciesfam.data.embedders:color_histogram_embedder``)
    and a baseline that needs no weights: it separates maps, labels and drawings from photos by their colours,
    not by what is in them.
    """

    def preprocess(img: Any) -> np.ndarray:
        arr = np.asarray(img.convert("RGB").resize((64, 64)), dtype=np.float32) / 255.0
        idx = np.minimum((arr * bins).astype(int), bins - 1)
        hist = np.bincount(((idx[..., 0] * bins + idx[..., 1]) * bins + idx[..., 2]).ravel(), minlength=bins**3)
        layout = arr.reshape(4, 16, 4, 16, 3).mean(axis=(1, 3)).ravel()
        return np.concatenate([hist / hist.sum(), layout]).astype(np.float32)

    def encode(batch: np.ndarray) -> np.ndarray:
        return batch

    return preprocess, encode
