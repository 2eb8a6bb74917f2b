"""Flow++'s variational dequantization: noise u in (0, 1)^D from a flow conditioned on x.

    eps ~ N(0, I),   u = sigmoid(f(eps | x)),
    log q(u | x) = log N(eps; 0, I) - log|det d u / d eps|

f is a stripe split, `num_steps` coupling steps whose networks also read a context, and
the merge. The context is computed once per image: pixels x / 256 - 0.5, stripe-split to
[H, W/2, 2C] (6 channels for RGB), a 3x3 WN conv to `context_width` (32) channels and
`context_blocks` (3) gated residual blocks (binary at w1). Every coupling's residual blocks
add a 1x1 conv of the context (`GatedResidualBlock(context=True)`).

#### Examples

    deq = Dequantizer((28, 28, 1), num_steps=4, width=32, num_blocks=2, num_components=4)
    u, log_q = deq.sample(x, tf.random.normal(tf.shape(x)))   # x: float pixels 0..255
    flow = deq.bijector(x)                # the conditional flow eps -> u as one tfb.Chain

#### References
[1] Ho et al. Flow++. 2019. https://arxiv.org/abs/1902.00275
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors.reshape import stripe_split
from keras_bdgm.bijectors.steps import CouplingSteps, chain, forward_and_log_det
from keras_bdgm.blocks import GatedResidualBlock
from keras_bdgm.init import init_scales
from keras_bdgm.layers import WNConv2D
from keras_bdgm.precision import parse as parse_precision

tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")


def standard_normal_log_prob(t):
    """sum log N(t; 0, 1) over the last three axes."""
    return tf.reduce_sum(-0.5 * tf.square(t) - 0.5 * math.log(2 * math.pi), axis=[-3, -2, -1])


@_serializable
class ContextNetwork(tf.keras.layers.Layer):
    """Pixels [N, H, W, C] (0..255) -> context [N, H, W/2, width] for the dequantizer."""

    def __init__(self, image_shape, width=32, num_blocks=3, precision="w32a32", dropout=0.0,
                 init_scheme="identity", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.width, self.num_blocks = int(width), int(num_blocks)
        self.precision, self.dropout = parse_precision(precision).name, float(dropout)
        self.init_scheme = init_scheme
        self.conv_in = WNConv2D(self.width, 3, padding="same", init_scale=init_scales(init_scheme)["entry"],
                                name="conv_in")
        # The context network's gated blocks use a 3x3 gate conv (the coupling networks' use 1x1).
        self.blocks = [
            GatedResidualBlock(self.width, precision=self.precision, dropout=self.dropout, gate_kernel_size=3,
                               init_scheme=init_scheme, name=f"block_{i}")
            for i in range(self.num_blocks)
        ]

    def call(self, inputs, training=None):
        h = self.conv_in(stripe_split(self.image_shape).forward(inputs / 256.0 - 0.5))
        for block in self.blocks:
            h = block(h, training=training)
        return h

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "width": self.width,
                "num_blocks": self.num_blocks, "precision": self.precision, "dropout": self.dropout,
                "init_scheme": self.init_scheme}


@_serializable
class Dequantizer(tf.keras.layers.Layer):
    """The dequantization flow's variables and its conditional bijector eps -> u.

    Args:
      image_shape: (H, W, C), W even.
      num_steps: coupling steps (Flow++: 4).
      width, num_blocks, num_components: of each coupling network (Flow++: 120, 2, 8).
      precision: of the residual blocks.
      dropout: of the residual blocks (w32a32 only).
      context_width, context_blocks: of the context network (Flow++: 32, 3).
      attention_heads, init_scheme: of the coupling networks (init_scheme also of the
        context network).
    """

    def __init__(self, image_shape, num_steps=4, width=32, num_blocks=2, num_components=4,
                 precision="w32a32", dropout=0.0, context_width=32, context_blocks=3, attention_heads=0,
                 init_scheme="identity", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        h, w, c = self.image_shape
        self.num_steps, self.width, self.num_blocks = int(num_steps), int(width), int(num_blocks)
        self.num_components, self.precision = int(num_components), parse_precision(precision).name
        self.dropout = float(dropout)
        self.context_width, self.context_blocks = int(context_width), int(context_blocks)
        self.attention_heads = int(attention_heads)
        self.init_scheme = init_scheme
        self.context_network = ContextNetwork(self.image_shape, self.context_width, self.context_blocks,
                                              self.precision, self.dropout, init_scheme, name="context")
        self.steps = CouplingSteps((h, w // 2, 2 * c), self.num_steps, self.width, self.num_blocks,
                                   self.num_components, self.precision, context=True,
                                   dropout=self.dropout, attention_heads=self.attention_heads,
                                   init_scheme=init_scheme, name="steps")

    def _bijectors(self, x, training):
        split = stripe_split(self.image_shape)
        context = self.context_network(x, training=training)
        return [split, *self.steps.bijectors(context=context, training=training),
                tfb.Invert(split), tfb.Sigmoid()]

    def bijector(self, x, training=False):
        """The flow eps -> u conditioned on pixels x, as one `tfb.Chain`."""
        return chain(self._bijectors(x, training), name="dequantization_flow")

    def sample(self, x, eps, training=False):
        """(u, log q(u | x)) for pixels x and base noise eps ~ N(0, I) of x's shape."""
        u, ldj = forward_and_log_det(self._bijectors(x, training), eps)
        return u, standard_normal_log_prob(eps) - ldj

    def get_config(self):
        return {
            **super().get_config(), "image_shape": list(self.image_shape), "num_steps": self.num_steps,
            "width": self.width, "num_blocks": self.num_blocks, "num_components": self.num_components,
            "precision": self.precision, "dropout": self.dropout,
            "context_width": self.context_width, "context_blocks": self.context_blocks,
            "attention_heads": self.attention_heads, "init_scheme": self.init_scheme,
        }
