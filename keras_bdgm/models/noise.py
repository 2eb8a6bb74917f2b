"""Random noise (Gaussian, uniform, logistic; split seeds) that is the same with and without XLA.

`tf.random.stateless_normal` (and `stateless_uniform`, TFP's `split_seed` built on it, and
`tf.random.Generator.uniform`) gives other numbers under XLA (`jit_compile=True`) than in a
plain TensorFlow graph, for the same seed (TF 2.21): XLA reads a seed with a negative half as
unsigned where TF's kernel sign-extends it (another Philox stream, for about 3 in 4 of the
seeds `noise_seed()` draws), and it turns the random bits into floats another way. A model
trained with XLA would therefore not reproduce a run without it, nor the figures of the same
seeds evaluated without it.

`stateless_normal` draws from the one thing both agree on, Philox's uint32 bits, and does the
rest with ordinary ops, as TensorFlow's CPU/GPU kernel does:

    key, counter = Philox(sign-extended seed, key 0x02461E293EC8F720)   # one 128-bit block
    u = (bits & 0x7FFFFF) / 2^23                                        # uint32 -> [0, 1)
    (z0, z1) = sqrt(-2 log max(u0, 1e-7)) * (sin 2 pi u1, cos 2 pi u1)  # Box-Muller

so it equals `tf.random.stateless_normal(shape, seed)` up to float rounding (sin, cos and
log differ from the kernel's in the last bits: |difference| < 2e-6), eagerly, in a graph and
under XLA alike. The same bits give `stateless_uniform` (one uint32 per value, exactly
`tf.random.stateless_uniform`'s float32 values), `stateless_logistic` (TFP's `Logistic.sample`:
loc + scale * (log u - log1p(-u))) and `split_seed` (exactly `tfp.random.split_seed`'s seeds);
a `tf.random.Generator`'s next bits give `generator_uniform` (its `uniform`'s values) and
`generator_keep` (the dropout mask `uniform >= rate`, compared as integers).

Example:

    eps = stateless_normal([16, 28, 28, 1], seed=[3, 4])
    more = stateless_normal([16, 28, 28, 1], seed=[3, 4], offset=16 * 28 * 28)  # the next values
    first, second = split_seed([3, 4], n=2)
    z = stateless_logistic(loc, scale, first)      # ~ tfd.Logistic(loc, scale).sample(seed=first)
"""

import math

import numpy as np
import tensorflow as tf

_PHILOX = 1  # tf.random.Algorithm.PHILOX
_SEED_KEY = 0x02461E293EC8F720  # the key TF's kernel scrambles a seed with
_EPSILON = 1e-7  # the smallest uniform the Box-Muller log sees, as in TF's kernel


def philox_key_counter(seed):
    """`tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)` for an int32[2] seed, from ops
    that XLA computes as TensorFlow does: one Philox block of the sign-extended seed.

    Returns:
      (key uint64[1], counter uint64[2]), the counter's low word first.
    """
    words = tf.bitcast(tf.cast(seed, tf.int64), tf.uint64)
    mix = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[4], key=tf.constant([_SEED_KEY], tf.uint64), counter=words, alg=_PHILOX, dtype=tf.uint32)
    mix = tf.cast(mix, tf.uint64)
    high = tf.constant(32, tf.uint64)
    key = tf.bitwise.bitwise_or(mix[0], tf.bitwise.left_shift(mix[1], high))
    counter = tf.bitwise.bitwise_or(mix[2], tf.bitwise.left_shift(mix[3], high))
    return tf.reshape(key, [1]), tf.stack([tf.zeros([], tf.uint64), counter])


def stateless_normal(shape, seed, offset=0):
    """Standard normal float32 noise of `shape` from an int32[2] `seed`, skipping `offset` values.

    Values offset .. offset + size - 1 of the stream `tf.random.stateless_normal` draws for
    `seed` (row-major, up to float rounding), the same with or without XLA:

        stateless_normal(shape, seed, offset) ~= tf.reshape(
            tf.random.stateless_normal([offset + size], seed)[offset:], shape)

    without drawing the first `offset`: Philox turns counter value c + g into stream values
    4g .. 4g + 3, so skipping is adding offset / 4 to the 128-bit counter (two uint64 words,
    low first, with the carry). `offset` (an int or an integer scalar tensor) must be a
    multiple of 4.
    """
    key, counter = philox_key_counter(seed)
    low = counter[0] + tf.cast(tf.cast(offset, tf.int64) // 4, tf.uint64)
    counter = tf.stack([low, counter[1] + tf.cast(low < counter[0], tf.uint64)])
    shape = tf.cast(shape, tf.int32)
    size = tf.reduce_prod(shape)
    pairs = (size + 1) // 2
    bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[2 * pairs], key=key, counter=counter, alg=_PHILOX, dtype=tf.uint32)
    uniform = tf.reshape(_unit_floats(bits), [pairs, 2])
    radius = tf.sqrt(-2.0 * tf.math.log(tf.maximum(uniform[:, 0], _EPSILON)))
    angle = 2.0 * math.pi * uniform[:, 1]
    values = tf.reshape(tf.stack([radius * tf.sin(angle), radius * tf.cos(angle)], axis=1), [-1])
    return tf.reshape(values[:size], shape)


def _unit_floats(bits):
    """uint32 bits -> float32 in [0, 1) as TensorFlow's kernel makes them: 23 mantissa bits."""
    mantissa = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(bits, 0x7FFFFF), 0x3F800000)  # [1, 2)
    return tf.bitcast(mantissa, tf.float32) - 1.0


def stateless_uniform(shape, seed, minval=0.0, maxval=1.0):
    """`tf.random.stateless_uniform(shape, seed, minval, maxval)` (float32), the same values
    with or without XLA: u = minval + (maxval - minval) * (bits & 0x7FFFFF) / 2^23, one
    Philox uint32 per value.

    u is kept at or above `minval` explicitly: graph optimizers (Grappler's constant folding,
    XLA's simplifier) reassociate (f - 1) * (maxval - minval) + minval, and with
    minval = float32's smallest normal and maxval = 1 that gave f * 1 - 1 = 0 where the
    mantissa bits were 0, so log(u) was -inf."""
    key, counter = philox_key_counter(seed)
    shape = tf.cast(shape, tf.int32)
    bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=shape, key=key, counter=counter, alg=_PHILOX, dtype=tf.uint32)
    return tf.maximum(_unit_floats(bits) * (maxval - minval) + minval, minval)


def stateless_logistic(loc, scale, seed):
    """A reparameterized draw of Logistic(loc, scale) (float32, broadcast shape), as
    `tfd.Logistic(loc, scale).sample(seed=seed)` draws it, up to float rounding:

        z = loc + scale * (log u - log1p(-u)),   u ~ U(tiny, 1)   (tiny: float32's smallest normal)

    Gradients flow to `loc` and `scale`.
    """
    loc, scale = tf.convert_to_tensor(loc, tf.float32), tf.convert_to_tensor(scale, tf.float32)
    shape = tf.broadcast_dynamic_shape(tf.shape(loc), tf.shape(scale))
    u = stateless_uniform(shape, seed, minval=float(np.finfo(np.float32).tiny), maxval=1.0)
    return (tf.math.log(u) - tf.math.log1p(-u)) * scale + loc


def split_seed(seed, n):
    """`tfp.random.split_seed(seed, n)` for an int32[2] seed and a Python int n: n int32[2]
    seeds, the first 2n Philox uint32 of `seed` read as int32, the same with or without XLA."""
    key, counter = philox_key_counter(seed)
    bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[int(n), 2], key=key, counter=counter, alg=_PHILOX, dtype=tf.uint32)
    return tf.unstack(tf.bitcast(bits, tf.int32))


def generator_keep(generator, shape, rate):
    """`generator.uniform(shape) >= rate` (bool), the same mask as from `generator_uniform`,
    compared as integers: u = m / 2^23 for the draw's 23 mantissa bits m, and
    u >= rate exactly when m >= ceil(rate * 2^23) (rate as float32, as the comparison casts
    it), so no float is made. Inverted dropout keeps where this is True."""
    threshold = math.ceil(float(np.float32(rate)) * 2.0**23)
    return tf.bitwise.bitwise_and(_generator_bits(generator, shape), 0x7FFFFF) >= tf.constant(threshold, tf.uint32)


def generator_uniform(generator, shape):
    """`generator.uniform(shape)` (float32 in [0, 1)) for a Philox `tf.random.Generator`: the
    same values, advancing the generator's state the same way, with or without XLA.

    The generator's key and counter for the draw (its own `_prepare_key_counter`, which also
    folds in the replica under a distribution strategy) feed Philox's uint32 bits, turned
    into floats as TensorFlow's kernel does.
    """
    return _unit_floats(_generator_bits(generator, shape))


def _generator_bits(generator, shape):
    """The Philox uint32 bits of `generator`'s next draw of `shape` (its own key and counter,
    advancing its state as `generator.uniform` does)."""
    key, counter = generator._prepare_key_counter(shape)  # noqa: SLF001 (the draw's key and counter)
    return tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=tf.cast(shape, tf.int32), key=key, counter=counter, alg=_PHILOX, dtype=tf.uint32)
