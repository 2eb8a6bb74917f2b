"""Flow++ components as TensorFlow Probability bijectors (variables in Keras layers).

Every bijector's forward is its closed-form direction: for the main flow that is data ->
latent, so the generative map is `tfb.Invert` of their chain (see
`keras_bdgm.models.FlowPlusPlus.flow`); for the dequantizer it is noise -> u.

Naming: a bijector `X` with variables keeps them in a Keras layer `XLayer` (which a Keras
model can hold, train and save), passed to it as `X(layer=...)` and held as `X.layer`.

Order: this package lists bijectors in forward order, the order they apply to x, and
`chain(bs)` takes that order: `chain([a, b, c]).forward(x) == c(b(a(x)))`. `tfb.Chain`
takes the opposite (composition) order, so `chain([a, b, c])` is `tfb.Chain([c, b, a])`.

* `mixture_logistic`: log-pdf, log-CDF, logit-CDF and the inverse of a logistic mixture.
* `Normalize` / `NormalizeLayer`: per-element affine with data-dependent init.
* `InvertibleConv1x1` / `InvertibleConv1x1Layer`: (grouped) invertible 1x1 convolution.
* `stripe_split`, `channel_split`, `squeeze`, `swap_halves`: rearrangements.
* `MixLogisticCoupling` / `MixLogisticCouplingLayer`: the mixture-logistic CDF coupling
  and its conditioning network.
* `CouplingConfig`: the coupling networks' hyperparameters, one object from the preset to
  every network.
* `logit_preprocess`: y = logit(0.05 + 0.9 x / 256).
* `CouplingSteps`, `forward_and_log_det`, `chain`: stacks of coupling steps.
* `Dequantizer` / `ContextNetwork`: the variational dequantization flow.

The names before the layers were renamed (`NormalizeParams`, `InvConvParams`,
`CouplingNetwork`) still import from here, with a DeprecationWarning: deprecated
subclasses of the new layers, under which .keras files saved before load (`_compat`).

#### Example

    steps = CouplingSteps((8, 4, 2), num_steps=2, config=CouplingConfig(width=16))
    flow = chain(steps.bijectors())
    z = flow.forward(x)
"""

import warnings

from keras_bdgm.bijectors import coupling, invertible_conv, mixture_logistic, normalize
from keras_bdgm.bijectors.config import CouplingConfig, context_network_config
from keras_bdgm.bijectors.coupling import MixLogisticCoupling, MixLogisticCouplingLayer
from keras_bdgm.bijectors.dequantization import ContextNetwork, Dequantizer, standard_normal_log_prob
from keras_bdgm.bijectors.invertible_conv import InvertibleConv1x1, InvertibleConv1x1Layer
from keras_bdgm.bijectors.normalize import Normalize, NormalizeLayer
from keras_bdgm.bijectors.preprocess import logit_preprocess
from keras_bdgm.bijectors.reshape import channel_split, squeeze, stripe_split, swap_halves
from keras_bdgm.bijectors.steps import CouplingSteps, chain, forward_and_log_det

__all__ = [
    "ContextNetwork", "CouplingConfig", "CouplingSteps", "Dequantizer", "InvertibleConv1x1",
    "InvertibleConv1x1Layer", "MixLogisticCoupling", "MixLogisticCouplingLayer", "Normalize",
    "NormalizeLayer", "chain", "channel_split", "context_network_config", "forward_and_log_det",
    "logit_preprocess", "mixture_logistic", "squeeze", "standard_normal_log_prob", "stripe_split",
    "swap_halves",
]

_RENAMED = {  # old name -> (its deprecated class, the new name)
    "NormalizeParams": (normalize.NormalizeParams, "NormalizeLayer"),
    "InvConvParams": (invertible_conv.InvConvParams, "InvertibleConv1x1Layer"),
    "CouplingNetwork": (coupling.CouplingNetwork, "MixLogisticCouplingLayer"),
}


def __getattr__(name):
    if name in _RENAMED:
        cls, new = _RENAMED[name]
        warnings.warn(f"keras_bdgm.bijectors.{name} is deprecated; use {new}.", DeprecationWarning, stacklevel=2)
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
