"""Typed configs for every stage: the one source of defaults, help texts and checks.

Each config is a dataclass whose fields carry their help text (``metadata["help"]``); the ``speciesfam``
command and the job scripts generate their flags from these fields (``speciesfam.flags``), so a default
changed here changes the CLI, the jobs and the demo. ``from_dict`` loads one from JSON/YAML data and rejects
unknown fields. ``validate`` raises ``ConfigError`` naming the field, the value and what is allowed, before
any work (or cluster time) starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import ConfigError, SpeciesfamError

__all__ = ["CatalogConfig", "CleanConfig", "ConfigError", "DemoConfig", "TuneConfig", "from_dict"]

T = TypeVar("T")


def opt(default: Any, help: str, **meta: Any) -> Any:
    """A config field with its CLI help. ``meta``: ``flag`` (flag name if not ``--field-name``), ``choices`` (a
    tuple, or a registry name such as ``"SEARCHERS"`` whose names are listed), ``cli=False`` (not a flag), ``kinds``
    (the search kinds that read it; a flag given for another kind is named as ignored)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def _hdf5(path: str) -> bool:
    """Whether ``path`` is an HDF5 file (its signature at byte 0, 512, 1024 or 2048: the spec's places)."""
    try:
        with open(path, "rb") as f:
            for at in (0, 512, 1024, 2048):
                f.seek(at)
                if f.read(8) == b"\x89HDF\r\n\x1a\n":
                    return True
    except OSError:
        pass
    return False


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise invalid(name, value, f"is invalid: expected {allowed}")


def _registered(registry: Any, name: str, value: str) -> None:
    """Fail as ``name=value ...`` (``--name value ...`` on the CLI) when ``registry`` has no entry ``value``."""
    try:
        registry.get(value)
    except SpeciesfamError as err:  # an unknown name (the message lists the valid ones) or a plug-in that fails
        raise invalid(name, value, f"is invalid: {err}") from None


def invalid(name: str, value: Any, detail: str) -> ConfigError:
    """``name=value detail``; the CLI says it with the flag's name (``--name value detail``)."""
    err = ConfigError(f"{name}={value!r} {detail}")
    err.field, err.value, err.detail = name, value, detail
    return err


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build config ``cls`` from a mapping, rejecting unknown keys, then validate it."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(names)}")
    cfg = cls(**data)
    cfg.validate()
    return cfg


@dataclass
class CatalogConfig:
    """How ``catalog`` splits a collection.

    Families with fewer than ``min_images`` readable, distinct images cannot be split into
    train/val/test and are excluded (listed in the report, never silently dropped).
    """

    val_fraction: float = opt(0.15, "share of each family for validation (chooses the trial)")
    test_fraction: float = opt(0.15, "share of each family held out for `speciesfam evaluate`")
    seed: int = opt(0, "seed of the train/val/test split (clean and each search have seeds of their own)")
    min_images: int = opt(6, "families with fewer usable images are excluded (reported as too_small); at least 3, "
                             "one per split")
    group_split: bool = opt(False, "keep each manifest 'group' (e.g. species) inside one split")
    path_column: str = opt("path", "a manifest's column of image paths")
    label_column: str = opt("label", "a manifest's column of labels, read as written (e.g. family)")
    group_column: str = opt("group", "a manifest's column of groups for --group-split (e.g. species)")

    @property
    def columns(self) -> dict[str, str]:
        """The manifest's columns read as path, label and group."""
        return {"path": self.path_column, "label": self.label_column, "group": self.group_column}

    def validate(self) -> None:
        _require(0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2**32)")
        for name, column in self.columns.items():
            _require(bool(column), f"{name}_column", column, "a column name (not empty)")
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            _require(0.0 < v < 0.5, name, v, "a fraction in (0, 0.5)")
        _require(self.val_fraction + self.test_fraction < 0.8, "val_fraction+test_fraction",
                 self.val_fraction + self.test_fraction, "a sum below 0.8 (training needs data)")
        _require(self.min_images >= 3, "min_images", self.min_images, "an integer >= 3 (one per split)")


# cleanlab.filter.find_label_issues(filter_by=...) values (cleanlab 2.x).
LABEL_ISSUE_FILTERS = ("predicted_neq_given", "prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "low_normalized_margin", "low_self_confidence")


@dataclass
class CleanConfig:
    """How ``clean`` embeds images and finds what is wrong: outliers, label issues, near-duplicates.

    ``model`` is an open_clip architecture (``ViT-B-32``) or ``hf-hub:ORG/NAME``; ``pretrained`` is an
    open_clip tag (``laion2b_s34b_b79k``), a local weights file, or ``None`` (random weights: offline tests).
    ``embedder`` (``module:factory``) replaces open_clip with a user's own embedder.

    Outlier removal is calibrated per family by default (``removal="threshold"``: robust z-score of the
    detector's score above ``outlier_z``); ``removal="quota"`` removes the top ``contamination`` share of
    every family instead. Label issues are reported (``drop_label_issues`` removes them); near-duplicate
    groups are always kept inside one split (``dedupe="near"`` also drops an image's near copies in its family).
    """

    model: str = opt("ViT-B-32", "open_clip architecture, hf-hub:ORG/NAME (e.g. hf-hub:imageomics/bioclip), or "
                                 "local-dir:PATH (a copy of a hub model's files)")
    pretrained: str | None = opt("laion2b_s34b_b79k",
                                 "open_clip pretrained tag, a local weights file, or 'none' (random weights: offline)")
    embedder: str | None = opt(None, "your own embedder as module:factory (a callable returning (preprocess, encode))")
    batch_size: int = opt(32, "images per embedding batch")
    num_actors: int | None = opt(None, "embedding actors (default: one per GPU, else one CPU actor per node)")
    detector: str = opt("centroid", "per-family outlier score: centroid (cosine distance to the family's median "
                        "embedding), isolation_forest, lof (or module:attr)", choices="DETECTORS")
    removal: str = opt("threshold", "threshold: remove images whose robust z-score within their family exceeds "
                       "--outlier-z (calibrated per family); quota: remove the top --contamination share of every "
                       "family", choices=("threshold", "quota"))
    outlier_z: float = opt(5.0, "robust z-score (median/MAD units within the family) above which an image is an "
                           "outlier (removal=threshold)")
    contamination: float = opt(0.05, "share of each family removed as outliers with --removal quota, in [0, 0.5) "
                               "(ignored with removal=threshold)")
    min_per_family: int = opt(6, "cleaning never leaves a family with fewer images than this")
    zero_shot: bool = opt(False, "also remove images CLIP zero-shot calls a map, drawing, text, label or diagram")
    zero_shot_threshold: float = opt(0.5, "non-photo probability above which --zero-shot removes an image")
    label_issues: bool = opt(True, "find likely wrong labels (cleanlab on out-of-fold probabilities of a "
                             "cross-validated logistic regression on the embeddings) -> label_issues.csv")
    drop_label_issues: bool = opt(False, "remove the label issues found (otherwise they are only reported)")
    label_issue_folds: int = opt(5, "cross-validation folds for the label-issue probabilities")
    label_issue_filter: str = opt(
        "predicted_neq_given", "cleanlab find_label_issues filter_by: predicted_neq_given (found 27-28 of 28 swaps "
        "at precision 0.90-0.96 in benchmarks/clean_quality.py, where the confident-learning filters found 19-26); "
        "prune_by_noise_rate (cleanlab's default) is more conservative", choices=LABEL_ISSUE_FILTERS)
    near_duplicate_threshold: float | None = opt(None, "embedding cosine similarity at or above which two images "
                                                 "are near-duplicates (kept in one split); default 0.95, or 0.999 "
                                                 "with --pretrained none (random weights make all images alike)")
    dedupe: str = opt("none", "none: report near-duplicates and keep each group in one split; near: also mark as "
                      "'duplicate' each image that is a near copy of one kept of its own family (the one of most pixels "
                      "is kept; never below --min-per-family; a pair under two families is kept)", choices=("none", "near"))
    gallery_per_family: int = opt(6, "images per family in gallery/*.png")

    @property
    def random_weights(self) -> bool:
        """An open_clip architecture with no pretrained weights (``--pretrained none``): under it unlike images look
        alike (the near-duplicate threshold, clean's warning of groups found with it)."""
        return not self.embedder and not self.pretrained and not self.model.startswith(("hf-hub:", "local-dir:"))

    @property
    def near_threshold(self) -> float:
        """The near-duplicate threshold in force: ``near_duplicate_threshold``, or 0.95, or 0.999 for open_clip's
        random weights (with 0.95 they put all of an offline run's images in one group, which took every family's
        val and test images)."""
        if self.near_duplicate_threshold is not None:
            return self.near_duplicate_threshold
        return 0.999 if self.random_weights else 0.95

    @classmethod
    def smoke(cls, **overrides: Any) -> "CleanConfig":
        """Laptop/offline variant: a small CLIP (ViT-S-32) with random weights (nothing downloaded). Random
        weights make all embeddings alike (a tenth of the pairs above cosine 0.95), so only near-exact copies
        count as near-duplicates."""
        return cls(**{"model": "ViT-S-32", "pretrained": None, **overrides})

    def absolute(self) -> "CleanConfig":
        """This config with a relative ``local-dir:`` model or local ``pretrained`` file made absolute (and no
        ``pretrained`` tag for a ``local-dir:`` or ``hf-hub:`` model, which reads none): the run's
        records and its bundles name the model, and predict runs from any folder (a relative one loaded whatever
        folder of that name the current one held: other weights, wrong predictions, exit 0)."""
        from .storage import local_path  # a file:// URI or '~/x' as every other path flag takes them

        model, pretrained = self.model, self.pretrained
        if model.startswith(("local-dir:", "hf-hub:")):  # open_clip loads the model's own weights: no tag is read
            pretrained = None                              # (the record said laion2b_s34b_b79k, the default)
        if model.startswith("local-dir:"):
            model = "local-dir:" + os.path.abspath(local_path(model[len("local-dir:"):]))
        if pretrained and os.path.isfile(local_path(pretrained)):
            pretrained = os.path.abspath(local_path(pretrained))
        return dataclasses.replace(self, model=model, pretrained=pretrained)

    def validate(self) -> None:
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.num_actors is None or self.num_actors >= 1, "num_actors", self.num_actors,
                 "an integer >= 1, or none for the default")
        _require(self.removal in ("threshold", "quota"), "removal", self.removal, "'threshold' or 'quota'")
        _require(self.outlier_z > 0, "outlier_z", self.outlier_z, "a robust z-score > 0 (e.g. 5)")
        _require(0.0 <= self.contamination < 0.5, "contamination", self.contamination, "a fraction in [0, 0.5)")
        _require(0.0 < self.zero_shot_threshold < 1.0, "zero_shot_threshold", self.zero_shot_threshold,
                 "a probability in (0, 1)")
        _require(self.min_per_family >= 1, "min_per_family", self.min_per_family, "an integer >= 1")
        _require(self.gallery_per_family >= 0, "gallery_per_family", self.gallery_per_family, "an integer >= 0")
        _require(self.label_issue_folds >= 2, "label_issue_folds", self.label_issue_folds, "an integer >= 2")
        _require(self.label_issue_filter in LABEL_ISSUE_FILTERS, "label_issue_filter", self.label_issue_filter,
                 f"one of {LABEL_ISSUE_FILTERS}")
        _require(not self.drop_label_issues or self.label_issues, "drop_label_issues", self.drop_label_issues,
                 "False when label_issues=False (nothing to drop)")
        _require(self.near_duplicate_threshold is None or 0.5 <= self.near_duplicate_threshold <= 1.0,
                 "near_duplicate_threshold", self.near_duplicate_threshold, "a cosine similarity in [0.5, 1]")
        _require(self.dedupe in ("none", "near"), "dedupe", self.dedupe, "'none' or 'near'")
        from .registry import DETECTORS, load_attr

        if self.embedder is not None:
            _require(":" in self.embedder, "embedder", self.embedder,
                     "'module:factory' (a callable returning (preprocess, encode))")
            load_attr(self.embedder, "embedder")
        else:
            from .config_checks import check_open_clip_model

            check_open_clip_model(self.model)
            # a local path (not a tag such as laion2b_s34b_b79k) must exist here, before actors try to load it
            weights = self.pretrained or ""
            local_path = "://" not in weights and ("/" in weights or
                                                  weights.endswith((".bin", ".pt", ".pth", ".safetensors")))
            _require(not local_path or os.path.isfile(weights), "pretrained", self.pretrained,
                     "an existing local weights file, an open_clip tag, or 'none'")
        _registered(DETECTORS, "detector", self.detector)
        if ":" in self.detector:  # a user's module:attr: tried on a tiny family now, not after every embedding
            from .config_checks import check_detector

            check_detector(self.detector, DETECTORS.get(self.detector))


KINDS = ("scratch", "transfer", "probe")
CNN_KINDS = ("scratch", "transfer")  # trials that train a CNN on images with Ray Train workers
PRECISIONS = ("auto", "float32", "bfloat16")
DEFAULT_GRACE = 3  # epochs before ASHA first judges a trial, unless --grace-period says otherwise


@dataclass
class TuneConfig:
    """A Ray Tune search: what to search, with which searcher/scheduler, on which resources."""

    kind: str = opt("scratch", "scratch CNNs, ImageNet backbones (transfer) or a head on CLIP embeddings (probe)",
                    cli=False, choices=KINDS)
    space: str | None = opt(None, "module with get_search_space(smoke: bool) (default search_spaces.KIND)")
    searcher: str = opt("optuna", "search algorithm (or module:attr)", choices="SEARCHERS")
    scheduler: str = opt("asha", "trial scheduler (or module:attr)", choices="SCHEDULERS")
    num_samples: int = opt(8, "trials")
    max_epochs: int = opt(10, "epochs per trial at most")
    grace_period: int | None = opt(None, "epochs every trial trains before ASHA may stop it (default: 3, or "
                                         "max_epochs if fewer; 1 judged heads on near-zero epoch-1 macro-F1 and "
                                         "steered the search away from the best ones, benchmarks/RESULTS.md)")
    reduction_factor: int = opt(2, "ASHA/HyperBand keep the top 1/reduction_factor at each rung")
    workers_per_trial: int = opt(2, "Ray Train workers per CNN trial (MultiWorkerMirroredStrategy)", kinds=CNN_KINDS)
    cpus_per_worker: float | None = opt(None, "CPUs per Ray Train worker (default: 1, or on a cluster too small for "
                                              "that an equal share of what one trial can have)", kinds=CNN_KINDS)
    gpus_per_worker: float = opt(0.0, "GPUs per Ray Train worker", kinds=CNN_KINDS)
    cpus_per_trial: float | None = opt(None, "CPUs of the trial process itself (default: 1 for probe trials, which "
                                             "train in it; 0.5 for CNN trials, whose process drives Ray Train)")
    max_concurrent: int | None = opt(None, "trials running at once (default: as many as the cluster's CPUs and GPUs "
                                           "hold at the search's start, each trial's process and workers counted)")
    time_budget_s: float | None = opt(None, "seconds for the whole search", flag="--time-budget")
    storage_path: str | None = opt(None, "Tune storage (default RUN/tune; shared storage on clusters)")
    name: str | None = opt(None, "experiment name (default: KIND)")
    image_size: int = opt(64, "image side in pixels for CNN trials", kinds=CNN_KINDS)
    weights: str | None = opt("imagenet", "transfer backbones only: imagenet, a local weights file, or none (offline)",
                              kinds=("transfer",))
    max_failures: int = opt(1, "retries of a crashed trial or one whose node died (a NaN trial fails again)")
    seed: int | None = opt(None, "seed of the searcher and of every trial (default: drawn from --name, so that "
                                 "searches of other names draw other trials and a search run again the same ones)")
    wandb: str = opt("disabled", "log trials to Weights & Biases", choices=("disabled", "offline", "online"))
    wandb_project: str = opt("speciesfam", "W&B project")
    smoke_test: bool = opt(False, "the space's tiny variant, 2 trials x 3 epochs, laptop-sized defaults: 48 px "
                                  "images, 0.5-CPU workers, no pretrained weights (offline); flags given still "
                                  "apply (minutes on 2 CPUs)")
    resume: bool = opt(False, "continue the experiment of the same name in storage_path")
    extra: dict = opt({}, "fixed hyperparameters as JSON; each replaces the space's range for its key "
                              "(e.g. '{\"batch_size\": 32}'); a name nothing reads, or a value of the wrong kind, "
                              "is refused before any work")
    image_cache: bool = opt(True, "CNN trials read images decoded and resized once into RUN/image_cache/<size>px "
                                  "(uint8, N x size x size x 3 bytes) instead of decoding every JPEG every epoch",
                        kinds=CNN_KINDS)
    precision: str = opt("auto", "probe trials' matrix products: auto (bfloat16 where the CPU has bf16 instructions "
                                 "and TensorFlow uses oneDNN, else float32), float32 or bfloat16; weights, "
                                 "optimizer and loss stay float32", choices=PRECISIONS, kinds=("probe",))
    init_from: str | None = opt(None, "warm start: the earlier experiment in the same storage (e.g. probe) whose "
                                      "best trial's head and regularisation settings the searcher tries first")

    @property
    def grace(self) -> int:
        """The grace period in force: ``grace_period``, or ``DEFAULT_GRACE`` epochs (at most ``max_epochs``)."""
        return self.grace_period if self.grace_period is not None else min(DEFAULT_GRACE, self.max_epochs)

    @property
    def trial_cpus(self) -> float:
        """CPUs of a trial's own process: ``cpus_per_trial``, or 1 for probe trials (they train in it) and 0.5
        for CNN trials (it only drives their Ray Train workers)."""
        return self.cpus_per_trial if self.cpus_per_trial is not None else 1.0 if self.kind == "probe" else 0.5

    def unused(self, given: set[str]) -> dict[str, str]:
        """The fields among ``given`` (flags a user gave) that this search does not read, each with what it does
        not apply to: kind-specific ones (``kinds`` in their metadata) for another kind, ASHA's grace period and
        reduction factor under FIFO."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        out = {n: f"{self.kind} trials" for n in sorted(given)
               if n in fields and self.kind not in fields[n].metadata.get("kinds", KINDS)}
        if self.scheduler == "fifo":
            out.update({n: "a FIFO search" for n in ("grace_period", "reduction_factor") if n in given})
        return out

    @classmethod
    def smoke(cls, **overrides: Any) -> "TuneConfig":
        """What ``--smoke-test`` means, for the CLI, the jobs and the demo alike: the space's tiny variant, 2
        trials x 3 epochs on half-CPU workers, 48 px images and no pretrained weights (offline)."""
        base = {"num_samples": 2, "max_epochs": 3, "cpus_per_worker": 0.5, "image_size": 48, "weights": None,
                "smoke_test": True}
        return cls(**{**base, **overrides})

    def validate(self) -> None:
        _require(self.kind in KINDS, "kind", self.kind, "'scratch', 'transfer' or 'probe'")
        _require(self.num_samples >= 1, "num_samples", self.num_samples, "an integer >= 1")
        _require(self.max_epochs >= 1, "max_epochs", self.max_epochs, "an integer >= 1")
        _require(self.grace_period is None or 1 <= self.grace_period <= self.max_epochs, "grace_period",
                 self.grace_period,
                 f"an integer from 1 to the epochs per trial ({self.max_epochs}), or none for the default")
        _require(self.reduction_factor >= 2, "reduction_factor", self.reduction_factor, "an integer >= 2")
        _require(self.workers_per_trial >= 1, "workers_per_trial", self.workers_per_trial, "an integer >= 1")
        _require(self.cpus_per_worker is None or self.cpus_per_worker > 0, "cpus_per_worker", self.cpus_per_worker,
                 "a number > 0 (Ray refuses 0 CPUs for a worker), or none for the default")
        _require(self.gpus_per_worker >= 0, "gpus_per_worker", self.gpus_per_worker, "a number >= 0")
        _require(self.cpus_per_trial is None or self.cpus_per_trial > 0, "cpus_per_trial", self.cpus_per_trial,
                 "a number > 0, or none for the default")
        _require(self.max_concurrent is None or self.max_concurrent >= 1, "max_concurrent", self.max_concurrent,
                 "an integer >= 1, or none for as many as fit")
        _require(self.max_failures >= 0, "max_failures", self.max_failures, "an integer >= 0")
        _require(self.seed is None or 0 <= self.seed < 2**32, "seed", self.seed, "an integer in [0, 2**32)")
        _require(self.name is None or (bool(self.name.strip()) and self.name not in (".", "..") and
                                       not any(c in self.name for c in "/\\") and len(self.name.encode()) <= 200
                                       and self.name.isprintable()),  # a newline made a folder of it (round 52)
                 "name", self.name, "a folder name without '/', '\\' or control characters, at most 200 bytes (the "
                 "experiment lives in STORAGE/NAME, inside the run folder)")
        _require(self.time_budget_s is None or 0 < self.time_budget_s < math.inf, "time_budget_s",  # inf: JSON's
                 self.time_budget_s, "seconds > 0, or none for no budget")  # Infinity in the records (round 52)
        _require(32 <= self.image_size <= 1024, "image_size", self.image_size,
                 "an integer in [32, 1024] (every image is decoded and cached at this size)")
        _require(self.wandb in ("disabled", "offline", "online"), "wandb", self.wandb,
                 "'disabled', 'offline' or 'online'")
        _require(not any(c in (self.wandb_project or "") for c in "/\\#?%:") and (self.wandb_project or "x").strip(),
                 "wandb_project", self.wandb_project, "a W&B project name without / \\ # ? % : (W&B drops the "
                 "runs of such a project without saying so)")
        _require(isinstance(self.extra, dict), "extra", self.extra, "a mapping of fixed hyperparameters")
        _require(self.precision in PRECISIONS, "precision", self.precision, " or ".join(map(repr, PRECISIONS)))
        _require(self.init_from is None or (isinstance(self.init_from, str) and self.init_from.strip() != ""
                                            and "/" not in self.init_from), "init_from", self.init_from,
                 "the --name of an earlier search in this run folder, e.g. probe (a name, not a path), or none")
        _require(self.init_from is None or self.searcher != "grid", "init_from", self.init_from,
                 "None with searcher='grid' (a grid has no first points)")
        # a weights file must exist before any trial starts (each would fail loading it, then be retried)
        _require(self.kind != "transfer" or self.weights in (None, "imagenet") or "://" in self.weights
                 or os.path.isfile(self.weights), "weights", self.weights,
                 "'imagenet', an existing local weights file (.h5 / .weights.h5, on shared storage on a cluster) "
                 "or none")
        _require(self.kind != "transfer" or not os.path.isfile(self.weights or "") or _hdf5(self.weights),
                 "weights", self.weights, "a Keras weights file (HDF5: .h5 / .weights.h5); this file is not HDF5, so no "
                 "trial could load it")
        from .registry import SCHEDULERS, SEARCHERS

        _registered(SEARCHERS, "searcher", self.searcher)
        _registered(SCHEDULERS, "scheduler", self.scheduler)


@dataclass
class DemoConfig:
    """``speciesfam demo``: every stage on the bundled demo data, offline, in a few minutes on 2 CPUs."""

    workdir: str = opt("runs/demo", "run folder")
    num_samples: int = opt(4, "trials of the scratch-CNN search")
    max_epochs: int = opt(20, "epochs per trial at most")

    def validate(self) -> None:
        _require(self.num_samples >= 1, "num_samples", self.num_samples, "an integer >= 1")
        _require(self.max_epochs >= 1, "max_epochs", self.max_epochs, "an integer >= 1")


def name_seed(name: str) -> int:
    """The seed of a search given no --seed: its name's CRC-32, the same on every machine and Python."""
    import zlib

    return zlib.crc32(name.encode("utf-8"))
