"""Model builders, registered in ``speciesfam.registry.MODELS``.

A builder is ``build(num_classes, image_size, hp, weights) -> keras.Model``. Every model takes RGB images
with values in 0..255 and contains its own preprocessing and augmentation layers (augmentation is active
only with ``training=True``), so an exported ``model.keras`` needs nothing else to predict. Only layers
that Keras can load in safe mode are used: no Lambda layers.
"""

from __future__ import annotations

from typing import Any


def build_model(name: str, num_classes: int, image_size: int, hp: dict[str, Any] | None = None,
                weights: str | None = None):
    """Build registered model ``name`` (unknown names fail with the list of valid ones)."""
    from ..registry import MODELS

    return MODELS.get(name)(num_classes=num_classes, image_size=image_size, hp=dict(hp or {}), weights=weights)


def augmentation(keras, strength: float):
    """Random flip/rotation/zoom/contrast scaled by ``strength`` in [0, 1] (0: none)."""
    if strength <= 0:
        return []
    return [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1 * strength),
            keras.layers.RandomZoom(0.2 * strength), keras.layers.RandomContrast(0.3 * strength)]


def batch_norm(keras):
    """Batch-norm whose batch statistics are all-reduced across workers (``synchronized=True``).

    With per-replica statistics each worker's moving mean/variance drift apart under
    MultiWorkerMirroredStrategy (measured: same trainable weights, different val macro-F1 per worker),
    and workers that disagree on early stopping would wait forever on each other's collectives.
    """
    # momentum 0.9 (Keras: 0.99): on small collections an epoch is a few dozen steps, and with 0.99 the
    # moving statistics were still near their initial values after 24 steps (demo: train-mode accuracy
    # 0.56, inference 0.48 with near-uniform probabilities).
    return keras.layers.BatchNormalization(synchronized=True, momentum=0.9)


HEAD_DEFAULTS: dict[str, Any] = {"head_units": 128, "head_layers": 1, "dropout": 0.3}  # where hp names none
# The CNN builders' other hyperparameters, where hp names none: ``batch_norm`` (head and scratch blocks),
# ``augment`` (every CNN), ``filters``, ``depth``, ``pooling`` (the scratch CNNs).
MODEL_DEFAULTS: dict[str, Any] = {"batch_norm": True, "augment": 0.0, "filters": 16, "depth": 3, "pooling": "avg"}


def head(keras, x, num_classes: int, hp: dict[str, Any]):
    """Dense head: [batch-norm] -> dense units (relu) -> dropout, repeated ``head_layers`` times -> softmax.

    The softmax is float32 so probabilities stay exact under mixed precision.
    """
    hp = {**HEAD_DEFAULTS, **hp}
    for _ in range(int(hp["head_layers"])):
        if hp.get("batch_norm", MODEL_DEFAULTS["batch_norm"]):
            x = batch_norm(keras)(x)
        x = keras.layers.Dense(int(hp["head_units"]), activation="relu")(x)
        x = keras.layers.Dropout(float(hp["dropout"]))(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
