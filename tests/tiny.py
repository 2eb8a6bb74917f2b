"""One tiny configuration per model, shared by every test module.

Each model's tiny configuration is a set of overrides of its "small" preset (JSON-ready:
lists, not tuples, so a script's `--overrides` flag and a run's report hold the same dict):

    tiny.overrides("flowpp")                            # a fresh dict of the overrides
    tiny.tiny_model("resnet_vae", "w1a1")               # built (every weight exists), not initialized
    tiny.tiny_model("flowpp", "w32a32", images=x, seed=0)   # seeded, then initialized on x
    tiny.tiny_model("flowpp", "w1a1", attention_heads=2)    # the tiny model with one change
    tiny.tiny_images(4)                                 # [4, 8, 8, 1] uint8, uniform pixels
    tiny.pattern_images(8)                              # ramps, stripes and flat patches

A test that needs another architecture passes the one field it changes; a module that
needs another image size passes `shape`.
"""

import copy
import os

import keras_bdgm
import numpy as np
import tensorflow as tf

from keras_bdgm.precision import PRECISIONS  # noqa: F401  (re-exported for the test modules)
from keras_bdgm.models.base import GenerativeModel

SHAPE = (8, 8, 1)
PRESET = "small"
MODELS = ("flowpp", "resnet_vae", "pixelcnn")
CLASS_NAMES = {"flowpp": "FlowPlusPlus", "resnet_vae": "ResNetVAE", "pixelcnn": "PixelCNN"}  # in keras_bdgm.models

_CONFIGS = {
    "flowpp": {"couplings": [1, 1, 1], "width": 8, "num_blocks": 1, "num_components": 3,
               "dequant_couplings": 1, "dequant_width": 8, "dequant_blocks": 1,
               "context_width": 8, "context_blocks": 1},
    "resnet_vae": {"width": 8, "latent_layers": 2, "processing_blocks": 0},
    "pixelcnn": {"width": 8, "num_blocks": 1, "num_components": 3},  # its "tiny" preset
}


def overrides(name, **changes):
    """A fresh dict of model `name`'s tiny overrides of the "small" preset, with `changes`."""
    if name not in _CONFIGS:
        raise ValueError(f"No tiny configuration for {name!r}; known: {', '.join(MODELS)}.")
    return {**copy.deepcopy(_CONFIGS[name]), **changes}


def tiny_model(name, precision="w1a1", shape=SHAPE, images=None, seed=None, **changes):
    """The tiny `name` model (one of `MODELS`) at `precision` for images of `shape`.

    Args:
      seed: if not None, `tf.keras.utils.set_random_seed(seed)` first (weights and the
        model's noise generator then depend on it alone).
      images: if not None, `keras_bdgm.initialize(model, images)` (data-dependent init).
      **changes: fields of the tiny configuration to change (or add).
    """
    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    model_type = getattr(keras_bdgm.models, CLASS_NAMES[name])  # imports that model's module only
    model = model_type(shape, precision=precision, preset=PRESET, **overrides(name, **changes))
    if images is not None:
        keras_bdgm.initialize(model, images)
    return model


def tiny_images(n=8, seed=0, shape=SHAPE):
    """n uint8 images of `shape` with independent uniform pixels 0..255."""
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def pattern_images(n=8, seed=1, noise=8):
    """n structured 8x8x1 uint8 images: horizontal and vertical ramps, stripes and flat grey,
    each twice in a row, in turn, plus integer noise in [-noise, noise]."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(0, 255, 8)
    patterns = [np.tile(ramp, (8, 1)), np.tile(ramp[:, None], (1, 8)),
                np.tile([0, 255] * 4, (8, 1)), np.full((8, 8), 128.0)]
    images = [np.clip(patterns[(i // 2) % 4] + rng.randint(-noise, noise + 1, (8, 8)), 0, 255) for i in range(n)]
    return np.stack(images)[..., None].astype(np.uint8)


def unusual_images(shape, seed=0):
    """Inputs no image model predicts well, each a uint8 batch of `shape` (H, W <= 28, one
    channel): uniform noise, all black, all white, checkerboards, crops of an ordinary
    photograph (tests/data/photo_crops.npz) and a single image."""
    rng = np.random.default_rng(seed)
    h, w, _ = shape
    checker = (np.indices((h, w)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None]
    photos = np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "photo_crops.npz"))["crops"]
    return {
        "uniform noise": rng.integers(0, 256, (4, *shape), dtype=np.uint8),
        "all black": np.zeros((2, *shape), np.uint8),
        "all white": np.full((2, *shape), 255, np.uint8),
        "checkerboards": np.stack([checker, 255 - checker]),
        "natural-photo crops": photos[[0, 4, 5], 3:3 + h, 3:3 + w],
        "one image": pattern_images(1, seed=seed + 5)[:, :h, :w],
    }


class LinearLoss(GenerativeModel):
    """objective = <theta, c>: its gradient is c, whatever the batch."""

    def __init__(self, c, **kwargs):
        super().__init__((2, 2, 1), **kwargs)
        self.c = tf.constant(c, tf.float32)
        self.theta = tf.Variable(tf.zeros_like(self.c), name="theta")

    def compute_losses(self, x, training=False):
        return {"bits_per_dim": tf.reduce_sum(self.theta * self.c) + 0.0 * tf.reduce_mean(x)}
