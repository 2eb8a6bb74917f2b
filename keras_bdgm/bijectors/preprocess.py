"""Logit preprocessing of dequantized pixels (Flow++'s first layer).

    y = logit(alpha + (1 - 2 alpha) * x / 256),   x in [0, 256), alpha = 0.05
    log|dy/dx| = log((1 - 2 alpha) / 256) - log(p) - log(1 - p),   p = alpha + (1 - 2 alpha) x / 256

A `tfb.Chain` of `tfb.Scale`, `tfb.Shift` and `tfb.Invert(tfb.Sigmoid())`.

#### Examples

    pre = logit_preprocess()
    y = pre.forward(x + u)                                  # x uint8 as float, u in (0, 1)
    ldj = pre.forward_log_det_jacobian(x + u, event_ndims=3)
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


def logit_preprocess(alpha=0.05, num_bins=256, dtype=tf.float32, name="logit_preprocess"):
    """The bijector [0, num_bins] -> R, y = logit(alpha + (1 - 2 alpha) x / num_bins)."""
    alpha = float(alpha)
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), got {alpha!r}.")
    return tfb.Chain(
        [
            tfb.Invert(tfb.Sigmoid()),
            tfb.Shift(tf.constant(alpha, dtype)),
            tfb.Scale(tf.constant((1.0 - 2.0 * alpha) / num_bins, dtype)),
        ],
        name=name,
    )
