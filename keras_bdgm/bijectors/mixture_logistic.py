"""Mixture-of-logistics math: log-pdf, log-CDF, logit-CDF and its inverse (pure functions).

A mixture of K logistics with weights pi = softmax(logits), means mu_k and scales
s_k = exp(log_scale_k) has, with z_k = (x - mu_k) / s_k,

    log p(x)      = logsumexp_k [log pi_k - z_k - log s_k - 2 softplus(-z_k)]
    log F(x)      = logsumexp_k [log pi_k - softplus(-z_k)]           (log CDF)
    log (1 - F(x)) = logsumexp_k [log pi_k - softplus(z_k)]           (log survival)
    logit F(x)    = log F(x) - log (1 - F(x))

all evaluated in log space, so they stay finite far in the tails. The mixture parameters
carry a trailing component axis of size K; `x` has the shape without it.

The inverse has no closed form. `inverse_logit_cdf` solves logit F(x) = y with TFP's
Chandrupatla root finder on an exact bracket: since F is a convex combination of the
component CDFs, logit F(x) lies between min_k and max_k of z_k(x), so
[min_k (mu_k + s_k y), max_k (mu_k + s_k y)] always holds the root.

#### Examples

    x = inverse_cdf(0.3, logits, means, log_scales)[0]
    np.exp(log_cdf(x, logits, means, log_scales))  # ~0.3

#### References
[1] Ho et al. Flow++: Improving Flow-Based Generative Models with Variational
    Dequantization and Architecture Design. 2019. https://arxiv.org/abs/1902.00275
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.bijectors.shared import shared_in_graphs


def _log_weights_and_z(x, logits, means, log_scales):
    x = tf.convert_to_tensor(x)
    dtype = x.dtype
    logits, means, log_scales = (tf.cast(t, dtype) for t in (logits, means, log_scales))
    z = (tf.expand_dims(x, -1) - means) * tf.exp(-log_scales)
    return tf.nn.log_softmax(logits, axis=-1), z, log_scales


def log_pdf_cdf_survival(x, logits, means, log_scales):
    """(log p(x), log F(x), log (1 - F(x))) from one evaluation of the weights and z_k.

    The same values as `log_pdf`, `log_cdf` and `log_survival` called one by one (the same
    operations on the same inputs), in a third of the graph: Flow++'s coupling needs all
    three, and its forward pass and gradient are traced once per coupling.
    """
    log_w, z, log_scales = _log_weights_and_z(x, logits, means, log_scales)
    softplus_neg_z = tf.nn.softplus(-z)
    log_component = -z - log_scales - 2.0 * softplus_neg_z
    return (tf.reduce_logsumexp(log_w + log_component, axis=-1),
            tf.reduce_logsumexp(log_w - softplus_neg_z, axis=-1),
            tf.reduce_logsumexp(log_w - tf.nn.softplus(z), axis=-1))


def log_pdf(x, logits, means, log_scales):
    """log p(x) of the mixture; parameters have a trailing component axis."""
    log_w, z, log_scales = _log_weights_and_z(x, logits, means, log_scales)
    log_component = -z - log_scales - 2.0 * tf.nn.softplus(-z)
    return tf.reduce_logsumexp(log_w + log_component, axis=-1)


def log_cdf(x, logits, means, log_scales):
    """log F(x), the log CDF of the mixture."""
    log_w, z, _ = _log_weights_and_z(x, logits, means, log_scales)
    return tf.reduce_logsumexp(log_w - tf.nn.softplus(-z), axis=-1)


def log_survival(x, logits, means, log_scales):
    """log (1 - F(x)), the log survival function of the mixture."""
    log_w, z, _ = _log_weights_and_z(x, logits, means, log_scales)
    return tf.reduce_logsumexp(log_w - tf.nn.softplus(z), axis=-1)


def logit_cdf(x, logits, means, log_scales):
    """logit F(x) = log F(x) - log(1 - F(x)), stable in both tails."""
    return log_cdf(x, logits, means, log_scales) - log_survival(x, logits, means, log_scales)


def _finite_logsumexp(t):
    """log sum_k exp(t_k) over the last axis, for finite t: `tf.reduce_logsumexp`'s values
    (max-shifted the same way) without its guard for an infinite max and its gradient's
    stop, half the ops in the root finder's loop, which is traced once per coupling."""
    peak = tf.reduce_max(t, axis=-1, keepdims=True)
    return tf.math.log(tf.reduce_sum(tf.exp(t - peak), axis=-1)) + tf.squeeze(peak, -1)


def inverse_logit_cdf(y, logits, means, log_scales, tolerance=1e-8, max_iterations=100,
                      compute_dtype=tf.float64):
    """Solves logit F(x) = y elementwise with `tfp.math.find_root_chandrupatla`.

    Args:
      y: target logit-CDF values (any shape S).
      logits, means, log_scales: mixture parameters of shape S + [K].
      tolerance: absolute tolerance on x (the root finder's `position_tolerance`).
      max_iterations: the root finder's iteration cap.
      compute_dtype: dtype of the search (float64 by default, so the float32 result is
        accurate to float32 rounding even for wide components).

    Returns:
      (x, converged): x in y's dtype; converged is a boolean tensor of shape S, False
      where the search hit `max_iterations` or ended on a non-finite value.

    Inside a graph (e.g. Flow++'s traced `sample`) the search is traced once for all
    couplings (`shared_in_graphs`), not as one root-finding loop per coupling.
    """
    return _inverse_logit_cdf(y, logits, means, log_scales, tolerance, max_iterations, compute_dtype)


@shared_in_graphs
def _inverse_logit_cdf(y, logits, means, log_scales, tolerance, max_iterations, compute_dtype):
    """`inverse_logit_cdf`'s computation."""
    y = tf.convert_to_tensor(y)
    out_dtype = y.dtype
    yc = tf.cast(y, compute_dtype)
    logits, means, log_scales = (tf.cast(t, compute_dtype) for t in (logits, means, log_scales))
    ends = means + tf.exp(log_scales) * tf.expand_dims(yc, -1)
    low, high = tf.reduce_min(ends, axis=-1), tf.reduce_max(ends, axis=-1)
    # Loop invariants, computed once rather than in every iteration of the search.
    log_w, inverse_scales = tf.nn.log_softmax(logits, axis=-1), tf.exp(-log_scales)

    def objective(x):
        # logit_cdf with one softplus per component: softplus(z) = softplus(-z) + z.
        z = (tf.expand_dims(x, -1) - means) * inverse_scales
        log_w_cdf = log_w - tf.nn.softplus(-z)
        return _finite_logsumexp(log_w_cdf) - _finite_logsumexp(log_w_cdf - z) - yc

    result = tfp.math.find_root_chandrupatla(
        objective, low=low, high=high, position_tolerance=tf.cast(tolerance, compute_dtype),
        max_iterations=max_iterations,
    )
    x = result.estimated_root
    converged = (result.num_iterations < max_iterations) & tf.math.is_finite(x) & tf.math.is_finite(
        result.objective_at_estimated_root
    )
    return tf.cast(x, out_dtype), converged


def inverse_cdf(p, logits, means, log_scales, tolerance=1e-8, max_iterations=100,
                compute_dtype=tf.float64):
    """Solves F(x) = p for p in (0, 1); returns (x, converged) as `inverse_logit_cdf`."""
    p = tf.convert_to_tensor(p)
    y = tf.math.log(p) - tf.math.log1p(-p)
    return inverse_logit_cdf(y, logits, means, log_scales, tolerance, max_iterations, compute_dtype)
