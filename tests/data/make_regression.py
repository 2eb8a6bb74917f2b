"""Writes tests/data/regression_<model>.npz: a fixed tiny model's figures, for test_regression.py.

Run once with the code whose figures the tests must keep (the tree before a restructuring),
from the repository root:

    python tests/data/make_regression.py

Each file holds the model's packed weights (bytes of keras_bdgm.memory.save_packed), the
images, and what that code computed from them with pair seeds: log_prob at K = 1 and K = 3,
and 4 samples.
"""

import os
import sys
import tempfile

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from keras_bdgm import memory
from keras_bdgm.runs.experiment import build_model

OVERRIDES = {
    "flowpp": {"couplings": [1, 1, 1], "width": 8, "num_blocks": 1, "num_components": 3,
               "dequant_couplings": 1, "dequant_width": 8, "dequant_blocks": 1,
               "context_width": 8, "context_blocks": 1},
    "resnet_vae": {"width": 8, "latent_layers": 2, "processing_blocks": 0},
}
SHAPE, PRECISION = (8, 8, 1), "w1a1"


def main(out_dir):
    for name, overrides in OVERRIDES.items():
        tf.keras.utils.set_random_seed(1234)
        images = np.random.RandomState(5).randint(0, 256, (4, *SHAPE)).astype(np.uint8)
        model = build_model(name, SHAPE, PRECISION, "small", **overrides)
        keras_bdgm.initialize(model, images)
        # Move every weight off its initial value, so a weight that a loader skips shows.
        rng = np.random.RandomState(7)
        for w in model.weights:
            if w.dtype.is_floating and w.trainable:
                w.assign(w.numpy() + 0.01 * rng.standard_normal(w.shape).astype(np.float32))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.bdgm")
            memory.save_packed(model, path)
            packed = open(path, "rb").read()
        np.savez_compressed(
            os.path.join(out_dir, f"regression_{name}.npz"),
            packed=np.frombuffer(packed, np.uint8), images=images,
            log_prob_k1=model.log_prob(images, num_samples=1, seed=(3, 4)).numpy(),
            log_prob_k3=model.log_prob(images, num_samples=3, seed=(5, 6)).numpy(),
            samples=np.asarray(model.sample(4, seed=(7, 8))),
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
