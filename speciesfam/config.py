"""Typed configs for every stage, validated before any work (or cluster time) starts.

Each config is a dataclass with defaults; ``from_dict`` loads one from JSON/YAML data or CLI flags and
rejects unknown fields. ``validate`` raises ``ConfigError`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field, the value and what is allowed."""


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is invalid: expected {allowed}")


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

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    min_images: int = 6
    group_split: bool = False  # keep each group (e.g. species) inside one split

    def validate(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            _require(0.0 < v < 0.5, name, v, "a fraction in (0, 0.5)")
        _require(self.val_fraction + self.test_fraction < 0.8, "val_fraction+test_fraction",
                 self.val_fraction + self.test_fraction, "a sum below 0.8 (training needs data)")
        _require(self.min_images >= 3, "min_images", self.min_images, "an integer >= 3 (one per split)")


@dataclass
class CleanConfig:
    """How ``clean`` embeds images and finds what is wrong: outliers, label issues, near-duplicates.

    ``model`` is an open_clip architecture (``ViT-B-32``) or ``hf-hub:ORG/NAME``; ``pretrained`` is an
    open_clip tag (``laion2b_s34b_b79k``), a local weights file, or ``None`` (random weights: offline tests).
    ``embedder`` (``module:factory``) replaces open_clip with a user's own embedder.

    Outlier removal is calibrated per family by default (``removal="threshold"``: robust z-score of the
    detector's score above ``outlier_z``); ``removal="quota"`` removes the top ``contamination`` share of
    every family instead. Label issues are reported (``drop_label_issues`` removes them); near-duplicate
    groups are always kept inside one split (``dedupe="near"`` also keeps one image per group).
    """

    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    embedder: str | None = None
    batch_size: int = 32
    num_actors: int | None = None  # default: one per GPU, else 1 CPU actor
    detector: str = field(default="centroid", metadata={
        "help": "per-family outlier score: centroid (distance to the family's median embedding) | "
                "isolation_forest | lof"})
    removal: str = field(default="threshold", metadata={
        "help": "threshold: remove images whose robust z-score within their family exceeds outlier_z "
                "(calibrated); quota: remove the top `contamination` share of every family"})
    outlier_z: float = field(default=5.0, metadata={
        "help": "robust z-score (median/MAD units within the family) above which an image is an outlier"})
    contamination: float = field(default=0.05, metadata={
        "help": "share of each family removed with removal=quota (ignored with removal=threshold)"})
    min_per_family: int = field(default=6, metadata={
        "help": "cleaning never leaves a family with fewer usable images than this"})
    zero_shot: bool = False  # also remove images CLIP finds closer to "a map", "a drawing", ... than to photos
    zero_shot_threshold: float = 0.5
    label_issues: bool = field(default=True, metadata={
        "help": "find likely wrong labels (cleanlab confident learning on out-of-fold probabilities of a "
                "cross-validated logistic regression on the embeddings) -> label_issues.csv"})
    drop_label_issues: bool = field(default=False, metadata={
        "help": "remove the label issues found (default: report only)"})
    label_issue_folds: int = field(default=5, metadata={"help": "cross-validation folds for the probabilities"})
    label_issue_filter: str = field(default="predicted_neq_given", metadata={
        "help": "cleanlab find_label_issues filter_by: predicted_neq_given (flag where the out-of-fold "
                "prediction disagrees; found 27-28 of 28 swaps at precision 0.90-0.96 in "
                "benchmarks/clean_quality.py, where the confident-learning filters found 19-26) | prune_by_noise_rate (cleanlab's default, "
                "more conservative) | prune_by_class | both | confident_learning | low_normalized_margin | "
                "low_self_confidence"})
    near_duplicate_threshold: float = field(default=0.95, metadata={
        "help": "cosine similarity of embeddings at or above which two images are near-duplicates"})
    dedupe: str = field(default="none", metadata={
        "help": "none: report near-duplicates and keep each group in one split; near: also keep one image "
                "per group (the others become status 'duplicate')"})
    gallery_per_family: int = 6

    def validate(self) -> None:
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.num_actors is None or self.num_actors >= 1, "num_actors", self.num_actors,
                 "an integer >= 1 or None")
        _require(self.removal in ("threshold", "quota"), "removal", self.removal, "'threshold' or 'quota'")
        _require(self.outlier_z > 0, "outlier_z", self.outlier_z, "a robust z-score > 0 (e.g. 5)")
        _require(0.0 <= self.contamination < 0.5, "contamination", self.contamination, "a fraction in [0, 0.5)")
        _require(0.0 < self.zero_shot_threshold < 1.0, "zero_shot_threshold", self.zero_shot_threshold,
                 "a probability in (0, 1)")
        _require(self.min_per_family >= 1, "min_per_family", self.min_per_family, "an integer >= 1")
        _require(self.embedder is None or ":" in self.embedder, "embedder", self.embedder,
                 "'module:factory' (a callable returning (preprocess, encode))")
        _require(self.label_issue_folds >= 2, "label_issue_folds", self.label_issue_folds, "an integer >= 2")
        _require(self.label_issue_filter in LABEL_ISSUE_FILTERS, "label_issue_filter", self.label_issue_filter,
                 f"one of {LABEL_ISSUE_FILTERS}")
        _require(not self.drop_label_issues or self.label_issues, "drop_label_issues", self.drop_label_issues,
                 "False when label_issues=False (nothing to drop)")
        _require(0.5 <= self.near_duplicate_threshold <= 1.0, "near_duplicate_threshold",
                 self.near_duplicate_threshold, "a cosine similarity in [0.5, 1]")
        _require(self.dedupe in ("none", "near"), "dedupe", self.dedupe, "'none' or 'near'")
        from .registry import DETECTORS

        DETECTORS.get(self.detector)


# cleanlab.filter.find_label_issues(filter_by=...) values (cleanlab 2.x).
LABEL_ISSUE_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                       "low_normalized_margin", "low_self_confidence")


@dataclass
class TuneConfig:
    """A Ray Tune search: what to search, with which searcher/scheduler, on which resources."""

    kind: str = "scratch"
    space: str | None = None  # module path of a user's search space; default search_spaces.<kind>
    searcher: str = "optuna"
    scheduler: str = "asha"
    num_samples: int = 8
    max_epochs: int = 10
    grace_period: int = 1
    reduction_factor: int = 2
    workers_per_trial: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    cpus_per_trial: float = 0.5  # the Tune trial itself, which only drives the Ray Train run
    max_concurrent: int = 1
    time_budget_s: float | None = None
    storage_path: str | None = None  # default RUN/tune
    name: str | None = None
    image_size: int = 64
    weights: str | None = "imagenet"  # transfer backbones: "imagenet", a local weights file, or None (offline)
    max_failures: int = 1  # retries of a crashed trial or one whose node died (a NaN trial fails again)
    seed: int = 0
    wandb: str = "disabled"  # disabled | offline | online
    wandb_project: str = "speciesfam"
    smoke_test: bool = False
    resume: bool = False  # continue the experiment of the same name in storage_path
    extra: dict = field(default_factory=dict)  # fixed hyperparameters merged under the space

    def validate(self) -> None:
        _require(self.kind in ("scratch", "transfer", "probe"), "kind", self.kind, "'scratch', 'transfer' or 'probe'")
        _require(self.num_samples >= 1, "num_samples", self.num_samples, "an integer >= 1")
        _require(self.max_epochs >= 1, "max_epochs", self.max_epochs, "an integer >= 1")
        _require(1 <= self.grace_period <= self.max_epochs, "grace_period", self.grace_period,
                 f"an integer in [1, max_epochs={self.max_epochs}]")
        _require(self.reduction_factor >= 2, "reduction_factor", self.reduction_factor, "an integer >= 2")
        _require(self.workers_per_trial >= 1, "workers_per_trial", self.workers_per_trial, "an integer >= 1")
        _require(self.cpus_per_worker > 0, "cpus_per_worker", self.cpus_per_worker,
                 "a number > 0 (Ray refuses 0 CPUs for a worker)")
        _require(self.gpus_per_worker >= 0, "gpus_per_worker", self.gpus_per_worker, "a number >= 0")
        _require(self.cpus_per_trial > 0, "cpus_per_trial", self.cpus_per_trial, "a number > 0")
        _require(self.max_concurrent >= 1, "max_concurrent", self.max_concurrent, "an integer >= 1")
        _require(self.max_failures >= 0, "max_failures", self.max_failures, "an integer >= 0")
        _require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s", self.time_budget_s,
                 "seconds > 0 or None")
        _require(self.image_size >= 32, "image_size", self.image_size, "an integer >= 32")
        _require(self.wandb in ("disabled", "offline", "online"), "wandb", self.wandb,
                 "'disabled', 'offline' or 'online'")
        from .registry import SCHEDULERS, SEARCHERS

        SEARCHERS.get(self.searcher)
        SCHEDULERS.get(self.scheduler)
