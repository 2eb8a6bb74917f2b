"""Flow++ components as TensorFlow Probability bijectors (variables in Keras layers).

Every bijector's forward is its closed-form direction: for the main flow that is data ->
latent, so the generative map is `tfb.Invert` of their chain (see
`keras_bdgm.models.FlowPlusPlus.flow`); for the dequantizer it is noise -> u.

* `mixture_logistic`: log-pdf, log-CDF, logit-CDF and the inverse of a logistic mixture.
* `Normalize` / `NormalizeParams`: per-element affine with data-dependent init.
* `InvertibleConv1x1` / `InvConvParams`: (grouped) invertible 1x1 convolution.
* `stripe_split`, `channel_split`, `squeeze`, `swap_halves`: rearrangements.
* `MixLogisticCoupling` / `CouplingNetwork`: the mixture-logistic CDF coupling.
* `logit_preprocess`: y = logit(0.05 + 0.9 x / 256).
* `CouplingSteps`, `forward_and_log_det`, `chain`: stacks of coupling steps.
* `Dequantizer` / `ContextNetwork`: the variational dequantization flow.

#### Example

    steps = CouplingSteps((8, 4, 2), num_steps=2)
    flow = chain(steps.bijectors())
    z = flow.forward(x)
"""

from keras_bdgm.bijectors import mixture_logistic
from keras_bdgm.bijectors.coupling import CouplingNetwork, MixLogisticCoupling
from keras_bdgm.bijectors.dequantization import ContextNetwork, Dequantizer, standard_normal_log_prob
from keras_bdgm.bijectors.invertible_conv import InvConvParams, InvertibleConv1x1
from keras_bdgm.bijectors.normalize import Normalize, NormalizeParams
from keras_bdgm.bijectors.preprocess import logit_preprocess
from keras_bdgm.bijectors.reshape import channel_split, squeeze, stripe_split, swap_halves
from keras_bdgm.bijectors.steps import CouplingSteps, chain, forward_and_log_det

__all__ = [
    "ContextNetwork", "CouplingNetwork", "CouplingSteps", "Dequantizer", "InvConvParams",
    "InvertibleConv1x1", "MixLogisticCoupling", "Normalize", "NormalizeParams", "chain",
    "channel_split", "forward_and_log_det", "logit_preprocess", "mixture_logistic", "squeeze",
    "standard_normal_log_prob", "stripe_split", "swap_halves",
]
