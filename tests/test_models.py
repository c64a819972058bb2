"""Every registered model builds at a small size with weights=None, trains a step and saves/loads safely."""

import numpy as np
import pytest

from speciesfam.models import build_model
from speciesfam.models.transfer import BACKBONES, unfreeze_top
from speciesfam.registry import MODELS

# Smallest input each backbone accepts (Xception needs >= 71 px); tiny inputs keep this test fast.
SIZES = {"xception": 71}


# The default run trains and round-trips the two scratch CNNs (and builds the smallest ImageNet backbone in the
# freezing test below); every backbone's round trip takes 0.3-4 minutes on 2 cores and runs in the slow set.
FAST = ("scratch_sequential", "scratch_functional")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in MODELS.names()])
def test_model_builds_trains_and_round_trips(name, tmp_path):
    import keras

    size = SIZES.get(name, 32)
    model = build_model(name, num_classes=3, image_size=size, hp={"head_units": 8, "augment": 0.5, "filters": 4,
                                                                   "depth": 2}, weights=None)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    y = np.array([0, 2])
    # eagerly: tracing a backbone's train and predict graphs took 5-15 s each on 2 cores, longer than the step
    # (the searches' tests train scratch CNNs and a backbone in graph mode, as trials do)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    probs = np.asarray(model(x, training=False))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), probs, rtol=1e-4, atol=1e-5)


def test_transfer_backbone_is_frozen_then_top_layers_unfreeze():
    model = build_model("mobilenetv3small", 3, 32, {"head_units": 8}, weights=None)
    frozen = len(model.trainable_variables)
    unfreeze_top(model, 10)
    base = model.get_layer("backbone")
    assert len(model.trainable_variables) > frozen
    assert not any(layer.trainable for layer in base.layers[:-10])
    assert not any(layer.trainable for layer in base.layers if "BatchNormalization" in type(layer).__name__)


def test_caffe_preprocessing_matches_keras_applications():
    import keras

    from speciesfam.models.transfer import caffe_preprocessing

    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(caffe_preprocessing(keras)(x)), expected, rtol=1e-5, atol=1e-3)


def test_every_backbone_is_registered():
    assert set(BACKBONES) <= set(MODELS.names())
    assert {"xception", "resnet50v2", "vgg16", "efficientnetb0", "efficientnetb3", "efficientnetv2s", "convnexttiny",
            "mobilenetv3large"} <= set(BACKBONES)


def test_imagenet_weights_offline_fail_with_a_clear_message_for_scratch():
    with pytest.raises(ValueError, match="weights='imagenet' does not apply"):
        build_model("scratch_sequential", 3, 32, {}, weights="imagenet")


def test_a_weights_file_of_another_model_fails_in_one_line_naming_the_backbone(tmp_path):
    """Another model's weights failed a trial with Keras' pages-long message (every layer, then a variable's
    values), and the trial's console line showed 160 characters of its middle (hostile tester round 27)."""
    import keras

    other = tmp_path / "tiny.weights.h5"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]).save_weights(str(other))
    with pytest.raises(ValueError) as err:
        build_model("mobilenetv3small", 3, 32, {"head_units": 8}, weights=str(other))
    text = str(err.value)
    assert text.startswith("--weights tiny.weights.h5 is not MobileNetV3Small's (include_top=False): "), text
    assert "layers do not match it (e.g. Layer '" in text and text.endswith("give that backbone's notop weights file")
    assert "\n" not in text and len(text) < 400, text
