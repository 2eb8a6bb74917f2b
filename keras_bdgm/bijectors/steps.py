"""A stack of Flow++ coupling steps as one Keras layer, and fused chain evaluation.

One step on a pair [H, W, 2c] (forward = the closed-form direction):

    Normalize (both halves) -> InvertibleConv1x1 (one c x c matrix per half)
    -> MixLogisticCoupling -> swap halves

`CouplingSteps` owns the variables (the bijectors' Keras layers, so a model holding it
tracks, trains and saves them) and hands out the bijectors bound to a context and a
training flag. One `CouplingConfig` sets every step's coupling network.
`forward_and_log_det` runs a list of bijectors forward, taking each coupling's output and
log-det from one network evaluation (TFP's separate `forward` and
`forward_log_det_jacobian` would run the network twice).

#### Examples

    config = CouplingConfig(width=32, num_blocks=2, num_components=4)
    steps = CouplingSteps((28, 14, 2), num_steps=4, config=config)
    bijectors = steps.bijectors(training=False)
    y, ldj = forward_and_log_det(bijectors, x)
    flow = chain(bijectors)                     # the same map as one tfb.Chain
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors._compat import HideOnceFromKerasWalk, load_legacy_list_items
from keras_bdgm.bijectors.config import CouplingConfig
from keras_bdgm.bijectors.coupling import MixLogisticCoupling, MixLogisticCouplingLayer
from keras_bdgm.bijectors.invertible_conv import InvertibleConv1x1, InvertibleConv1x1Layer
from keras_bdgm.bijectors.normalize import Normalize, NormalizeLayer
from keras_bdgm.bijectors.reshape import swap_halves

tfb = tfp.bijectors
_serializable = tf.keras.utils.register_keras_serializable(package="keras_bdgm")


def chain(bijectors, name="chain"):
    """One `tfb.Chain` of `bijectors` listed in forward order (see the package docstring)."""
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
class CouplingSteps(HideOnceFromKerasWalk, tf.keras.layers.Layer):
    """The variables of `num_steps` Flow++ coupling steps on pairs of shape `pair_shape`.

    Args:
      pair_shape: (H, W, 2c) of the pair the steps act on.
      num_steps: coupling steps.
      config: the `CouplingConfig` (or its dict; None: the defaults) of every step's
        `MixLogisticCouplingLayer`; they all hold this one object.
      context: whether the couplings take a context (the dequantizer's).
      **kwargs: `CouplingConfig` fields (replacing the config's) and Keras layer arguments.
    """

    def __init__(self, pair_shape, num_steps, config=None, context=False, **kwargs):
        config = CouplingConfig.resolve(config, CouplingConfig.pop_fields(kwargs))
        super().__init__(**kwargs)
        self.config = config
        self.pair_shape = tuple(int(d) for d in pair_shape)
        if len(self.pair_shape) != 3 or self.pair_shape[-1] % 2:
            raise ValueError(f"pair_shape must be (H, W, 2c), got {pair_shape!r}.")
        self.num_steps, self.context = int(num_steps), bool(context)
        c = self.pair_shape[-1] // 2
        self.norms = [NormalizeLayer(self.pair_shape, name=f"normalize_{i}") for i in range(self.num_steps)]
        self.convs = [InvertibleConv1x1Layer(2 * c, groups=2, name=f"inv_conv_{i}") for i in range(self.num_steps)]
        self.networks = [
            MixLogisticCouplingLayer(c, config, context=self.context, name=f"coupling_{i}")
            for i in range(self.num_steps)
        ]

    def bijectors(self, context=None, training=False):
        """The steps' bijectors in forward order, bound to `context` and `training`."""
        if self.context and context is None:
            raise ValueError(f"{self.name!r} couplings need a context tensor.")
        out = []
        for i, (norm, conv, net) in enumerate(zip(self.norms, self.convs, self.networks)):
            out += [
                Normalize(layer=norm, name=f"normalize_{i}"),
                InvertibleConv1x1(layer=conv, name=f"inv_conv_{i}"),
                MixLogisticCoupling(net, context=context, training=training, name=f"coupling_{i}"),
                swap_halves(self.pair_shape[-1], name=f"swap_{i}"),
            ]
        return out

    def load_own_variables(self, store):
        super().load_own_variables(store)
        # A .keras file saved before the renames holds the steps' layers under their old
        # class names: load them from there (see keras_bdgm.bijectors._compat).
        legacy = load_legacy_list_items(self, store)
        if legacy:
            self.hide_once(legacy)

    def get_config(self):
        return {**super().get_config(), "pair_shape": list(self.pair_shape), "num_steps": self.num_steps,
                "context": self.context, "config": self.config.get_config()}
