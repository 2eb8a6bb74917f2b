"""Pixel coding: the model's discretized logistic over the 256 values.

`keras_bdgm.distributions.DiscretizedLogistic(loc, scale)` with pixels scaled
x = v / 127.5 - 1 (v = 0..255), half-bin delta = 1/255 and one learned scalar
scale = exp(log_scale) gives value v the mass

    P(v) = F((x_v + delta - loc) / scale) - F((x_v - delta - loc) / scale),

where the lowest bin's lower edge is -inf and the highest bin's upper edge +inf (the edge
bins take the tail mass), F the logistic CDF. That is an interval index on the grid
g = (-inf, -1 + 1/255, -1 + 3/255, ..., 1 - 1/255, +inf) with standardized edges
u = a + b * g, a = -loc / scale, b = 1 / scale, coded digit by digit in (16, 16)
(`keras_bdgm.compression.intervals`), every value with nonzero probability. Everything
is numpy float64 from the network's float32 means and log-scale.

Example:

    a, b = pixel_params(means, model.log_scale.numpy())    # [N*H*W*C] each
    PIXEL_CODER.push(stack, a, b, images.reshape(-1))
    PIXEL_CODER.masses(a, b)                               # [N*H*W*C, 256]
"""

import numpy as np

from keras_bdgm.compression.intervals import IntervalCoder, split_radices
from keras_bdgm.compression.logistic import NonFiniteModelError
from keras_bdgm.distributions import NUM_BINS

PIXEL_GRID = np.concatenate([[-np.inf], -1.0 + (2.0 * np.arange(NUM_BINS - 1) + 1.0) / (NUM_BINS - 1), [np.inf]])
PIXEL_CODER = IntervalCoder(PIXEL_GRID, split_radices(NUM_BINS))


def pixel_params(means, log_scale):
    """(a, b) float64 [n] for the standardized bin edges u = (g - loc) / scale = a + b * g.

    Args:
      means: the discretized logistic's locations (float32, any shape, [-1, 1] units).
      log_scale: the scalar log-scale (float32).

    Raises:
      ValueError: non-finite means or scale.
    """
    loc = np.asarray(means, np.float64).reshape(-1)
    inv_scale = np.exp(-np.float64(np.asarray(log_scale, np.float32)))
    if not (np.all(np.isfinite(loc)) and np.isfinite(inv_scale) and inv_scale > 0):
        raise NonFiniteModelError("The network produced non-finite pixel means or scale; the model cannot code these images.")
    return -loc * inv_scale, np.full(loc.shape, inv_scale)


def mixture_params(logits, means, log_scales):
    """(a, b, weights), float64 [n, K] each, of a discretized logistic mixture per pixel
    (the PixelCNN's), for `PIXEL_CODER`'s `weights=` coding:

        P(v) = sum_k w_k (F(a_k + b_k g_{v+1}) - F(a_k + b_k g_v)),
        w = softmax(logits), a_k = -means_k / s_k, b_k = 1 / s_k, s_k = exp(log_scales_k).

    Args:
      logits, means, log_scales: float32 [..., K] (any leading shape, flattened to n).

    Raises:
      NonFiniteModelError: a non-finite parameter.
    """
    k = np.shape(logits)[-1]
    logits, means, log_scales = (np.asarray(t, np.float64).reshape(-1, k) for t in (logits, means, log_scales))
    if not (np.all(np.isfinite(logits)) and np.all(np.isfinite(means)) and np.all(np.isfinite(log_scales))):
        raise NonFiniteModelError("The network produced non-finite pixel parameters; the model cannot code these images.")
    # elementwise only (no reductions whose summation order could depend on n): a pixel's
    # numbers are the same bits whether it is coded alone or with others
    weights = np.exp(logits - np.maximum.reduce(logits, axis=1, keepdims=True))
    total = weights[:, 0].copy()
    for m in range(1, k):
        total += weights[:, m]
    weights /= total[:, None]
    inv_scale = np.exp(-log_scales)
    return -means * inv_scale, inv_scale, weights
