"""Test set-up: quiet TensorFlow, Keras 2 before TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_bdgm  # noqa: E402,F401  (selects Keras 2 before TensorFlow is imported)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    tf.keras.backend.clear_session()


@pytest.fixture(scope="module")
def vae():
    """A tiny initialized w1a1 ResNetVAE (tests/tiny.py), shared by a module's tests."""
    import tiny
    return tiny.tiny_model("resnet_vae", "w1a1", images=tiny.tiny_images(16), seed=0)


@pytest.fixture(scope="module")
def flow():
    """A tiny initialized w1a1 FlowPlusPlus (tests/tiny.py), shared by a module's tests."""
    import tiny
    return tiny.tiny_model("flowpp", "w1a1", images=tiny.tiny_images(16), seed=0)
