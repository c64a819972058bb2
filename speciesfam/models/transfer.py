"""Transfer learning: a ``keras.applications`` backbone (frozen at first) under the dense head.

Each backbone carries its own preprocessing as layers (Rescaling for the "tf" mode of ResNetV2/Xception;
EfficientNet, ConvNeXt and MobileNetV3 include theirs), so the saved model takes raw 0..255 RGB.
The backbone is called with ``training=False``: its batch-norm layers stay in inference mode even when
the top layers are unfrozen for fine-tuning (keras-io transfer-learning guide).

``weights``: ``"imagenet"`` (default; downloads once into ~/.keras, needs the network), a local
``.h5``/``.weights.h5`` file of the backbone (air-gapped clusters), or ``None`` (random; offline tests).
"""

from __future__ import annotations

import os
import re
from typing import Any

from .._lazy import keras as _keras
from ..registry import MODELS
from . import MODEL_DEFAULTS, augmentation, head

# name: (keras.applications class name, native input size, preprocessing)
# preprocessing "tf": x/127.5 - 1; "caffe": RGB->BGR minus the ImageNet BGR means (VGG16);
# "builtin": the backbone rescales raw 0..255 itself.
BACKBONES: dict[str, tuple[str, int, str]] = {
    "xception": ("Xception", 299, "tf"),
    "resnet50v2": ("ResNet50V2", 224, "tf"),
    "vgg16": ("VGG16", 224, "caffe"),
    "efficientnetb0": ("EfficientNetB0", 224, "builtin"),
    "efficientnetb3": ("EfficientNetB3", 300, "builtin"),
    "efficientnetv2s": ("EfficientNetV2S", 384, "builtin"),
    "convnexttiny": ("ConvNeXtTiny", 224, "builtin"),
    "mobilenetv3large": ("MobileNetV3Large", 224, "builtin"),
    "mobilenetv3small": ("MobileNetV3Small", 224, "builtin"),
}
# The file each backbone's ImageNet weights (without the classifier: include_top=False) have in Keras' cache,
# ~/.keras/models (keras.applications' own names: the offline check looks for exactly these).
IMAGENET_FILES = {
    "xception": "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnetb0": "efficientnetb0_notop.h5",
    "efficientnetb3": "efficientnetb3_notop.h5",
    "efficientnetv2s": "efficientnetv2-s_notop.h5",
    "convnexttiny": "convnext_tiny_notop.h5",
    "mobilenetv3large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "mobilenetv3small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
}
BACKBONE_PREFIX = "backbone"
# The smallest input each keras.applications backbone builds at (its ``obtain_input_shape`` min_size).
MIN_SIZE = {"xception": 71}


def native_size(name: str) -> int:
    """The input size the backbone's ImageNet weights were trained at."""
    return BACKBONES[name][1]


CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def caffe_preprocessing(keras):
    """keras.applications' "caffe" preprocessing as a frozen 1x1 convolution (a plain layer, so the model
    still loads in safe mode): output channel c = input channel 2-c (RGB->BGR) minus the BGR mean."""
    import numpy as np

    layer = keras.layers.Conv2D(3, 1, trainable=False, name="caffe_preprocessing")
    layer.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for c in range(3):
        kernel[0, 0, 2 - c, c] = 1.0
    layer.set_weights([kernel, -np.array(CAFFE_BGR_MEAN, np.float32)])
    return layer


def _mismatch(message: str) -> str:
    """Keras' failed ``load_weights`` in a line: 'A total of 104 objects could not be loaded. Example error message
    for object <Conv2D name=Conv1, built=True>:' then the example's own message (a shape, then the values)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "it does not load"
    total = re.match(r"A total of (\d+) objects could not be loaded", lines[0])
    if total and len(lines) > 1:
        example = lines[1].split(" Target variable:")[0]
        return f"{total.group(1)} layers do not match it (e.g. {example[:150]})"
    return lines[0][:200]


def _builder(name: str):
    cls_name, _, mode = BACKBONES[name]

    def build(num_classes: int, image_size: int, hp: dict[str, Any], weights: str | None = "imagenet"):
        keras = _keras()
        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = inputs
        for layer in augmentation(keras, float(hp.get("augment", MODEL_DEFAULTS["augment"]))):
            x = layer(x)
        if mode == "tf":
            x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
        elif mode == "caffe":
            x = caffe_preprocessing(keras)(x)
        local_file = weights not in (None, "imagenet")
        base = getattr(keras.applications, cls_name)(
            include_top=False, weights=None if local_file else weights, input_shape=(image_size, image_size, 3))
        if local_file:
            try:
                base.load_weights(weights, skip_mismatch=False)
            except ValueError as err:  # Keras' message is pages long (every layer, a variable's values)
                raise ValueError(f"--weights {os.path.basename(weights)} is not {cls_name}'s (include_top=False): "
                                 f"{_mismatch(str(err))}; give that backbone's notop weights file") from None
        base.name = BACKBONE_PREFIX
        base.trainable = False
        x = base(x, training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, head(keras, x, num_classes, hp), name=name)

    build.__doc__ = f"keras.applications.{cls_name} backbone ({mode} preprocessing) + dense head."
    return build


for _name in BACKBONES:
    MODELS.register(_name)(_builder(_name))


def unfreeze_top(model, n_layers: int) -> None:
    """Make the top ``n_layers`` of the backbone trainable (all if n_layers < 0); batch-norm layers stay
    frozen, as they run in inference mode anyway."""
    keras = _keras()
    try:
        base = model.get_layer(BACKBONE_PREFIX)
    except ValueError:
        return  # scratch models have no backbone: nothing to unfreeze
    base.trainable = True
    layers = base.layers if n_layers < 0 else base.layers[-n_layers:] if n_layers else []
    keep = {id(layer) for layer in layers}
    for layer in base.layers:
        layer.trainable = id(layer) in keep and not isinstance(layer, keras.layers.BatchNormalization)
