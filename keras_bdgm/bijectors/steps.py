"""A stack of Flow++ coupling steps as one Keras layer, and fused chain evaluation.

One step on a pair [H, W, 2c] (forward = the closed-form direction):

    Normalize (both halves) -> InvertibleConv1x1 (one c x c matrix per half)
    -> MixLogisticCoupling -> swap halves

`CouplingSteps` owns the variables (Keras layers, so a model holding it tracks, trains and
saves them) and hands out the bijectors bound to a context and a training flag.
`forward_and_log_det` runs a list of bijectors forward, taking each coupling's output and
log-det from one network evaluation (TFP's separate `forward` and
`forward_log_det_jacobian` would run the network twice).

#### Examples

    steps = CouplingSteps((28, 14, 2), num_steps=4, width=32, num_blocks=2, num_components=4)
    bijectors = steps.bijectors(training=False)
    y, ldj = forward_and_log_det(bijectors, x)
    flow = chain(bijectors)                     # the same map as one tfb.Chain
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors.coupling import CouplingNetwork, MixLogisticCoupling
from keras_bdgm.bijectors.invertible_conv import InvConvParams, InvertibleConv1x1
from keras_bdgm.bijectors.normalize import Normalize, NormalizeParams
from keras_bdgm.bijectors.reshape import swap_halves
from keras_bdgm.precision import parse as parse_precision

tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")


def chain(bijectors, name="chain"):
    """One `tfb.Chain` applying `bijectors` (listed in forward order) left to right."""
    return tfb.Chain(list(reversed(bijectors)), name=name)


def forward_and_log_det(bijectors, x, event_ndims=3):
    """Applies `bijectors` (forward order) to x; returns (y, summed log|det| per event)."""
    total = 0.0
    for bijector in bijectors:
        if isinstance(bijector, MixLogisticCoupling):
            x, ldj = bijector.forward_and_log_det(x)
        else:
            ldj = bijector.forward_log_det_jacobian(x, event_ndims=event_ndims)
            x = bijector.forward(x)
        total = total + ldj
    return x, total


@_serializable
class CouplingSteps(tf.keras.layers.Layer):
    """The variables of `num_steps` Flow++ coupling steps on pairs of shape `pair_shape`.

    Args:
      pair_shape: (H, W, 2c) of the pair the steps act on.
      num_steps: coupling steps.
      width, num_blocks, num_components, precision, dropout: of each `CouplingNetwork`.
      context: whether the couplings take a context (the dequantizer's).
      attention_heads, init_scheme: of each `CouplingNetwork`.
    """

    def __init__(self, pair_shape, num_steps, width=32, num_blocks=2, num_components=4,
                 precision="w32a32", context=False, dropout=0.0, attention_heads=0,
                 init_scheme="identity", **kwargs):
        super().__init__(**kwargs)
        self.pair_shape = tuple(int(d) for d in pair_shape)
        if len(self.pair_shape) != 3 or self.pair_shape[-1] % 2:
            raise ValueError(f"pair_shape must be (H, W, 2c), got {pair_shape!r}.")
        self.num_steps, self.width, self.num_blocks = int(num_steps), int(width), int(num_blocks)
        self.num_components = int(num_components)
        self.precision = parse_precision(precision).name
        self.context, self.dropout = bool(context), float(dropout)
        self.attention_heads = int(attention_heads)
        self.init_scheme = init_scheme
        c = self.pair_shape[-1] // 2
        self.norms = [NormalizeParams(self.pair_shape, name=f"normalize_{i}") for i in range(self.num_steps)]
        self.convs = [InvConvParams(2 * c, groups=2, name=f"inv_conv_{i}") for i in range(self.num_steps)]
        self.networks = [
            CouplingNetwork(c, self.width, self.num_blocks, self.num_components, self.precision,
                            context=self.context, dropout=self.dropout,
                            attention_heads=self.attention_heads, init_scheme=init_scheme,
                            name=f"coupling_{i}")
            for i in range(self.num_steps)
        ]

    def bijectors(self, context=None, training=False):
        """The steps' bijectors in forward order, bound to `context` and `training`."""
        if self.context and context is None:
            raise ValueError(f"{self.name!r} couplings need a context tensor.")
        out = []
        for i, (norm, conv, net) in enumerate(zip(self.norms, self.convs, self.networks)):
            out += [
                Normalize(params=norm, name=f"normalize_{i}"),
                InvertibleConv1x1(params=conv, name=f"inv_conv_{i}"),
                MixLogisticCoupling(net, context=context, training=training, name=f"coupling_{i}"),
                swap_halves(self.pair_shape[-1], name=f"swap_{i}"),
            ]
        return out

    def get_config(self):
        return {
            **super().get_config(), "pair_shape": list(self.pair_shape), "num_steps": self.num_steps,
            "width": self.width, "num_blocks": self.num_blocks,
            "num_components": self.num_components, "precision": self.precision,
            "context": self.context, "dropout": self.dropout, "attention_heads": self.attention_heads,
            "init_scheme": self.init_scheme,
        }
