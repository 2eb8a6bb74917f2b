"""Seeds: how every keras_bdgm model reads the `seed` of a method that draws noise.

Every method that draws noise takes `seed`, read the same way by every model
(`stateless_seed`):

* None: a fresh int32[2] seed from `model.noise_seed()` (the model's checkpointed generator
  advances; training and `model(x)` use this).
* a pair (a, b) of ints (or an int32/int64 tensor of shape [2]): used as it is, [a, b].
* an int s (or a 0-d integer array or tensor): the pair (s, 0).

The int32[2] seed of one `log_prob` call is shared by all of its chunks; each model derives
a chunk's noise from it and the chunk's position, so the bound for a given seed does not
depend on how (or whether) the calls are compiled.

Example:

    stateless_seed(7)                # int32 [7, 0]
    model.log_prob(x, seed=(3, 4))   # the same noise on every call
"""

import numpy as np
import tensorflow as tf


def stateless_seed(seed):
    """The int32[2] seed for `tf.random.stateless_*` ops from an int or a pair of ints.

    Args:
      seed: a pair (a, b) of ints, an integer array or tensor of shape [2] (-> [a, b]), or an
        int / 0-d integer array or tensor s (-> [s, 0]).
        Values are cast to int32 (larger ints wrap, as `tf.cast` does).

    Returns:
      An int32 tensor of shape [2].

    Raises:
      ValueError: `seed` is not integer-valued, or not a scalar or a pair.

    Example:

        stateless_seed(7)           # [7, 0]
        stateless_seed((3, 4))      # [3, 4]
    """
    if not tf.is_tensor(seed):
        array = np.asarray(seed)
        if array.dtype.kind not in "iu":
            raise ValueError(f"A seed is an int, a pair of ints or None; got {seed!r}.")
        seed = tf.constant(array)
    elif not seed.dtype.is_integer:
        raise ValueError(f"A seed tensor must have an integer dtype, got {seed.dtype.name}.")
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    elif seed.shape.rank is not None and (seed.shape.rank != 1 or seed.shape[0] not in (None, 2)):
        raise ValueError(f"A seed is an int or a pair of ints; got shape {seed.shape.as_list()}.")
    return tf.cast(seed, tf.int32)
