"""Logistic interval masses in float64: the probability tables of the lossless codec.

Every probability the codec hands to the entropy coder is the mass a logistic puts on an
interval of standardized edges u_lo <= u_hi,

    P = F(u_hi) - F(u_lo),   F(u) = sigmoid(u) = 1 / (1 + exp(-u)),

computed here in numpy float64 from the network's float32 outputs, vectorized over whole
arrays. A plain F(u_hi) - F(u_lo) loses all relative precision in the upper tail (two
numbers close to 1). With the tail mass t(u) = sigmoid(-|u|) = e / (1 + e), e = exp(-|u|)
(accurate when tiny, and F(u) = t(u) for u < 0, 1 - t(u) for u >= 0):

    both edges < 0:     P = t(u_hi) - t(u_lo)
    both edges >= 0:    P = t(u_lo) - t(u_hi)
    u_lo < 0 <= u_hi:   P = 1 - t(u_lo) - t(u_hi)      (at most one interval per row)

so P = |t(u_hi) - t(u_lo)| except on the interval that straddles 0. Far-tail masses keep
their relative precision down to float64's underflow (|u| ~ 745); u = -inf and +inf give
t = 0 (the open outer intervals).

Masses are >= 0 but may be 0 in float64; the entropy coder gives every entry of a table at
least its smallest representable probability, and `safe_rows` replaces a row whose entries
are all 0 by a uniform one, so every symbol stays codable.

Example:

    u = np.array([[-np.inf, -1.0, 0.5, np.inf]])
    interval_masses(u)        # [[F(-1), F(0.5) - F(-1), 1 - F(0.5)]], sums to 1
"""

import numpy as np


class NonFiniteModelError(ValueError):
    """The network's numbers on these images are not finite, so no table can be built
    (the codec then stores the pixels instead)."""


def tail_mass(u):
    """t(u) = sigmoid(-|u|), the logistic's mass beyond u on u's side of 0 (float64)."""
    e = np.abs(u)
    np.negative(e, out=e)
    np.exp(e, out=e)  # in place: the same numbers as exp(-|u|) / (1 + exp(-|u|)), fewer copies
    e /= 1.0 + e
    return e


def interval_masses(u):
    """Masses of consecutive intervals: [n, m+1] standardized edges -> [n, m] masses.

    `u` (float64, inf allowed) must be non-decreasing along each row.
    """
    u = np.asarray(u, np.float64)
    t = tail_mass(u)
    masses = np.subtract(t[:, 1:], t[:, :-1])
    np.abs(masses, out=masses)
    negatives = np.count_nonzero(u < 0.0, axis=1)  # the straddling interval is number negatives - 1
    rows = np.flatnonzero((negatives >= 1) & (negatives < u.shape[1]))
    cols = negatives[rows] - 1
    masses[rows, cols] = 1.0 - t[rows, cols] - t[rows, cols + 1]
    return masses


def safe_rows(masses):
    """Replaces rows that sum to 0 (all masses underflowed) by uniform rows, in place."""
    empty = ~(masses.sum(axis=-1) > 0.0)
    if np.any(empty):
        masses[empty] = 1.0
    return masses


def softplus(raw):
    """log(1 + exp(raw)) in float64, stable for any raw."""
    return np.logaddexp(0.0, np.asarray(raw, np.float64))
