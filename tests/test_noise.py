"""keras_bdgm.models.noise.stateless_normal against TensorFlow's own kernel
(`tf.random.stateless_normal`), eagerly, in a graph and under XLA."""

import numpy as np
import pytest
import tensorflow as tf

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
from keras_bdgm.models.noise import philox_key_counter, stateless_normal

# Seeds with a negative half are the ones XLA's own key derivation gets wrong.
SEEDS = [(3, 4), (1394558998, -2103696179), (-5, 7), (-2**31, -1), (0, 0)]
MODES = {"eager": lambda f: f, "graph": tf.function, "XLA": lambda f: tf.function(f, jit_compile=True)}


@pytest.mark.parametrize("seed", SEEDS)
def test_key_and_counter_are_tensorflows(seed):
    expected = tf.raw_ops.StatelessRandomGetKeyCounter(seed=tf.constant(seed, tf.int32))
    for mode in ("eager", "XLA"):
        key, counter = MODES[mode](philox_key_counter)(tf.constant(seed, tf.int32))
        np.testing.assert_array_equal(key.numpy(), expected[0].numpy(), err_msg=mode)
        np.testing.assert_array_equal(counter.numpy(), expected[1].numpy(), err_msg=mode)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_values_are_tf_stateless_normal(seed, mode):
    seed = tf.constant(seed, tf.int32)
    stream = tf.random.stateless_normal([3 * 5 * 7 + 8], seed).numpy()
    draw = MODES[mode](lambda s: (stateless_normal([3, 5, 7], s), stateless_normal([3, 5, 7], s, 8)))
    first, skipped = draw(seed)  # an odd size: the last Box-Muller pair is half used
    assert first.dtype == tf.float32 and first.shape == (3, 5, 7)
    np.testing.assert_allclose(first.numpy().ravel(), stream[:105], rtol=0, atol=2e-6)
    np.testing.assert_allclose(skipped.numpy().ravel(), stream[8:], rtol=0, atol=2e-6)


@pytest.mark.parametrize("offset", [0, 4, 64, 1000, 64 * 37])
def test_offset_skips_into_the_stream(offset):
    seed = tf.constant([3, 9], tf.int32)
    stream = tf.random.stateless_normal([offset + 5 * 64], seed=seed)
    expected = tf.reshape(stream[offset:], [5, 8, 8, 1]).numpy()
    np.testing.assert_allclose(stateless_normal([5, 8, 8, 1], seed, offset).numpy(), expected, atol=2e-6)
    for mode in ("graph", "XLA"):  # a tensor offset: one trace for every chunk
        draw = MODES[mode](lambda o: stateless_normal([5, 8, 8, 1], seed, o))
        np.testing.assert_allclose(draw(tf.constant(offset)).numpy(), expected, atol=2e-6, err_msg=mode)


def test_large_draws_are_standard_normal():
    values = stateless_normal([200_000], [11, 12]).numpy().astype(np.float64)
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1.0) < 0.01
    assert np.isfinite(values).all() and np.abs(values).max() < 6.0  # u >= 1e-7: |z| <= 5.68
