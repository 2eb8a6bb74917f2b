"""Flow++'s mixture-logistic CDF coupling and its conditioning network.

The input is a pair [..., 2c]: channels [:c] (x1) stay fixed and condition the transform
of channels [c:] (x2). A network reads x1 (and an optional context) and gives, per element
of x2, an affine log-scale a (through tanh), a shift b and K mixture logits, means and
log-scales (floored at -7):

    forward:  y2 = logit(F(x2)) * exp(a) + b,          F = mixture-of-logistics CDF
    log|det|: sum [log p_F(x2) - log F(x2) - log(1 - F(x2)) + a]

The inverse solves F(x2) = sigmoid((y2 - b) * exp(-a)) with a bracketed root finder and
raises (tf.errors.InvalidArgumentError) where it does not converge.

The conditioning network is the coupling's variable layer (`MixLogisticCouplingLayer`,
held by the bijector as its `layer`), set by a `CouplingConfig`: 3x3 WN conv (c -> width)
-> num_blocks x [GatedResidualBlock(width, precision) -> LayerNormalization] -> 3x3 WN
conv (width -> c * (2 + 3K), init_scale 0.1). The in/out convs are always 32-bit; only
the residual blocks follow `precision`. With `attention_heads > 0` every block is
followed by Flow++'s gated self-attention (32-bit) and another layer norm.

#### Examples

    net = MixLogisticCouplingLayer(channels=3, config=CouplingConfig(width=32, num_components=4))
    coupling = MixLogisticCoupling(net)
    y = coupling.forward(x)                       # x: [N, H, W, 6]

#### References
[1] Ho et al. Flow++. 2019. https://arxiv.org/abs/1902.00275
[2] Bird, Kingma, Barber. ICLR 2021. https://arxiv.org/abs/2010.13476
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors import mixture_logistic as mixlog
from keras_bdgm.bijectors import shapes
from keras_bdgm.bijectors.config import CouplingConfig
from keras_bdgm.bijectors.shared import shared_in_graphs
from keras_bdgm.blocks import GatedAttention, GatedResidualBlock
from keras_bdgm.init import init_scales
from keras_bdgm.layers import WNConv2D

tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")
MIN_LOG_SCALE = -7.0


@_serializable
class MixLogisticCouplingLayer(tf.keras.layers.Layer):
    """The variables of `MixLogisticCoupling`: its conditioning network,
    x1 [N, H, W, c] (+ context) -> raw coupling parameters [N, H, W, c * (2 + 3K)].

    Args:
      channels: c, the channels of each half.
      config: a `CouplingConfig` (or its dict; None: the defaults): width, blocks, mixture
        components, precision, dropout, attention, gate kernel, fused negation, init scheme.
      context: whether `call` takes a context tensor (the dequantizer's).
      **kwargs: `CouplingConfig` fields (replacing the config's) and Keras layer arguments.
    """

    def __init__(self, channels, config=None, context=False, **kwargs):
        config = CouplingConfig.resolve(config, CouplingConfig.pop_fields(kwargs))
        super().__init__(**kwargs)
        self.config, self.channels, self.context = config, int(channels), bool(context)
        if self.channels <= 0:
            raise ValueError(f"MixLogisticCouplingLayer needs positive channels, got {channels!r}.")
        cfg = self.config
        entry_scale = init_scales(cfg.init_scheme)["entry"]
        self.conv_in = WNConv2D(cfg.width, 3, padding="same", init_scale=entry_scale, name="conv_in")
        self.blocks = [
            GatedResidualBlock(cfg.width, context=self.context, name=f"block_{i}", **cfg.block_kwargs())
            for i in range(cfg.num_blocks)
        ]
        self.norms = [
            tf.keras.layers.LayerNormalization(epsilon=1e-5, name=f"norm_{i}")
            for i in range(cfg.num_blocks)
        ]
        # Flat lists of layers (not tuples): Keras's .keras saving walks lists of layers.
        n_attention = cfg.num_blocks if cfg.attention_heads else 0
        self.attentions = [
            GatedAttention(cfg.width, cfg.attention_heads, name=f"attention_{i}") for i in range(n_attention)
        ]
        self.attention_norms = [
            tf.keras.layers.LayerNormalization(epsilon=1e-5, name=f"attention_norm_{i}")
            for i in range(n_attention)
        ]
        self.conv_out = WNConv2D(self.channels * (2 + 3 * cfg.num_components), 3, padding="same",
                                 init_scale=0.1, name="conv_out")

    def call(self, inputs, context=None, training=None):
        h = self.conv_in(inputs)
        for i, (block, norm) in enumerate(zip(self.blocks, self.norms)):
            h = norm(block(h, context=context, training=training))
            if self.attentions:
                h = self.attention_norms[i](self.attentions[i](h, training=training))
        return self.conv_out(h)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "context": self.context,
                "config": self.config.get_config()}


@tf.keras.utils.register_keras_serializable(package="keras_bdgm", name="CouplingNetwork")
class CouplingNetwork(MixLogisticCouplingLayer):
    """Deprecated: `MixLogisticCouplingLayer` under its name before the rename, which .keras files saved
    then hold (as this class, Keras finds their weights under its old snake_case name)."""


@shared_in_graphs
def _transform_and_log_det(x2, a, b, logits, means, log_scales):
    """(y2, log|det| per event) of the coupling's transform of x2 given its parameters
    (traced once for every coupling of a graph, its gradient too: `shared_in_graphs`)."""
    lpdf, lcdf, lsf = mixlog.log_pdf_cdf_survival(x2, logits, means, log_scales)
    y2 = (lcdf - lsf) * tf.exp(a) + b
    elementwise = lpdf - lcdf - lsf + a
    return y2, tf.reduce_sum(elementwise, axis=[-3, -2, -1])


class MixLogisticCoupling(tfb.Bijector):
    """y2 = logit(MixLogisticCDF(x2; theta(x1))) * exp(a) + b on a pair [..., 2c].

    Args:
      layer: the `MixLogisticCouplingLayer` (its `channels` is c) computing the parameters.
      context: tensor passed to the layer as `context` (dequantizer), or None.
      training: passed to the layer (dropout).
      tolerance: position tolerance of the inverse's root finder.
      max_iterations: iteration cap of the root finder.
    """

    def __init__(self, layer, context=None, training=False, tolerance=1e-8, max_iterations=100,
                 validate_args=False, name="mix_logistic_coupling"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self.layer = layer
            self.context = context
            self.training = training
            self.tolerance = tolerance
            self.max_iterations = max_iterations
            super().__init__(forward_min_event_ndims=3, validate_args=validate_args,
                             parameters=parameters, name=name)

    def _split(self, t):
        c = self.layer.channels
        if t.shape[-1] is not None and t.shape[-1] != 2 * c:
            raise ValueError(
                f"{self.name} couples pairs of {c} channels, so it needs {2 * c} channels; got "
                f"shape {t.shape}."
            )
        return tuple(tf.split(t, 2, axis=-1))  # (a split's gradient is a concat, a slice's a scatter)

    def _params(self, x1):
        """(a, b, logits, means, log_scales); the mixture ones with a trailing K axis."""
        flat = shapes.flatten_batch(x1)
        context = self.context
        if context is not None:
            context = shapes.flatten_batch(context)
        raw = self.layer(flat, context=context, training=self.training)
        k = self.layer.config.num_components
        raw = tf.reshape(raw, shapes.shape_then(x1, 2 + 3 * k))
        raw = tf.cast(raw, x1.dtype)
        a, b, logits, means, log_scales = tf.split(raw, [1, 1, k, k, k], axis=-1)
        a, b = tf.tanh(tf.squeeze(a, -1)), tf.squeeze(b, -1)
        log_scales = tf.maximum(log_scales, tf.cast(MIN_LOG_SCALE, raw.dtype))
        return a, b, logits, means, log_scales

    def forward_and_log_det(self, x):
        """(y, log|det dy/dx| per event) from one evaluation of the layer's network."""
        x1, x2 = self._split(x)
        a, b, logits, means, log_scales = self._params(x1)
        y2, log_det = _transform_and_log_det(x2, a, b, logits, means, log_scales)
        return tf.concat([x1, y2], axis=-1), log_det

    def _forward(self, x):
        return self.forward_and_log_det(x)[0]

    def _forward_log_det_jacobian(self, x):
        return self.forward_and_log_det(x)[1]

    def _inverse(self, y):
        y1, y2 = self._split(y)
        a, b, logits, means, log_scales = self._params(y1)
        target = (y2 - b) * tf.exp(-a)
        x2, converged = mixlog.inverse_logit_cdf(
            target, logits, means, log_scales, tolerance=self.tolerance,
            max_iterations=self.max_iterations,
        )
        check = tf.debugging.Assert(
            tf.reduce_all(converged),
            [f"{self.name}: the inverse mixture-logistic CDF did not converge within "
             f"{self.max_iterations} iterations; raise max_iterations or tolerance.",
             tf.reduce_sum(tf.cast(~converged, tf.int32)), "elements failed."],
        )
        with tf.control_dependencies([check]):
            return tf.concat([y1, tf.identity(x2)], axis=-1)
