"""Flow++'s variational dequantization: noise u in (0, 1)^D from a flow conditioned on x.

    eps ~ N(0, I),   u = sigmoid(f(eps | x)),
    log q(u | x) = log N(eps; 0, I) - log|det d u / d eps|

f is a stripe split, `num_steps` coupling steps whose networks also read a context, and
the merge. The context is computed once per image: pixels x / 256 - 0.5, stripe-split to
[H, W/2, 2C] (6 channels for RGB), a 3x3 WN conv to `context_width` (32) channels and
`context_blocks` (3) gated residual blocks (binary at w1, 3x3 gate convs). Every
coupling's residual blocks add a 1x1 conv of the context (`GatedResidualBlock(context=True)`).
One `CouplingConfig` sets the couplings' networks; the context network's blocks share its
precision, dropout, fused negation and init scheme (`context_network_config`).

#### Examples

    config = CouplingConfig(width=32, num_blocks=2, num_components=4)
    deq = Dequantizer((28, 28, 1), num_steps=4, config=config)
    u, log_q = deq.sample(x, tf.random.normal(tf.shape(x)))   # x: float pixels 0..255
    flow = deq.bijector(x)                # the conditional flow eps -> u as one tfb.Chain

#### References
[1] Ho et al. Flow++. 2019. https://arxiv.org/abs/1902.00275
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors.config import CouplingConfig, context_network_config
from keras_bdgm.bijectors.reshape import stripe_split
from keras_bdgm.bijectors.steps import CouplingSteps, chain, forward_and_log_det
from keras_bdgm.blocks import GatedResidualBlock
from keras_bdgm.init import init_scales
from keras_bdgm.layers import WNConv2D

tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")


def standard_normal_log_prob(t):
    """sum log N(t; 0, 1) over the last three axes."""
    return tf.reduce_sum(-0.5 * tf.square(t) - 0.5 * math.log(2 * math.pi), axis=[-3, -2, -1])


# The context network's config when it is built on its own: Flow++'s width, depth and 3x3 gates.
_CONTEXT_DEFAULTS = context_network_config(CouplingConfig(), width=32, num_blocks=3)


@_serializable
class ContextNetwork(tf.keras.layers.Layer):
    """Pixels [N, H, W, C] (0..255) -> context [N, H, W/2, width] for the dequantizer.

    Args:
      image_shape: (H, W, C), W even.
      config: a `CouplingConfig` (or its dict) whose width, num_blocks and the blocks' fields
        (`block_kwargs`) are this network's; None: width 32, 3 blocks, 3x3 gate convs. The
        `Dequantizer` passes `context_network_config` of its couplings' config.
      **kwargs: `CouplingConfig` fields (replacing the config's) and Keras layer arguments.
    """

    def __init__(self, image_shape, config=None, **kwargs):
        config = CouplingConfig.resolve(_CONTEXT_DEFAULTS if config is None else config,
                                        CouplingConfig.pop_fields(kwargs))
        super().__init__(**kwargs)
        self.config = config
        self.image_shape = tuple(int(d) for d in image_shape)
        entry_scale = init_scales(config.init_scheme)["entry"]
        self.conv_in = WNConv2D(config.width, 3, padding="same", init_scale=entry_scale, name="conv_in")
        self.blocks = [
            GatedResidualBlock(config.width, name=f"block_{i}", **config.block_kwargs())
            for i in range(config.num_blocks)
        ]

    def call(self, inputs, training=None):
        h = self.conv_in(stripe_split(self.image_shape).forward(inputs / 256.0 - 0.5))
        for block in self.blocks:
            h = block(h, training=training)
        return h

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "config": self.config.get_config()}


@_serializable
class Dequantizer(tf.keras.layers.Layer):
    """The dequantization flow's variables and its conditional bijector eps -> u.

    Args:
      image_shape: (H, W, C), W even.
      num_steps: coupling steps (Flow++: 4).
      config: the `CouplingConfig` (or its dict; None: the defaults) of the coupling
        networks (Flow++: width 120, 2 blocks, 8 components).
      context_width, context_blocks: of the context network (Flow++: 32, 3), which takes
        the rest of its config from `config` (`context_network_config`).
      **kwargs: `CouplingConfig` fields (replacing the config's) and Keras layer arguments.
    """

    def __init__(self, image_shape, num_steps=4, config=None, context_width=32, context_blocks=3, **kwargs):
        config = CouplingConfig.resolve(config, CouplingConfig.pop_fields(kwargs))
        super().__init__(**kwargs)
        self.config = config
        self.image_shape = tuple(int(d) for d in image_shape)
        h, w, c = self.image_shape
        self.num_steps = int(num_steps)
        self.context_width, self.context_blocks = int(context_width), int(context_blocks)
        self.context_network = ContextNetwork(
            self.image_shape, context_network_config(config, self.context_width, self.context_blocks),
            name="context",
        )
        self.steps = CouplingSteps((h, w // 2, 2 * c), self.num_steps, config, context=True, name="steps")

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
            "context_width": self.context_width, "context_blocks": self.context_blocks,
            "config": self.config.get_config(),
        }
