"""keras_bdgm: binary deep generative models on Keras 2, larq and TensorFlow Probability.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, larq and TFP by
setting ``TF_USE_LEGACY_KERAS=1``. That switch only works before TensorFlow is first
imported, so import ``keras_bdgm`` (or set the variable yourself) before ``tensorflow``.
It also turns on TensorFlow's oneDNN CPU kernels (``TF_ENABLE_ONEDNN_OPTS=1``, 1.4x faster
train steps on an AVX2 CPU) unless that variable is set.

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

__version__ = "0.3.1"

from keras_bdgm._larq_first import select_legacy_keras  # noqa: E402  (imports only os and sys)

select_legacy_keras()  # TF_USE_LEGACY_KERAS=1, or ImportError if TensorFlow has Keras 3 already

# pylint: disable=wrong-import-position
from keras_bdgm import xla_cache  # noqa: E402  (imports no TensorFlow)

xla_cache.configure()  # the persistent XLA cache folder, checked; TensorFlow reads its flags while loading

from keras_bdgm import _onednn  # noqa: E402  (imports only os and sys)

_onednn.prefer_onednn()  # TensorFlow's oneDNN CPU kernels, unless TF_ENABLE_ONEDNN_OPTS says otherwise

from keras_bdgm import _tf_import  # noqa: E402

_tf_import.import_tensorflow()  # its start-up lines obey TF_CPP_MIN_LOG_LEVEL

from keras_bdgm import blocks  # noqa: E402
from keras_bdgm import compression  # noqa: E402
from keras_bdgm import init  # noqa: E402
from keras_bdgm import layers  # noqa: E402
from keras_bdgm import memory  # noqa: E402
from keras_bdgm import models  # noqa: E402
from keras_bdgm import precision  # noqa: E402
from keras_bdgm.runs import schedules  # noqa: E402, F401  (registers the learning-rate schedules with Keras)
from keras_bdgm import pretrained  # noqa: E402
from keras_bdgm.init import initialize  # noqa: E402

__all__ = ["blocks", "compression", "init", "initialize", "layers", "memory", "models", "precision", "pretrained",
           "xla_cache"]
