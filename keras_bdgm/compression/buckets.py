"""Discretized logistic latents for bits-back coding: K buckets of equal prior mass.

A latent z with conditional prior p = Logistic(m, s) is coded as the index k of one of K
buckets of equal mass under p (Townsend et al. 2019, "HiLLoC"):

    edges    e_i = m + s * logit(i / K),          i = 0..K   (e_0 = -inf, e_K = +inf)
    centres  c_k = m + s * logit((k + 1/2) / K),  k = 0..K-1

so the prior codes k uniformly (log2 K bits), and the top-down pass continues from the
bucket's centre z = c_k. The posterior q = Logistic(mu, sigma) puts mass

    Q(k) = F(u_{k+1}) - F(u_k),   u_i = (e_i - mu) / sigma = a + b * logit(i / K),
    a = (m - mu) / sigma,  b = s / sigma,

on bucket k (F the logistic CDF; `keras_bdgm.compression.logistic`). Both scales are
`0.01 + softplus(raw)`, as `keras_bdgm.distributions.logistic_from_raw` computes them.

The index k is coded digit by digit (`keras_bdgm.compression.intervals`, digits
(16, 8, 8) for K = 2^10), an exact factorization of Q(k) that needs 35 CDF evaluations
per latent instead of K + 1. All arithmetic is numpy float64 on flat arrays (one entry per
latent); the logit tables are computed once per K, so encoder and decoder evaluate
bit-identical expressions.

Example:

    grid = BucketGrid(1024)
    prior, posterior = latent_params(p_mean, p_raw), latent_params(mu, raw)
    a, b = grid.standardize(prior, posterior)
    k = grid.coder.pop(stack, a, b)              # bucket indices from the posterior
    z = grid.centres(prior, k)                   # float64 [n]
    grid.masses(a, b)                            # [n, 1024]: Q(k) for every bucket
"""

import dataclasses

import numpy as np

from keras_bdgm.compression.intervals import IntervalCoder, split_radices
from keras_bdgm.compression.logistic import NonFiniteModelError, softplus

# Smallest latent scale: keras_bdgm.distributions.logistic_from_raw's min_scale.
LATENT_MIN_SCALE = 0.01


@dataclasses.dataclass(frozen=True)
class LogisticParams:
    """Flat float64 means and scales of n logistic latents."""

    mean: np.ndarray
    scale: np.ndarray


def latent_params(mean, raw_scale):
    """LogisticParams from the network's float32 (mean, raw) maps, flattened, float64.

    scale = 0.01 + softplus(raw). Raises ValueError on non-finite network outputs.
    """
    mean = np.asarray(mean, np.float64).reshape(-1)
    scale = LATENT_MIN_SCALE + softplus(np.asarray(raw_scale).reshape(-1))
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale))):
        raise NonFiniteModelError("The network produced non-finite latent parameters; the model cannot code these images.")
    return LogisticParams(mean, scale)


def _logit(p):
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


class BucketGrid:
    """The K equal-prior-mass buckets, and the digit-by-digit coder of their indices.

    Args:
      num_buckets: K, a power of two in [4, 2^20].
      radices: the digits of the index (product K); default `split_radices(K)`.
    """

    def __init__(self, num_buckets, radices=None):
        k = int(num_buckets)
        if k != num_buckets or k < 4 or k & (k - 1) or k > 2**20:
            raise ValueError(f"num_buckets must be a power of two in [4, 2^20], got {num_buckets!r}.")
        self.num_buckets = k
        i = np.arange(k + 1, dtype=np.float64)
        self.edge_logits = _logit(i / k)  # [K+1], -inf and +inf at the ends
        self.centre_logits = _logit((np.arange(k, dtype=np.float64) + 0.5) / k)
        self.coder = IntervalCoder(self.edge_logits, radices or split_radices(k))

    @property
    def radices(self):
        return self.coder.radices

    @staticmethod
    def standardize(prior, posterior):
        """(a, b) with the posterior-standardized edges u_i = a + b * logit(i / K)."""
        a = (prior.mean - posterior.mean) / posterior.scale
        b = prior.scale / posterior.scale
        return a, b

    def masses(self, a, b):
        """Q(k) for all K buckets: [n, K] (for tests and analysis)."""
        return self.coder.masses(a, b)

    def centres(self, prior, index):
        """Bucket centres z = m + s * logit((k + 1/2) / K), float64 [n]."""
        return prior.mean + prior.scale * self.centre_logits[index]
