"""The bundle: what ``export`` writes and ``load_bundle`` reads, and the one predictor interface over it.

A bundle is a folder; two kinds share one schema (``config.json``: ``schema``, ``schema_version``, ``kind``,
``labels``, ...) and one interface from the outside::

    predictor = load_bundle("RUN/bundle")
    probs = predictor.predict([rgb_uint8_array, ...])      # (n, len(predictor.labels)), rows sum to 1

- ``kind: "cnn"``: ``model.keras`` (raw 0..255 RGB in, carries its own preprocessing; Keras safe mode) and
  ``saved_model/`` (TF SavedModel for serving).
- ``kind: "probe"``: ``head.keras`` (a Keras head on L2-normalised embeddings) and ``config.json["embedder"]``,
  which records how to embed: an open_clip architecture with its pretrained tag, a local weights file (path
  and sha256), a ``local-dir:`` folder (the sha256 of its config and weights), or a user's ``module:factory``. The embedder's own preprocessing is rebuilt from that record
  (``speciesfam.data.embedders.load_embedder``), so images go in raw, as for a CNN.

Every bundle also has ``labels.json``, ``metrics.json``, ``MODEL_CARD.md``, ``seen.parquet`` (the sha256 of the
images it was trained on and chosen by, ``speciesfam.seen``; bundles exported before it have none) and
``checksums.json`` (sha256 of every other file, written last): a bundle with a missing, truncated or edited file
is refused on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from typing import Any, Sequence

import numpy as np

from .errors import SpeciesfamError

SCHEMA, SCHEMA_VERSION = "speciesfam-bundle", 2
CONFIG, LABELS, METRICS, CARD, CHECKSUMS = "config.json", "labels.json", "metrics.json", "MODEL_CARD.md", "checksums.json"
CNN_MODEL, SAVED_MODEL, PROBE_HEAD = "model.keras", "saved_model", "head.keras"
KINDS = ("cnn", "probe")
MAX_IMAGE_SIZE = 4096  # a CNN bundle's input side, checked on load (the search trains 32 to 1024)
MODEL_FILE = {"cnn": CNN_MODEL, "probe": PROBE_HEAD}


class BundleError(SpeciesfamError, ValueError):
    """A bundle is missing, incomplete, damaged or of an unknown schema; the message says what and the fix."""


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def files_in(folder: str) -> list[str]:
    """Every file under ``folder`` as a relative POSIX path, sorted."""
    return sorted(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
                  for root, _, files in os.walk(folder) for name in files)


def checksums(folder: str) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative POSIX paths), except ``checksums.json`` itself."""
    return {rel: sha256_file(os.path.join(folder, rel)) for rel in files_in(folder) if rel != CHECKSUMS}


def changed_files(bundle: str, expected: dict[str, str]) -> list[str]:
    """The files of ``expected`` (checksums.json: file -> sha256) that are gone from ``bundle`` or differ; a name
    outside the bundle folder is never read (counted as gone)."""
    return [f for f, digest in expected.items() if not _inside(bundle, f) or not os.path.isfile(os.path.join(bundle, f))
            or sha256_file(os.path.join(bundle, f)) != digest]


def bundle_id(bundle: str) -> str:
    """A short id of a bundle's exact files (the sha256 of its checksums.json): predictions and evaluations
    name the bundle they came from. Call it after ``read_config`` has checked the files against that
    checksums.json (it hashes every file)."""
    with open(os.path.join(bundle, CHECKSUMS), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def recorded_trial(path: str) -> dict[str, Any]:
    """The ``trial`` block of the bundle's config.json as written, unchecked ({} when it cannot be read): where it
    came from (run and image folders), for advice and refusals that must not hash the whole bundle."""
    try:
        with open(os.path.join(path, CONFIG)) as f:
            trial = json.load(f).get("trial")
    except (OSError, ValueError, AttributeError):
        return {}
    return trial if isinstance(trial, dict) else {}


def _reexport(path: str) -> str:
    """'re-export it with `speciesfam export --workdir RUN --trial T --out PATH`': the run folder when the bundle
    lies in one (RUN/bundle: no --out), its own trial, shell-quoted, as a damaged bundle's refusal says it."""
    import shlex

    from . import stages

    parent, name = os.path.split(os.path.abspath(path))
    recorded = recorded_trial(path).get("run_folder")  # a bundle exported with --out elsewhere
    if stages.is_run_folder(parent):
        run = parent
    elif isinstance(recorded, str) and os.path.isdir(recorded) and stages.is_run_folder(recorded):
        run = recorded
    else:
        run = None
    out = "" if run == parent and name == "bundle" else f" --out {shlex.quote(path)}"
    trial = recorded_trial(path).get("trial_id")  # the same model (without it: the best trial, another one if
    # later searches did better, or the one --trial chose was not: round 65)
    which = f" --trial {shlex.quote(trial)}" if isinstance(trial, str) and trial else ""
    return f"re-export it with `speciesfam export --workdir {shlex.quote(run) if run else 'RUN'}{which}{out}`"


def read_config(path: str) -> dict[str, Any]:
    """The bundle's config after checking that every file is present and unchanged since export.

    Raises:
        BundleError: no bundle there, a file missing or changed, an unknown schema or kind.
    """
    if not os.path.isdir(path):  # a file: an image given first, say (the bundle comes first; round 28)
        raise BundleError(f"{path} {'is not a folder' if os.path.exists(path) else 'does not exist'}: give a bundle "
                          "folder (RUN/bundle, made by `speciesfam export`) as the first argument")
    missing = [f for f in (CONFIG, LABELS, CHECKSUMS) if not os.path.exists(os.path.join(path, f))]
    if missing and is_bundle(os.path.join(path, "bundle")):  # a run folder given for its bundle
        raise BundleError(f"{path} is a run folder, not a bundle: give {os.path.join(path, 'bundle')}")
    if len(missing) == 3:  # no bundle's file at all: an image folder given first, say (it advised exporting there)
        raise BundleError(f"{path} is not a bundle (none of {CONFIG}, {LABELS}, {CHECKSUMS}): give a bundle folder "
                          "(RUN/bundle, made by `speciesfam export`) as the first argument")
    if missing:
        raise BundleError(f"{path} is not a complete speciesfam bundle: missing {missing}; {_reexport(path)}")
    try:
        with open(os.path.join(path, CHECKSUMS)) as f:
            expected = json.load(f)
        with open(os.path.join(path, CONFIG)) as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        raise BundleError(f"{path}: the bundle is damaged ({type(err).__name__}: {err}); {_reexport(path)}") from err
    if not isinstance(config, dict):  # '[1, 2, 3]': "'list' object has no attribute 'get'" (round 34)
        raise BundleError(f"{path}: the bundle is damaged: {CONFIG} is not a JSON object; {_reexport(path)}")
    if config.get("schema") != SCHEMA or config.get("kind") not in KINDS:
        raise BundleError(f"{path}/{CONFIG} is not a {SCHEMA} v{SCHEMA_VERSION} config (schema "
                          f"{config.get('schema')!r}, kind {config.get('kind')!r}); {_reexport(path)}")
    version = config.get("schema_version", 0)
    if type(version) is not int:  # '2a', null, [2]: int() raised a traceback (hostile tester round 45)
        raise BundleError(f"{path}: the bundle is damaged: {CONFIG}'s schema_version is {version!r}, not a whole "
                          f"number; {_reexport(path)}")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{path} has bundle schema v{version}; this speciesfam reads up to v{SCHEMA_VERSION}: "
                          "upgrade speciesfam")
    if not (isinstance(expected, dict) and all(isinstance(v, str) for v in expected.values())):
        raise BundleError(f"{path}: the bundle is damaged: {CHECKSUMS} is not a map of file -> sha256; {_reexport(path)}")
    outside = [f for f in expected if not _inside(path, f)]
    if outside:  # '/dev/zero' was hashed without end, '/etc/hostname' read (round 45): a bundle is passed around
        raise BundleError(f"{path}: the bundle is damaged: {CHECKSUMS} names {outside}, not files of the bundle "
                          f"folder; {_reexport(path)}")
    needed = MODEL_FILE[config["kind"]]
    missing = [f for f in [needed, *expected] if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise BundleError(f"{path} is not a complete speciesfam bundle: missing {sorted(set(missing))}; {_reexport(path)}")
    unlisted = [f for f in (CONFIG, LABELS, needed) if f not in expected]
    if unlisted:  # the file is there, its checksum is not: it cannot be checked
        raise BundleError(f"{path}: the bundle is damaged: {CHECKSUMS} has no checksum for {unlisted}; {_reexport(path)}")
    odd = [f for f in expected if not os.path.isfile(os.path.join(path, f))]
    if odd:  # a folder: IsADirectoryError, with storage's advice
        raise BundleError(f"{path}: the bundle is damaged: {odd} {'is' if len(odd) == 1 else 'are'} not a file; "
                          f"{_reexport(path)}")
    changed = changed_files(path, expected)
    if changed:
        raise BundleError(f"{path}: the bundle is damaged: {changed} changed since export (sha256 mismatch); {_reexport(path)}")
    try:
        with open(os.path.join(path, LABELS)) as f:
            labels = json.load(f)
    except ValueError as err:
        raise BundleError(f"{path}: the bundle is damaged ({LABELS}: {err}); {_reexport(path)}") from err
    if labels != config.get("labels"):
        raise BundleError(f"{path}: {LABELS} and {CONFIG} disagree on the families; {_reexport(path)}")
    problem = config_problem(config)
    if problem:  # a config edited and its checksums written anew: KeyError, IndexError, wrong families (round 45)
        raise BundleError(f"{path}: the bundle is damaged: {CONFIG} {problem}; {_reexport(path)}")
    return config


def _inside(bundle: str, rel: str) -> bool:
    """Whether ``rel``, a checksums.json key, names a file within the bundle folder (relative, no '..')."""
    parts = rel.split("/")
    return bool(rel) and not os.path.isabs(rel) and ".." not in parts and "" not in parts and "\\" not in rel


def config_problem(config: dict[str, Any]) -> str:
    """What makes a config.json unusable (its fields' types), '' if nothing: the families a non-empty list of
    distinct strings; a CNN's image size a whole number > 0; a probe's embedder a record with its model id."""
    labels = config.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        return f"has labels {str(labels)[:80]!r}, not a list of family names"  # '' is none: catalog refuses it
    if len(set(labels)) != len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        return f"names the families {twice} twice"
    if config["kind"] == "cnn":
        size = config.get("image_size")
        if type(size) is not int or not 1 <= size <= MAX_IMAGE_SIZE:  # 100000: predict decoded to it without end
            return f"has image_size {size!r}, not a whole number of pixels from 1 to {MAX_IMAGE_SIZE}"
    else:
        spec = config.get("embedder")
        if not isinstance(spec, dict) or not isinstance(spec.get("model_id"), str):
            return f"has embedder {str(spec)[:80]!r}, not a record of the model that embeds its images"
    return ""


def is_bundle(folder: str) -> bool:
    """Whether ``folder`` holds a speciesfam bundle (its config.json names the schema)."""
    try:
        with open(os.path.join(folder, CONFIG)) as f:
            return json.load(f).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def _around(path: str, found) -> str | None:
    """The folder that is ``path`` or holds it (links resolved) for which ``found(folder)`` is true, if any."""
    real = os.path.realpath(path)
    while not found(real):
        if os.path.dirname(real) == real:
            return None
        real = os.path.dirname(real)
    return real


def bundle_around(path: str) -> str | None:
    """The bundle folder that is ``path`` or holds it (links resolved), if any."""
    return _around(path, is_bundle)


def run_around(path: str) -> str | None:
    """The run folder (``stages.is_run_folder``: catalog's record or manifest) that is ``path`` or holds it (links
    resolved), if any. A folder with the user's own manifest.parquet of paths and labels is none."""
    from .stages import is_run_folder

    return _around(path, is_run_folder)


class Predictor:
    """A loaded bundle: ``predict(images)`` takes RGB uint8 arrays of any size, returns family probabilities.

    Attributes:
        kind: ``"cnn"`` or ``"probe"``.
        labels: the families, in the order of the probability columns.
        config: the bundle's ``config.json``.
        path: the bundle folder.
    """

    kind = ""

    def __init__(self, path: str, config: dict[str, Any]):
        self.path, self.config = path, config
        self.labels: list[str] = list(config["labels"])

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Probabilities ``(len(images), len(labels))`` float32 for RGB uint8 ``(H, W, 3)`` arrays."""
        if not len(images):
            return np.zeros((0, len(self.labels)), np.float32)
        return np.concatenate([self._predict(list(images[i:i + batch_size]))
                               for i in range(0, len(images), batch_size)]).astype(np.float32)

    def _predict(self, images: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def top_k(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely families with their probabilities, per row of ``probs``."""
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to ``size`` x ``size``: the resize training used (``data.images.resize``)."""
    from PIL import Image

    from .data.images import resize

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(resize(Image.fromarray(np.asarray(image, np.uint8)), size))


def _load_keras(file: str):
    """A Keras model in safe mode (no Lambda layers, no pickled code); a file that does not load is damage."""
    from ._lazy import keras

    try:
        return keras().saving.load_model(file, safe_mode=True)
    except Exception as err:  # zip, h5 and JSON errors all mean the same thing to a user
        raise BundleError(f"{os.path.dirname(file)}: the bundle is damaged: {os.path.basename(file)} does not load "
                          f"({why_not_loaded(file, err)}); re-export it") from err


def why_not_loaded(file: str, err: BaseException) -> str:
    """Why a model file did not load, in a few words: Keras says 'File not found' of a .keras file that is there but
    cut short (hostile tester rounds 45, 58); else the error's first line."""
    import zipfile

    if file.endswith(".keras") and os.path.isfile(file) and not zipfile.is_zipfile(file):
        return "not a whole .keras archive: cut short, or not a Keras file"
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", str(err))
    if shapes:  # Keras's first line ends 'Example error message for object <Dense ...>:' (round 58, left)
        return (f"holds weights of shape {shapes[2]} where the model {CONFIG} describes has {shapes[1]}: another "
                "model's weights")
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


def model_mismatch(model: Any, labels: list[str], image_size: int | None = None) -> str:
    """What a loaded model does not fit in its config ('gives 4 probabilities, config.json names 6 families'; for a
    CNN, 'takes 64 x 64 images, config.json says 48', or inputs that are not images at all), '' when it fits. Too
    few outputs printed wrong families or an IndexError (round 45); a probe head in a CNN's place crashed the check
    of its image size (round 58)."""
    out = getattr(model, "output_shape", None)
    if not (isinstance(out, tuple) and len(out) == 2 and all(n is None or isinstance(n, int) for n in out)):
        return f"gives outputs of shape {out}, not one probability per family"  # two heads, a map: round 59
    if isinstance(out[-1], int) and out[-1] != len(labels):
        return f"gives {out[-1]} probabilities, {CONFIG} names {len(labels)} families"
    if image_size is None:
        return ""
    shape = getattr(model, "input_shape", None)
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[-1] in (3, None)):
        return f"takes inputs of shape {shape}, not the RGB images of {CONFIG} ({image_size} x {image_size})"
    side = shape[1:3]
    if all(isinstance(n, int) for n in side) and side != (image_size, image_size):
        return f"takes {side[0]} x {side[1]} images, {CONFIG} says {image_size}"
    return ""


def _check_model(model: Any, labels: list[str], file: str, image_size: int | None = None) -> None:
    if problem := model_mismatch(model, labels, image_size):
        raise BundleError(f"{os.path.dirname(file)}: the bundle is damaged: {os.path.basename(file)} {problem}; "
                          "re-export it")


class CNNPredictor(Predictor):
    kind = "cnn"

    def __init__(self, path: str, config: dict[str, Any]):
        super().__init__(path, config)
        self.image_size = int(config["image_size"])
        self.model = _load_keras(os.path.join(path, CNN_MODEL))
        # another size: a traceback in Keras (round 46)
        _check_model(self.model, self.labels, os.path.join(path, CNN_MODEL), self.image_size)

    def _predict(self, images: list[np.ndarray]) -> np.ndarray:
        x = np.stack([_resize(im, self.image_size) for im in images]).astype(np.float32)
        return np.asarray(self.model.predict_on_batch(x))


class ProbePredictor(Predictor):
    """Embeds with the recorded embedder (torch, imported first), then runs the Keras head."""

    kind = "probe"

    def __init__(self, path: str, config: dict[str, Any], weights_dir: str | None = None):
        super().__init__(path, config)
        from .bundle_embedder import embedder_config
        from .data.embedders import load_embedder, split_id

        spec = config["embedder"]
        if spec.get("source_sha256") and spec.get("source_file") and os.path.exists(spec["source_file"]) \
                and sha256_file(spec["source_file"]) != spec["source_sha256"] and not split_id(spec["model_id"])[1]:
            # exported before model ids had a code digest (with one: refused by embedder_config, saying why)
            warnings.warn(f"embedder module {spec['source_file']} changed since export (sha256 differs): its "
                          "embeddings may no longer match the head", stacklevel=2)
        if not spec.get("embedder"):
            # open_clip needs torch/torchvision, which must be imported before TensorFlow (../shared/STACK-FACTS.md).
            from ._lazy import torch_modules

            torch_modules()
        # The embedder first (a user factory may import torch too), then Keras for the head.
        self.embedder = load_embedder(embedder_config(spec, weights_dir))
        self.head = _load_keras(os.path.join(path, PROBE_HEAD))
        _check_model(self.head, self.labels, os.path.join(path, PROBE_HEAD))

    def _predict(self, images: list[np.ndarray]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(images))
        takes = (getattr(self.head, "input_shape", None) or (None,))[-1]
        if isinstance(takes, int) and vectors.ndim == 2 and vectors.shape[1] != takes:  # a Keras traceback (round 54)
            raise BundleError(f"{self.path}: {PROBE_HEAD} takes vectors of {takes} numbers, its embedder gives "
                              f"{vectors.shape[1]}: the probe was trained on other embeddings than this embedder's "
                              "(a cache that did not match): run clean, the probe search and export again")
        return np.asarray(self.head.predict_on_batch(vectors))


def load_bundle(path: str, weights_dir: str | None = None) -> Predictor:
    """Load a bundle folder as a ``Predictor`` (CNN or probe: the same interface). ``weights_dir``: a probe
    bundle's embedder files are read there, not at the paths recorded on export (``embedder_config``).

    Raises:
        BundleError: the bundle is missing, incomplete, damaged (a file changed or does not load) or its
            embedder's weights file is absent or different.
    """
    path = os.path.abspath(path)
    config = read_config(path)
    if config["kind"] == "cnn":
        return CNNPredictor(path, config)
    return ProbePredictor(path, config, weights_dir)
