"""Distributions of the models: discretized-logistic pixels (one, or a mixture for the
PixelCNN) and the ResNet VAE's logistic latents.

* `DiscretizedLogistic`: a `tfd.Distribution` over the 256 pixel values scaled to
  [-1, 1] (`x = pixel / 127.5 - 1`, bins of width 2/255). With sigma(t) = 1/(1+exp(-t)),
  half-bin delta = 1/255 and s the scale,

      P(x) = sigma((x + delta - loc)/s)                              x = -1 (lowest bin)
      P(x) = 1 - sigma((x - delta - loc)/s)                          x = +1 (highest bin)
      P(x) = sigma((x + delta - loc)/s) - sigma((x - delta - loc)/s)  otherwise,

  so the edge bins take the tail mass and the 256 probabilities sum to 1. The middle case
  is evaluated in log space as
  log sigma(a) + log sigma(-b) + log(1 - exp(-(a - b))) with a, b the two arguments
  (an identity of the logistic function), finite for any loc and scale.
* `discretized_logistic_mixture(logits, means, log_scales)`: PixelCNN++'s pixel
  distribution, a mixture of K `DiscretizedLogistic`s (a `tfd.MixtureSameFamily`), and
  `discretized_logistic_mixture_log_prob`, its log-probability as a pure function:

      log P(x) = logsumexp_k(log_softmax(logits)_k + log P_k(x)),
      P_k = DiscretizedLogistic(means_k, exp(log_scales_k)).
* `logistic_from_raw`: a latent `tfd.Logistic` with scale = min_scale + softplus(raw).
* `sample_with_kl`: z ~ q and the single-sample KL estimate log q(z) - log p(z).
* `free_bits_kl`: the free-bits KL objective: per latent channel, KL summed over H, W and
  averaged over the batch, floored at `kl_min`.

#### Examples

    likelihood = DiscretizedLogistic(loc=means, scale=tf.exp(log_scale))
    log_px = tf.reduce_sum(likelihood.log_prob(x / 127.5 - 1.0), axis=[1, 2, 3])

    q = logistic_from_raw(q_mean, q_raw)
    p = logistic_from_raw(p_mean, p_raw)
    z, kl = sample_with_kl(q, p, seed=seed)        # kl: [B, H, W, C]
    objective_kl = free_bits_kl(kl, kl_min=0.1)    # scalar, nats per image

    # K = 5 components per pixel, parameters [N, H, W, 5]
    log_px = discretized_logistic_mixture_log_prob(x / 127.5 - 1.0, logits, means, log_scales)

#### References
[1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational Inference
    with Inverse Autoregressive Flow. 2016. https://arxiv.org/abs/1606.04934
[2] Salimans, Karpathy, Chen, Kingma. PixelCNN++. 2017. https://arxiv.org/abs/1701.05517
"""

import tensorflow as tf
import tensorflow_probability as tfp

from keras_bdgm.models.noise import stateless_logistic

tfd = tfp.distributions

NUM_BINS = 256


class DiscretizedLogistic(tfd.Distribution):
    """Logistic(loc, scale) discretized to `num_bins` values evenly spaced on [-1, 1].

    The support is {-1 + 2k/(num_bins - 1), k = 0..num_bins-1}; a value's bin is
    [x - delta, x + delta] with delta = 1/(num_bins - 1), except that the lowest bin
    extends to -inf and the highest to +inf. `log_prob` expects values on that grid
    (e.g. `pixels / 127.5 - 1`); `sample` and `mode` return values on it.

    Args:
      loc: float tensor, the logistic's location (in the [-1, 1] scale).
      scale: positive float tensor, broadcastable with `loc`.
      num_bins: number of values (256 for 8-bit pixels).

    #### Examples

        d = DiscretizedLogistic(loc=tf.zeros([2, 28, 28, 1]), scale=0.1)
        d.log_prob(images / 127.5 - 1.0)      # [2, 28, 28, 1], log-probabilities
        pixels = (d.mode() + 1.0) * 127.5     # whole numbers 0..255
    """

    def __init__(self, loc, scale, num_bins=NUM_BINS, validate_args=False,
                 allow_nan_stats=True, name="DiscretizedLogistic"):
        parameters = dict(locals())
        if int(num_bins) < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins!r}.")
        with tf.name_scope(name) as name:
            self._loc = tf.convert_to_tensor(loc, name="loc", dtype_hint=tf.float32)
            self._scale = tf.convert_to_tensor(scale, name="scale", dtype=self._loc.dtype)
            self._num_bins = int(num_bins)
            super().__init__(
                dtype=self._loc.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            loc=tfp.util.ParameterProperties(),
            scale=tfp.util.ParameterProperties(),
        )

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    @property
    def num_bins(self):
        return self._num_bins

    @property
    def half_bin(self):
        """delta = 1 / (num_bins - 1), half the width 2 / (num_bins - 1) of a bin."""
        return 1.0 / (self._num_bins - 1)

    def _event_shape(self):
        return tf.TensorShape([])

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _log_prob(self, x):
        x = tf.convert_to_tensor(x, dtype=self.dtype)
        inv_scale = 1.0 / self._scale
        centered = x - self._loc
        upper = inv_scale * (centered + self.half_bin)  # argument of the bin's upper CDF
        lower = inv_scale * (centered - self.half_bin)
        log_cdf_upper = tf.math.log_sigmoid(upper)        # lowest bin: P(X <= x + delta)
        log_survival_lower = tf.math.log_sigmoid(-lower)  # highest bin: P(X > x - delta)
        # sigma(a) - sigma(b) = sigma(a) * sigma(-b) * (1 - exp(-(a - b))), a > b.
        width = 2.0 * self.half_bin * inv_scale + tf.zeros_like(upper)
        log_middle = log_cdf_upper + log_survival_lower + tfp.math.log1mexp(width)
        edge = 1.0 - self.half_bin
        return tf.where(
            x < -edge, log_cdf_upper, tf.where(x > edge, log_survival_lower, log_middle)
        )

    def _quantize(self, y):
        """Rounds to the nearest grid value, clipped to [-1, 1]."""
        k = tf.round((y + 1.0) / (2.0 * self.half_bin))
        k = tf.clip_by_value(k, 0.0, self._num_bins - 1.0)
        return k * (2.0 * self.half_bin) - 1.0

    def _sample_n(self, n, seed=None):
        continuous = tfd.Logistic(self._loc, self._scale).sample(n, seed=seed)
        return self._quantize(continuous)

    def _mode(self):
        return self._quantize(self._loc + tf.zeros_like(self._scale))


def discretized_logistic_mixture_log_prob(x, logits, means, log_scales, num_bins=NUM_BINS):
    """log P(x) of a mixture of K discretized logistics, per value, in nats.

        P(x) = sum_k softmax(logits)_k * DiscretizedLogistic(means_k, exp(log_scales_k)).prob(x)

    Every component's bin mass is `DiscretizedLogistic.log_prob`'s exact log-space value
    (the edge bins take the tails), so the num_bins probabilities of a position sum to 1.

    Args:
      x: float [...], values on the grid of `DiscretizedLogistic` (pixels / 127.5 - 1).
      logits, means, log_scales: float [..., K], the mixture logits and the components'
        locations and log-scales (in the [-1, 1] scale).
      num_bins: values of the grid (256 for 8-bit pixels).

    Returns:
      float [...], log P(x).

    Example:
        log_px = discretized_logistic_mixture_log_prob(pixels / 127.5 - 1.0, logits, means, log_scales)
    """
    x = tf.convert_to_tensor(x, dtype_hint=tf.float32)
    components = DiscretizedLogistic(means, tf.exp(log_scales), num_bins=num_bins)
    return tf.reduce_logsumexp(tf.nn.log_softmax(logits) + components.log_prob(x[..., None]), axis=-1)


def discretized_logistic_mixture(logits, means, log_scales, temperature=1.0, num_bins=NUM_BINS):
    """The mixture of `discretized_logistic_mixture_log_prob` as a `tfd.MixtureSameFamily`.

    `temperature` T > 0 (a float or a scalar tensor) samples colder or hotter: the mixture
    logits become logits / T and every component's scale is multiplied by T (T = 1: the
    model's distribution).

    Example:
        pixels = (discretized_logistic_mixture(logits, means, log_scales).sample(seed=seed) + 1) * 127.5
    """
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=logits / temperature),
        DiscretizedLogistic(means, tf.exp(log_scales) * temperature, num_bins=num_bins),
    )


def logistic_from_raw(loc, raw_scale, min_scale=0.01, temperature=1.0):
    """A `tfd.Logistic` with scale = (min_scale + softplus(raw_scale)) * temperature.

    Example:
        mean, raw = tf.split(conv(h), 2, axis=-1)
        q = logistic_from_raw(mean, raw)
    """
    scale = min_scale + tf.math.softplus(raw_scale)
    if temperature != 1.0:
        scale = scale * temperature
    return tfd.Logistic(loc=loc, scale=scale)


def sample_with_kl(posterior, prior, seed=None):
    """Draws z ~ posterior; returns (z, log q(z) - log p(z)), the single-sample KL estimate.

    The estimate is unbiased: E_q[log q(z) - log p(z)] = KL(q || p). Gradients flow through
    the reparameterized sample. A logistic posterior with a stateless seed draws z with
    `keras_bdgm.models.noise.stateless_logistic` (`posterior.sample(seed=seed)`'s values, but
    the same with and without XLA).
    """
    if seed is not None and isinstance(posterior, tfd.Logistic):
        z = stateless_logistic(posterior.loc, posterior.scale, seed)
    else:
        z = posterior.sample(seed=seed)
    return z, posterior.log_prob(z) - prior.log_prob(z)


def kl_per_channel(kl):
    """KL of each latent channel: [B, H, W, C] -> [C], summed over H, W, mean over B."""
    return tf.reduce_mean(tf.reduce_sum(kl, axis=[1, 2]), axis=0)


def free_bits_kl(kl, kl_min):
    """The free-bits KL term of the objective, in nats per image.

        sum_c max(kl_min, mean_b sum_{h,w} kl[b, h, w, c])

    A channel whose batch KL is below `kl_min` costs `kl_min` and gets no gradient, so the
    model is free to use that much information per channel.

    Args:
      kl: [B, H, W, C] per-element KL estimates (e.g. from `sample_with_kl`).
      kl_min: the floor, in nats per channel.
    """
    return tf.reduce_sum(tf.maximum(kl_per_channel(kl), kl_min))
