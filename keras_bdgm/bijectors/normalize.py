"""Per-element affine normalization with data-dependent init (Flow++'s "Normalize").

    forward:  y = x * exp(log_scale) + shift        (log_scale, shift: one per H, W, C)
    log|det|: sum(log_scale)                         (per image)

`keras_bdgm.initialize` sets, from the first batch it sees, log_scale = -log(std) and
shift = -mean / std per element, so the output has mean 0 and standard deviation 1 over
the batch. The variables live in a Keras layer (`NormalizeLayer`) held by the bijector
(its `layer`), so a Keras model that holds either trains them.

#### Examples

    norm = Normalize(event_shape=(8, 4, 6))
    keras_bdgm.initialize(norm.layer, x)     # or through the model holding it
    y = norm.forward(x)

#### References
[1] Ho et al. Flow++. 2019. https://arxiv.org/abs/1902.00275
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors import shapes
from keras_bdgm.init import DataDependentInit

tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")
_INIT_EPSILON = 1e-6


@_serializable
class NormalizeLayer(DataDependentInit, tf.keras.layers.Layer):
    """The log-scale and shift variables of `Normalize`, one per event element.

    Args:
      event_shape: (H, W, C) of the elements normalized.
    """

    def __init__(self, event_shape, **kwargs):
        super().__init__(**kwargs)
        self.event_shape = tuple(int(d) for d in event_shape)
        self.log_scale = self.add_weight("log_scale", shape=self.event_shape, initializer="zeros")
        self.shift = self.add_weight("shift", shape=self.event_shape, initializer="zeros")

    def _data_dependent_init(self, x):
        mean, variance = tf.nn.moments(x, axes=list(range(x.shape.rank - len(self.event_shape))))
        log_scale = -0.5 * tf.math.log(variance + _INIT_EPSILON)
        self.log_scale.assign(log_scale)
        self.shift.assign(-mean * tf.exp(log_scale))

    def call(self, inputs):
        self._maybe_data_dependent_init(inputs)
        return inputs * tf.exp(self.log_scale) + self.shift

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.event_shape)}


@tf.keras.utils.register_keras_serializable(package="keras_bdgm", name="NormalizeParams")
class NormalizeParams(NormalizeLayer):
    """Deprecated: `NormalizeLayer` under its name before the rename, which .keras files saved
    then hold (as this class, Keras finds their weights under its old snake_case name)."""


class Normalize(tfb.Bijector):
    """y = x * exp(log_scale) + shift with per-element parameters and data-dependent init.

    Args:
      event_shape: (H, W, C); creates a fresh `NormalizeLayer` when `layer` is None.
      layer: an existing `NormalizeLayer` to share (e.g. one owned by a Keras model).
    """

    def __init__(self, event_shape=None, layer=None, validate_args=False, name="normalize"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            if layer is None:
                if event_shape is None:
                    raise ValueError("Normalize needs event_shape=(H, W, C) or layer=.")
                layer = NormalizeLayer(event_shape)
            self.layer = layer
            super().__init__(
                forward_min_event_ndims=len(layer.event_shape),
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    def _init(self, x):
        self.layer._maybe_data_dependent_init(x)  # pylint: disable=protected-access

    def _forward(self, x):
        self._init(x)
        return x * tf.exp(self.layer.log_scale) + self.layer.shift

    def _inverse(self, y):
        return (y - self.layer.shift) * tf.exp(-self.layer.log_scale)

    def _ldj(self, t):
        batch_shape = shapes.batch_shape(t, len(self.layer.event_shape))
        return tf.broadcast_to(tf.reduce_sum(self.layer.log_scale), batch_shape)

    def _forward_log_det_jacobian(self, x):
        self._init(x)
        return self._ldj(x)

    def _inverse_log_det_jacobian(self, y):
        return -self._ldj(y)
