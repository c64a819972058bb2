"""CNNs trained from scratch: a plain sequential stack and a functional residual variant.

Hyperparameters: ``depth`` (conv blocks), ``filters`` (first block; doubles per block), ``batch_norm``,
``dropout``, ``pooling`` (``avg`` or ``flatten``), ``augment`` (0..1), ``head_units``, ``head_layers``.
"""

from __future__ import annotations

from typing import Any

from .._lazy import keras as _keras
from ..registry import MODELS
from . import MODEL_DEFAULTS, augmentation, batch_norm, head


def _stem(keras, image_size: int, hp: dict[str, Any]):
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for layer in augmentation(keras, float(hp["augment"])):
        x = layer(x)
    return inputs, keras.layers.Rescaling(1.0 / 255.0)(x)


def _pool(keras, x, hp: dict[str, Any]):
    return keras.layers.Flatten()(x) if hp["pooling"] == "flatten" else keras.layers.GlobalAveragePooling2D()(x)


@MODELS.register("scratch_sequential")
def scratch_sequential(num_classes: int, image_size: int, hp: dict[str, Any], weights: str | None = None):
    """conv -> [bn] -> relu -> maxpool blocks, then the dense head."""
    keras = _keras()
    hp = {**MODEL_DEFAULTS, **hp}
    inputs, x = _stem(keras, image_size, hp)
    for i in range(int(hp["depth"])):
        x = keras.layers.Conv2D(int(hp["filters"]) * 2**i, 3, padding="same", use_bias=not hp["batch_norm"])(x)
        if hp["batch_norm"]:
            x = batch_norm(keras)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    model = keras.Model(inputs, head(keras, _pool(keras, x, hp), num_classes, hp), name="scratch_sequential")
    _load_weights(model, weights)
    return model


@MODELS.register("scratch_functional")
def scratch_functional(num_classes: int, image_size: int, hp: dict[str, Any], weights: str | None = None):
    """Residual blocks (two 3x3 convs + 1x1 projection shortcut), downsampling by 2 per block."""
    keras = _keras()
    hp = {**MODEL_DEFAULTS, **hp}
    inputs, x = _stem(keras, image_size, hp)
    for i in range(int(hp["depth"])):
        f = int(hp["filters"]) * 2**i
        shortcut = keras.layers.Conv2D(f, 1, strides=2, padding="same")(x)
        y = keras.layers.Conv2D(f, 3, strides=2, padding="same")(x)
        if hp["batch_norm"]:
            y = batch_norm(keras)(y)
        y = keras.layers.Activation("relu")(y)
        y = keras.layers.Conv2D(f, 3, padding="same")(y)
        x = keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))
    model = keras.Model(inputs, head(keras, _pool(keras, x, hp), num_classes, hp), name="scratch_functional")
    _load_weights(model, weights)
    return model


def _load_weights(model, weights: str | None) -> None:
    """Scratch models have no pretrained weights; a ``.weights.h5`` file of the same architecture may be given."""
    if weights and weights != "imagenet":
        model.load_weights(weights)
    elif weights == "imagenet":
        raise ValueError(f"{model.name} is trained from scratch: weights='imagenet' does not apply; use None or a "
                         ".weights.h5 file")
