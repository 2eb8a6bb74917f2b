"""keras_bdgm: binary deep generative models on Keras 2, larq and TensorFlow Probability.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, larq and TFP by
setting ``TF_USE_LEGACY_KERAS=1``. That switch only works before TensorFlow is first
imported, so import ``keras_bdgm`` (or set the variable yourself) before ``tensorflow``.

Example:

    import keras_bdgm
    import tensorflow as tf

    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        keras_bdgm.layers.WNConv2D(32, 3, padding="same"),
        keras_bdgm.blocks.ResidualBlock(32, precision="w1a1"),
    ])
    keras_bdgm.initialize(model, images)
"""

import os
import sys

__version__ = "0.1.0"


def _select_legacy_keras():
    tf_module = sys.modules.get("tensorflow")
    if tf_module is not None:
        flag = os.environ.get("TF_USE_LEGACY_KERAS", "").lower()
        legacy = flag in ("1", "true")
        if not legacy:
            raise ImportError(
                "keras_bdgm needs Keras 2 (tf_keras), but TensorFlow was already imported "
                "with Keras 3. Import keras_bdgm before tensorflow, or set the environment "
                "variable TF_USE_LEGACY_KERAS=1 before starting Python "
                "(e.g. `TF_USE_LEGACY_KERAS=1 python train.py`)."
            )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


_select_legacy_keras()

# pylint: disable=wrong-import-position
from keras_bdgm import _tf_import  # noqa: E402

_tf_import.import_tensorflow()  # its start-up lines obey TF_CPP_MIN_LOG_LEVEL

from keras_bdgm import blocks  # noqa: E402
from keras_bdgm import compression  # noqa: E402
from keras_bdgm import init  # noqa: E402
from keras_bdgm import layers  # noqa: E402
from keras_bdgm import memory  # noqa: E402
from keras_bdgm import models  # noqa: E402
from keras_bdgm import precision  # noqa: E402
from keras_bdgm import schedules  # noqa: E402  (registers the learning-rate schedules with Keras)
from keras_bdgm import pretrained  # noqa: E402
from keras_bdgm.init import initialize  # noqa: E402

__all__ = ["blocks", "compression", "init", "initialize", "layers", "memory", "models", "precision", "pretrained"]
