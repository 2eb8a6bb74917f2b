"""The importance-weighted bound, computed in chunks of samples (`GenerativeModel.log_prob`).

With log-weights log w_k = log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x) (for Flow++, z is
the dequantization noise u and p(x, u) = p(x + u)):

    log p(x) >= log (1/K) sum_k w_k = logsumexp_k(log w_k) - log K

(K = 1 is the ELBO; the bound does not decrease in K [Burda et al. 2015]). The K samples are
drawn in chunks of `samples_per_chunk` per image (default: `IWAE_CHUNK_ROWS` // N, at least
1, so a chunk holds about 1024 image-sample rows and K = 1000 fits in memory); each chunk is
reduced to logsumexp over its samples and the chunks' results are reduced again:

    bound = logsumexp_c( logsumexp_{k in c} log w_k ) - log K

Example:

    chunks = importance_chunks(num_samples=1000, batch_size=256)   # 4 samples per chunk
    bound = importance_bound([logsumexp over chunk c of its log-weights, ...], 1000)

#### References
[1] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. 2015.
    https://arxiv.org/abs/1509.00519
"""

import math
import operator
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

# Image-sample rows per chunk of the importance-weighted bound, by default.
IWAE_CHUNK_ROWS = 1024


def check_positive_int(name, value):
    """`value` as an int >= 1 (an int or numpy integer, not a bool); else ValueError naming
    the argument `name`."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.") from None
    if number < 1:
        raise ValueError(f"{name} must be >= 1, got {number}.")
    return number


def check_num_samples(num_samples):
    """`num_samples` as an int >= 1, else ValueError."""
    return check_positive_int("num_samples", num_samples)


class ImportanceChunk(NamedTuple):
    """One chunk of the K importance samples: samples start .. start + size - 1 of each image.

    `index` and `start` may be Python ints or int32 scalar tensors (a compiled evaluation
    passes tensors, so it traces once for all chunks of one size); `count` (the number of
    chunks) and `size` are Python ints.
    """

    index: Any
    count: int
    start: Any
    size: int


def importance_chunks(num_samples, batch_size=None, samples_per_chunk=None):
    """The chunks of the importance-weighted bound of K = `num_samples` samples per image.

    Args:
      num_samples: K >= 1.
      batch_size: images per batch N (None: unknown), for the default chunk size.
      samples_per_chunk: samples per image in a chunk; default max(1, IWAE_CHUNK_ROWS // N).
        Larger values than K are clipped to K.

    Returns:
      A tuple of `ImportanceChunk`s covering samples 0 .. K - 1 in order; all but the last
      have the same size.

    Raises:
      ValueError: num_samples or samples_per_chunk is not an integer >= 1.

    Example:

        importance_chunks(10, batch_size=256, samples_per_chunk=4)
        # sizes 4, 4, 2 starting at samples 0, 4, 8
    """
    num_samples = check_num_samples(num_samples)
    if samples_per_chunk is None:
        samples_per_chunk = max(1, IWAE_CHUNK_ROWS // max(int(batch_size or 1), 1))
    else:
        samples_per_chunk = check_positive_int("samples_per_chunk", samples_per_chunk)
    size = min(samples_per_chunk, num_samples)
    starts = range(0, num_samples, size)
    return tuple(
        ImportanceChunk(index=c, count=len(starts), start=s, size=min(size, num_samples - s))
        for c, s in enumerate(starts)
    )


def importance_bound(chunk_bounds, num_samples):
    """logsumexp over the chunks' logsumexp of log-weights, minus log K: the bound in nats.

    Args:
      chunk_bounds: one [N] tensor per chunk: logsumexp over the chunk's samples.
      num_samples: K, the samples in all chunks together.
    """
    return tf.reduce_logsumexp(tf.stack(chunk_bounds), axis=0) - math.log(num_samples)
