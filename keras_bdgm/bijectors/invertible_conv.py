"""Invertible 1x1 convolution (Glow), optionally one matrix per channel group.

With the channels split into G groups of c, each pixel's group g is multiplied by its
own c x c matrix W_g:

    forward:  y[h, w, g, :] = x[h, w, g, :] @ W_g
    log|det|: H * W * sum_g log|det W_g|

Flow++ applies one matrix to each half of a coupling's input: G = 2. At init every
W_g = I + 0.001 * N(0, 1) noise. The product is one matmul of the pixels [N*H*W, C] with the
block-diagonal C x C matrix diag(W_1, ..., W_G): on CPUs 10-20x faster (forward and
gradient) than the grouped einsum "...gi,gij->...gj", with the same values. The kernels live in a Keras layer
(`InvertibleConv1x1Layer`) held by the bijector (its `layer`).

#### Examples

    conv = InvertibleConv1x1(channels=6, groups=2)   # two 3x3 matrices
    y = conv.forward(x)                              # x: [N, H, W, 6]

#### References
[1] Kingma, Dhariwal. Glow. 2018. https://arxiv.org/abs/1807.03039
[2] Ho et al. Flow++. 2019. https://arxiv.org/abs/1902.00275
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors import shapes


tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")


@tf.custom_gradient
def log_abs_det(matrix):
    """log|det M| of square matrices [..., n, n], XLA-compilable.

    Computed as sum log|diag R| of M = QR (`tf.linalg.slogdet` has no XLA kernel); the
    gradient is M^{-T}.
    """
    r = tf.linalg.qr(matrix).r
    value = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))), axis=-1)

    def grad(upstream):
        return upstream[..., None, None] * tf.linalg.matrix_transpose(tf.linalg.inv(matrix))

    return value, grad


def block_diagonal(kernels):
    """[G, c, c] -> the [G*c, G*c] matrix with W_1, ..., W_G on its diagonal, zeros elsewhere."""
    groups, c = kernels.shape[0], kernels.shape[-1]
    if groups == 1:
        return tf.reshape(kernels, [c, c])
    eye = tf.constant(np.eye(groups).reshape([groups, 1, groups, 1]), dtype=kernels.dtype)
    blocks = eye * tf.expand_dims(kernels, 2)  # [g, i, h, j]
    return tf.reshape(blocks, [groups * c, groups * c])


@_serializable
class InvertibleConv1x1Layer(tf.keras.layers.Layer):
    """The kernel [G, c, c] of `InvertibleConv1x1`, initialized to identity + noise.

    Args:
      channels: total channels C = G * c.
      groups: G, the number of independent channel groups.
      noise: standard deviation of the noise added to the identity at init.
    """

    def __init__(self, channels, groups=1, noise=0.001, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.groups, self.noise = int(channels), int(groups), float(noise)
        if self.channels % self.groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups}).")
        c = self.channels // self.groups

        def init(shape, dtype=None):
            return tf.eye(c, batch_shape=[self.groups], dtype=dtype) + self.noise * tf.random.normal(
                shape, dtype=dtype
            )

        self.kernel = self.add_weight("kernel", shape=(self.groups, c, c), initializer=init)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "groups": self.groups,
                "noise": self.noise}


@tf.keras.utils.register_keras_serializable(package="keras_bdgm", name="InvConvParams")
class InvConvParams(InvertibleConv1x1Layer):
    """Deprecated: `InvertibleConv1x1Layer` under its name before the rename, which .keras files saved
    then hold (as this class, Keras finds their weights under its old snake_case name)."""


class InvertibleConv1x1(tfb.Bijector):
    """Per-pixel channel mixing by G invertible c x c matrices.

    Args:
      channels: C; creates a fresh `InvertibleConv1x1Layer` when `layer` is None.
      groups: G (ignored when `layer` is given).
      layer: an existing `InvertibleConv1x1Layer` to share.
    """

    def __init__(self, channels=None, groups=1, layer=None, validate_args=False,
                 name="invertible_conv_1x1"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            if layer is None:
                if channels is None:
                    raise ValueError("InvertibleConv1x1 needs channels= or layer=.")
                layer = InvertibleConv1x1Layer(channels, groups)
            self.layer = layer
            super().__init__(forward_min_event_ndims=3, validate_args=validate_args,
                             parameters=parameters, name=name)

    def _apply(self, x, kernel):
        channels = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
        pixels = tf.reshape(x, [-1, channels])
        return tf.reshape(tf.matmul(pixels, block_diagonal(kernel)), shapes.shape(x))

    def _forward(self, x):
        return self._apply(x, self.layer.kernel)

    def _inverse(self, y):
        return self._apply(y, tf.linalg.inv(self.layer.kernel))

    def _ldj(self, t):
        if t.shape[-3:].is_fully_defined():
            pixels = tf.constant(t.shape[-3] * t.shape[-2], t.dtype)
        else:
            pixels = tf.cast(tf.reduce_prod(tf.shape(t)[-3:-1]), t.dtype)
        # A tensor, not the variable: custom_gradient must not see a (mirrored) variable.
        log_det = tf.reduce_sum(log_abs_det(tf.convert_to_tensor(self.layer.kernel)))
        return tf.broadcast_to(pixels * log_det, shapes.batch_shape(t, 3))

    def _forward_log_det_jacobian(self, x):
        return self._ldj(x)

    def _inverse_log_det_jacobian(self, y):
        return -self._ldj(y)
