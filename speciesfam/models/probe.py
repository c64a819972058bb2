"""Embedding probe model: a small Keras head on an L2-normalised CLIP embedding.

Only the builder lives here; the probe trial (data, training, checkpoints, Tune reports) is
``speciesfam.train.probe``. A probe checkpoint's ``probe.weights.h5`` loads into ``build_probe`` with the same
``num_classes``, ``dim`` and ``hp``.
"""

from __future__ import annotations

from typing import Any

from . import head


def build_probe(num_classes: int, dim: int, hp: dict[str, Any]):
    """Input: an embedding of size ``dim``; output: family probabilities.

    Layers: ``head_layers`` x (Dense(head_units, relu) -> Dropout(dropout)) -> Dense(num_classes, softmax).
    No batch norm (a probe trains on fixed embeddings; ``speciesfam.train.probe`` trains exactly this graph).
    """
    from .._lazy import keras as _keras

    keras = _keras()
    inputs = keras.Input((dim,), name="embedding")
    return keras.Model(inputs, head(keras, inputs, num_classes, {**hp, "batch_norm": False}), name="probe")
