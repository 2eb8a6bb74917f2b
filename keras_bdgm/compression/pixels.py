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
